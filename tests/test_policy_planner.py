"""PolicyPlanner on the real all-MiniLM-L6-v2 and real ESConv dialogues: input building, inference, save/load."""

from __future__ import annotations

import json
import shutil
import math

import pytest
import torch

from ppdpp.planner import Turn, get_domain
from ppdpp.planner.core.plan import Plan, Policy
from ppdpp.planner.policy.policy_planner import (
    ADAPTER_DIR, CONFIG_FILE, ENCODER_DIR, PlannerConfig, PlannerFormatError, PolicyPlanner,
)



@pytest.fixture(scope="module")
def domain():
    return get_domain("emotional_support")


@pytest.fixture(scope="module")
def examples(domain, data_dir):
    found = domain.sft_examples("valid", data_dir)
    return [ex for ex in found if len(ex.history) >= 6][:6]


@pytest.fixture(scope="module")
def planner(domain):
    torch.manual_seed(0)  # float32: the exactness checks below must not depend on the CPU's bf16 support
    return PolicyPlanner(domain, PlannerConfig(max_length=64), inference_dtype="float32")


def numbered_dialogue(n: int) -> list[Turn]:
    return [Turn("user" if i % 2 else "agent", f"turn {i} says something about topic{i}") for i in range(n)]


def test_truncation_keeps_the_newest_turns(planner):
    ids = planner.encode(numbered_dialogue(40))
    text = planner.tokenizer.decode(ids)
    assert len(ids) == 64, f"input should fill max_length exactly, got {len(ids)} tokens"
    assert ids[0] == planner.tokenizer.cls_token_id and ids[-1] == planner.tokenizer.sep_token_id, text
    assert "topic39" in text, f"the newest turn must survive truncation: {text}"
    assert "topic0 " not in text and "topic1 " not in text, f"the oldest turns must be cut: {text}"
    assert "patient : turn 39" in text, f"turns are rendered as 'Role: text' with the domain's roles: {text}"


def test_background_goes_in_front_and_the_newest_turn_still_survives(planner, domain, examples):
    with_background = PolicyPlanner(domain, PlannerConfig(max_length=64, use_background=True),
                                    encoder=planner.encoder, tokenizer=planner.tokenizer)
    ex = examples[0]
    ids = with_background.encode(ex.history, ex.case)
    tokenize = lambda text: planner.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    background = tokenize(domain.background(ex.case))
    assert background, "ESConv cases have a background line"
    assert ids[1: 1 + len(background)] == background, f"background first: {planner.tokenizer.decode(ids)}"
    newest = tokenize(f"{domain.role_name(ex.history[-1].speaker)}: {ex.history[-1].text}")
    assert ids[-1 - min(len(newest), 20): -1] == newest[-20:], f"newest turn last: {planner.tokenizer.decode(ids)}"


def test_strategy_history_shows_known_agent_strategies(planner, domain, examples):
    with_strategies = PolicyPlanner(domain, PlannerConfig(max_length=512, strategy_history=True),
                                    encoder=planner.encoder, tokenizer=planner.tokenizer)
    ex = next(e for e in examples if any(t.strategy for t in e.history))
    text = with_strategies.tokenizer.decode(with_strategies.encode(ex.history))
    labelled = [t for t in ex.history if t.speaker == "agent" and t.strategy]
    assert labelled, "ESConv supporter turns carry their strategy labels"
    tokenizer = with_strategies.tokenizer
    expected = tokenizer.decode(tokenizer(f"{domain.agent_role} [{labelled[-1].strategy}]: {labelled[-1].text}",
                                          add_special_tokens=False)["input_ids"])
    assert expected in text, f"expected {expected!r} in the planner input: {text}"
    plain = tokenizer.decode(with_strategies.encode([Turn("agent", "hello there")]))
    assert "[" not in plain.replace("[CLS]", "").replace("[SEP]", ""), f"no strategy, no brackets: {plain}"
    assert "[" not in planner.tokenizer.decode(planner.encode(ex.history)).replace("[CLS]", "").replace(
        "[SEP]", ""), "without strategy_history the labels stay out of the input"


