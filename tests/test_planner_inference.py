"""PlannerConfig.inference: the int8 variant against eager on real ESConv turns with the real MiniLM, its
re-quantisation after a weight change, the training path left alone, and the setting's save/load round trip."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ppdpp.planner import get_domain
from ppdpp.planner.policy.planner_inference import resolve_inference
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner


@pytest.fixture(scope="module")
def planner_and_inputs(data_dir):
    domain = get_domain("emotional_support")
    torch.manual_seed(0)
    planner = PolicyPlanner(domain, PlannerConfig(max_length=128, strategy_history=True), inference_dtype="float32")
    examples = domain.sft_examples("test", data_dir)[:60]
    return planner, [planner.encode(ex.history, ex.case) for ex in examples]


def _probs(planner: PolicyPlanner, inputs, mode: str) -> torch.Tensor:
    planner.config = replace(planner.config, inference=mode)
    try:
        return planner.probabilities(inputs)
    finally:
        planner.config = replace(planner.config, inference="eager")


@pytest.mark.slow
def test_int8_decides_as_eager_where_eager_is_not_near_a_tie(planner_and_inputs):
    planner, inputs = planner_and_inputs
    eager, int8 = _probs(planner, inputs, "eager"), _probs(planner, inputs, "int8")
    assert not torch.equal(eager, int8)  # the int8 path really ran
    top2 = eager.topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) > 2 * (int8 - eager).abs().max(dim=-1).values
    assert clear.sum() >= 10  # enough decisions that int8's error cannot flip
    assert torch.equal(eager.argmax(-1)[clear], int8.argmax(-1)[clear])
    assert (eager - int8).abs().max() < 0.1


@pytest.mark.slow
def test_int8_copy_follows_weight_updates_and_training_stays_autograd(planner_and_inputs):
    planner, inputs = planner_and_inputs
    before = _probs(planner, inputs[:4], "int8")
    weight = planner.encoder.encoder.layer[0].intermediate.dense.weight
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.mul_(3.0)  # an in-place update, as an optimizer step makes
        after = _probs(planner, inputs[:4], "int8")
        assert (after - before).abs().max() > 1e-3
        planner.config = replace(planner.config, inference="int8")
        logits = planner.logits([[]])  # training path: differentiable whatever inference says
        assert logits.requires_grad
    finally:
        planner.config = replace(planner.config, inference="eager")
        with torch.no_grad():
            weight.copy_(saved)


def test_inference_setting_round_trips_and_is_validated(tmp_path):
    domain = get_domain("emotional_support")
    planner = PolicyPlanner(domain, PlannerConfig(max_length=32, inference="int8"))
    loaded = PolicyPlanner.from_pretrained(planner.save_pretrained(tmp_path / "p"))
    assert loaded.config.inference == "int8"
    assert PlannerConfig().inference == "eager"
    with pytest.raises(ValueError, match="inference must be one of auto, eager, int8, got 'fast'"):
        PlannerConfig(inference="fast")  # type: ignore[arg-type]  # a wrong value on purpose
    assert resolve_inference("auto", torch.device("cpu")) == "int8"
    assert resolve_inference("auto", torch.device("cuda")) == "eager"
    with pytest.raises(ValueError, match="CPU only"):
        resolve_inference("int8", torch.device("cuda"))
