"""PRINCIPLES (planner/policy/principles.py): the memory built by offline self-play on the train cases with the
grounded negotiation simulators, its principles checked against its own statistics, retrieval, and one
`ppdpp evaluate` that builds, saves and plays it, then plays the saved memory again."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ppdpp.planner.cli.app import app
from ppdpp.planner.policy.principles import PrinciplesConfig, PrinciplesPolicy, situation_text

EVALUATE = ["evaluate", "-d", "negotiation", "--agent", "template", "--user", "rule-based", "--critic", "oracle",
            "--cases", "4", "--max-turns", "6", "--baselines", "principles", "--principles-cases", "8",
            "--principles-rollouts", "3", "--principles-situations", "6", "--principles-min-support", "2"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("principles")
    memory = out / "memory.json"
    result = CliRunner().invoke(app, [*EVALUATE, "--principles-memory", str(memory), "--out", str(out / "first")],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    return out, memory


def test_the_memory_is_distilled_from_offline_self_play_statistics(built):
    from ppdpp.planner.registry.manager import get_domain

    _, path = built
    memory = json.loads(path.read_text())
    names = get_domain("negotiation").strategy_names
    assert memory["format"] == "ppdpp-principles/1" and memory["source"] == "statistics"
    assert memory["build"]["cases"] == 8 and memory["build"]["rollouts"] == 3 and memory["build"]["llm_calls"] == 0
    groups = memory["situations"]
    assert 1 <= len(groups) <= 6
    assert sum(g["decisions"] for g in groups) == memory["build"]["decisions"] >= 8 * 3
    for g in groups:
        assert sum(st["n"] for st in g["stats"].values()) == g["decisions"] and list(g["stats"]) == names
        supported = {s: st for s, st in g["stats"].items() if st["n"] >= 2}
        kinds = {p["kind"]: p for p in g["principles"]}
        if supported:  # "do" the strategy with the best advantage, "avoid" the worst, each quoting its counts
            best = max(supported.values(), key=lambda st: st["advantage"])["advantage"]
            worst = min(supported.values(), key=lambda st: st["advantage"])["advantage"]
            assert g["stats"][kinds["do"]["strategy"]]["advantage"] == best
            assert g["stats"][kinds["avoid"]["strategy"]]["advantage"] == worst
            do = g["stats"][kinds["do"]["strategy"]]
            assert kinds["do"]["text"].startswith("When ") and f"{do['successes']} of {do['n']}" in kinds["do"]["text"]
        assert abs(sum(x * x for x in g["centroid"]) - 1.0) < 1e-3, "unit centroids: cosine retrieval"


def test_retrieval_follows_the_nearest_situations_principles(built):
    from ppdpp.planner.registry.manager import get_domain

    domain = get_domain("negotiation")
    memory = json.loads(built[1].read_text())
    policy = PrinciplesPolicy(domain, memory, top_k=1)
    group = next(g for g in memory["situations"] if any(st["n"] for st in g["stats"].values()))
    speaker_text = group["situation"].split(" | ")  # rebuild the group's own situation as a conversation
    from ppdpp.planner.core.domain import Turn

    turns = [Turn("agent" if part.startswith(f"{domain.agent_role}:") else "user", part.split(": ", 1)[1])
             for part in speaker_text]
    assert situation_text(domain, turns) == group["situation"]
    plan = policy.plan(turns)
    scores, nearest = policy.scores(turns)
    assert nearest["situation"] == group["situation"], "its own situation is nearest to its group"
    best = max(group["stats"], key=lambda s: group["stats"][s]["advantage"])
    assert plan.strategy == best and plan.probability == max(plan.distribution.values())
    assert abs(sum(plan.distribution.values()) - 1.0) < 1e-9


def test_one_evaluate_builds_saves_and_replays_the_memory(built):
    out, memory = built
    first = json.loads((out / "first" / "report.json").read_text())
    (row,) = first["policies"]
    assert row["policy"] == "principles" and row["episodes"] == 4 and row["strategies"]["decisions"] > 0
    assert row["planner_stats"]["source"] == "statistics" and row["planner_stats"]["build_decisions"] > 0
    assert row["strategies"]["entropy_nats"] is not None
    saved = memory.read_text()
    again = CliRunner().invoke(app, [*EVALUATE, "--principles-memory", str(memory), "--principles-cases", "1",
                                     "--out", str(out / "second")], terminal_width=200)
    assert again.exit_code == 0, again.output
    assert memory.read_text() == saved, "a saved memory is read, not rebuilt"
    second = json.loads((out / "second" / "report.json").read_text())["policies"][0]
    steps = lambda name: [[s["strategy"] for s in json.loads(line)["steps"]]  # noqa: E731
                          for line in (out / name / "transcripts" / "principles.jsonl").read_text().splitlines()]
    assert steps("first") == steps("second") and second["sr"] == row["sr"], "same memory, same decisions"


def test_a_bad_memory_file_is_named():
    from ppdpp.planner.core.domain import DomainError
    from ppdpp.planner.registry.manager import get_domain

    with pytest.raises(DomainError, match="not a PRINCIPLES memory of domain 'negotiation'"):
        PrinciplesPolicy(get_domain("negotiation"), {"format": "other"})
    assert PrinciplesConfig().principles_top_k == 3