def test_plan_is_deterministic_in_eval_and_restores_train_mode(planner, examples):
    planner.train()
    first = [planner.plan(ex.history, ex.case) for ex in examples]
    second = planner.plan_batch([ex.history for ex in examples], [ex.case for ex in examples])
    assert planner.training, "plan() must restore the previous (train) mode"
    assert isinstance(planner, Policy)
    for a, b in zip(first, second):
        assert isinstance(a, Plan)
        assert a.distribution == pytest.approx(b.distribution, abs=1e-5), "dropout must be off when planning"
        assert a.strategy == max(a.distribution, key=a.distribution.get), "greedy plan = most probable strategy"
        assert math.isclose(sum(a.distribution.values()), 1.0, rel_tol=1e-5)
        assert a.instruction == planner.domain.instruction(a.strategy)
        assert a.probability == pytest.approx(a.distribution[a.strategy])


def test_bfloat16_inference_agrees_with_float32(planner, examples):
    fast = PolicyPlanner(planner.space, planner.config, encoder=planner.encoder, tokenizer=planner.tokenizer,
                         inference_dtype="bfloat16")
    fast.head.load_state_dict(planner.head.state_dict())
    for ex in examples:
        exact, approx = planner.plan(ex.history, ex.case), fast.plan(ex.history, ex.case)
        assert approx.distribution == pytest.approx(exact.distribution, abs=0.02), ex.history[-1].text
        assert math.isclose(sum(approx.distribution.values()), 1.0, rel_tol=1e-5)
    with pytest.raises(ValueError, match="dtype must be auto or one of"):
        PolicyPlanner(planner.space, planner.config, encoder=planner.encoder, tokenizer=planner.tokenizer,
                      inference_dtype="fp8")


def test_auto_precision_is_bfloat16_only_where_the_cpu_has_it():
    from ppdpp.planner.core.hardware import pick_dtype

    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()  # torch's own probe
    expected = torch.bfloat16 if native else torch.float32
    assert pick_dtype("auto", torch.device("cpu")) == expected
    assert pick_dtype("float32", torch.device("cpu")) == torch.float32


def test_sampling_is_seedable_and_varies(planner, examples):
    conversations = [examples[0].history[:1]] * 40
    draw = lambda seed: [p.strategy for p in planner.plan_batch(  # noqa: E731
        conversations, sample=True, generator=torch.Generator().manual_seed(seed))]
    assert draw(3) == draw(3), "the same generator seed must give the same samples"
    assert len(set(draw(3))) > 1, "an untrained head is near uniform: 40 samples should not all agree"


def test_logits_and_log_probs_are_differentiable(planner, examples):
    planner.train()
    planner.zero_grad()
    logits = planner.logits([ex.history for ex in examples[:2]], [ex.case for ex in examples[:2]])
    assert logits.shape == (2, len(planner.strategy_names))
    assert logits.requires_grad
    logits[:, 0].sum().backward()
    assert planner.head.weight.grad is not None and planner.head.weight.grad.abs().sum() > 0
    assert planner.encoder.get_input_embeddings().weight.grad is None, "word embeddings are frozen by default"
    log_probs = planner.log_probs([ex.history for ex in examples[:2]])
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2), atol=1e-5)
    planner.zero_grad()


def distributions(planner, examples):
    return [planner.plan(ex.history, ex.case).distribution for ex in examples]


def test_save_load_round_trip_gives_identical_distributions(planner, examples, tmp_path):
    with torch.no_grad():  # move the head away from its init so that a silently re-initialised head would show
        planner.head.weight.add_(torch.randn_like(planner.head.weight) * 0.5)
    planner.save_pretrained(tmp_path / "p")
    meta = json.loads((tmp_path / "p" / CONFIG_FILE).read_text())
    assert meta["format_version"] == 2 and meta["domain"] == "emotional_support"
    assert list(meta["strategies"]) == planner.strategy_names and meta["planner"]["max_length"] == 64
    assert (tmp_path / "p" / "model.safetensors").is_file() and (tmp_path / "p" / "config.json").is_file()
    loaded = PolicyPlanner.from_pretrained(tmp_path / "p", inference_dtype=planner.inference_dtype)
    assert not loaded.training
    assert loaded.domain is planner.domain, "the registered domain is attached on load"
    for a, b in zip(distributions(planner, examples), distributions(loaded, examples)):
        assert a == pytest.approx(b, abs=1e-6)


