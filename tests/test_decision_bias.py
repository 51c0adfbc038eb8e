"""A planner with a learned bias per decision (``PlannerConfig.decision_bias``): the row of each input's decision
index, its save/load round trip, and the paths that cannot carry the index refusing it."""

from __future__ import annotations

import asyncio
import json

import pytest
import torch

from ppdpp.planner.core.domain import Turn
from ppdpp.planner.policy.policy_planner import PlannerConfig, PlannerFormatError, PolicyPlanner
from ppdpp.planner.registry.manager import get_domain

OPENING = [Turn("user", "How do I say 'the yellow bag'?")]


def after(*strategies: str) -> list[Turn]:
    """The opening, then one agent turn with each strategy, each answered by the student."""
    turns = list(OPENING)
    for i, strategy in enumerate(strategies):
        turns += [Turn("agent", f"tutor turn {i}", strategy), Turn("user", f"student try {i}")]
    return turns


@pytest.fixture(scope="module")
def planner() -> PolicyPlanner:
    torch.manual_seed(0)
    planner = PolicyPlanner(get_domain("tutoring"), PlannerConfig(max_length=64, decision_bias=3))
    with torch.no_grad():
        planner.decision_bias[2, planner.strategy_names.index("Confirmation")] = 8.0
    return planner.eval()


def test_the_decision_index_counts_the_agent_turns_with_a_known_strategy(planner):
    assert planner.decision(OPENING) == 0
    assert planner.decision(after("Correction", "Hint")) == 2
    assert planner.decision([*OPENING, Turn("agent", "hello, no strategy"), Turn("user", "hi")]) == 0
    assert planner.encode(after("Correction", "Hint")).decision == 2


def test_a_bias_row_moves_its_decision_and_the_later_ones_that_share_the_last_row(planner):
    plans = {n: planner.plan(after(*["Correction"] * n)) for n in (0, 1, 2, 4)}
    assert plans[2].strategy == plans[4].strategy == "Confirmation", {n: p.strategy for n, p in plans.items()}
    assert plans[0].distribution["Confirmation"] < 0.5 and plans[1].distribution["Confirmation"] < 0.5, \
        "rows 0 and 1 are zero: the encoder alone decides there"
    batch = planner.plan_batch([after(), after("Correction", "Correction")])
    assert [p.strategy for p in batch] == [plans[0].strategy, "Confirmation"], "each row of a batch has its own index"

    async def concurrent() -> list:
        return await asyncio.gather(planner.aplan(after()), planner.aplan(after("Correction", "Correction")))

    assert [p.strategy for p in asyncio.run(concurrent())] == [plans[0].strategy, "Confirmation"], \
        "aplan's worker (PlannedAgent, ppdpp serve) reads each request's own index"


def test_a_saved_decision_bias_loads_back_and_the_folder_makes_no_pipeline_claim(planner, tmp_path):
    folder = planner.save_pretrained(tmp_path / "planner")
    loaded = PolicyPlanner.from_pretrained(folder)
    assert torch.equal(loaded.decision_bias, planner.decision_bias)
    probe = after("Correction", "Correction")
    assert loaded.plan(probe).distribution == pytest.approx(planner.plan(probe).distribution, abs=1e-4)
    assert not json.loads((folder / "config.json").read_text()).get("auto_map"), \
        "a text pipeline cannot pass the decision index: no auto_map to its class"
    card = (folder / "README.md").read_text()
    assert "Only with ppdpp" in card and "trust_remote_code" not in card, "the card must not offer the pipeline"
    meta = json.loads((folder / "planner.json").read_text())
    meta["planner"]["decision_bias"] = 0
    (folder / "planner.json").write_text(json.dumps(meta))
    with pytest.raises(PlannerFormatError, match=r"decision_bias=0 but model\.safetensors holds one of shape \[3, 5\]"):
        PolicyPlanner.from_pretrained(folder)


def test_bare_token_ids_and_onnx_export_are_refused(planner, tmp_path):
    with pytest.raises(ValueError, match="reads inputs made by encode"):
        planner(*planner.collate([[101, 2023, 102]]))
    with pytest.raises(ValueError, match="needs each input's decision index"):
        planner(*planner.collate([planner.encode(OPENING)])[:2])
    from ppdpp.planner.policy.planner_onnx import export_onnx

    with pytest.raises(ValueError, match="per-decision bias"):
        export_onnx(planner, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