def test_a_saved_planner_loads_without_its_domain_plugin(planner, examples, tmp_path):
    planner.save_pretrained(tmp_path / "p")
    meta_path = tmp_path / "p" / CONFIG_FILE
    meta = json.loads(meta_path.read_text())
    meta["domain"] = "not-installed-anywhere"
    meta_path.write_text(json.dumps(meta))
    loaded = PolicyPlanner.from_pretrained(tmp_path / "p", inference_dtype=planner.inference_dtype)
    assert loaded.domain is None and loaded.space.domain == "not-installed-anywhere"
    plan = loaded.plan(examples[0].history)
    assert plan.distribution == pytest.approx(planner.plan(examples[0].history).distribution, abs=1e-6)
    assert plan.instruction == meta["strategies"][plan.strategy]


def test_loading_errors_are_clear(planner, domain, tmp_path):
    with pytest.raises(PlannerFormatError, match="planner.json is missing"):
        PolicyPlanner.from_pretrained(tmp_path / "nothing")
    planner.save_pretrained(tmp_path / "p")
    meta_path = tmp_path / "p" / CONFIG_FILE
    meta = json.loads(meta_path.read_text())

    meta_path.write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(PlannerFormatError, match="format_version 99"):
        PolicyPlanner.from_pretrained(tmp_path / "p")

    renamed = dict(meta["strategies"])
    renamed["Asking"] = renamed.pop("Question")
    meta_path.write_text(json.dumps({**meta, "strategies": renamed}))
    with pytest.raises(PlannerFormatError, match="trained for 'emotional_support' strategies"):
        PolicyPlanner.from_pretrained(tmp_path / "p")


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_lora_trains_only_adapters_and_round_trips(domain, examples, tmp_path):
    torch.manual_seed(0)
    lora = PolicyPlanner(domain, PlannerConfig(max_length=32, lora=True, lora_r=4))
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable), sorted(trainable)[:5]
    optimizer = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-2)
    lora.train()
    loss = lora.log_probs([ex.history for ex in examples[:4]])[:, 0].mean().neg()
    loss.backward()
    optimizer.step()  # LoRA B starts at zero: one step makes the adapter matter
    lora.save_pretrained(tmp_path / "lora")
    adapter = tmp_path / "lora" / ADAPTER_DIR
    assert (adapter / "adapter_config.json").is_file() and not (tmp_path / "lora" / ENCODER_DIR).exists()
    assert sum(f.stat().st_size for f in adapter.iterdir()) < 2_000_000, "the adapter folder holds the adapter only"
    merged = PolicyPlanner.from_pretrained(tmp_path / "lora")
    shutil.rmtree(tmp_path / "lora" / ADAPTER_DIR)  # the merged weights alone give the same planner
    from_merged = PolicyPlanner.from_pretrained(tmp_path / "lora")
    for a, b in zip(distributions(merged, examples), distributions(from_merged, examples)):
        assert a == pytest.approx(b, abs=2e-3)  # merged weights round differently from base + adapter in bf16
    loaded = merged
    assert loaded.config.lora and loaded.config.lora_r == 4
    for a, b in zip(distributions(lora, examples), distributions(loaded, examples)):
        assert a == pytest.approx(b, abs=1e-6)
    with loaded.encoder.disable_adapter():
        without_adapter = distributions(loaded, examples[:1])[0]
    assert without_adapter != pytest.approx(distributions(loaded, examples[:1])[0], abs=1e-4), \
        "the trained adapter must change the output (else the round trip proves nothing)"
