"""Run state: checkpoints load only data, seeds are derived (not reseeded globally), the random baseline is
reproducible under concurrency, and a backend leaves torch's thread count alone."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ppdpp.planner.core.seeding import derive_seed, forked_torch_rng, python_random, torch_generator
from ppdpp.planner.policy.baselines import RandomPolicy
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.training.rl import RLConfig, RLError, RLTrainer, train_sync
from ppdpp.planner.training.sft import CHECKPOINT_FILE, SFTConfig, SFTError, train_sft
from ppdpp.simulators.critic import Critic
from ppdpp.simulators.env import EnvConfig, SelfPlayEnv
from ppdpp.simulators.evaluate import evaluate_policies

from scripted_domain import ScriptedAgent, ScriptedCritic, ScriptedTraveller, register


@pytest.fixture(scope="module")
def domain():
    return register()


def trainer(domain, out: Path) -> RLTrainer:
    torch.manual_seed(0)
    planner = PolicyPlanner(domain, PlannerConfig(max_length=32))
    config = RLConfig(episodes=8, episodes_per_update=4, lr=0.02, env=EnvConfig(max_turns=3), train_backbone=False,
                      concurrency=4, seed=3, checkpoint_every=1)
    critic = Critic(ScriptedCritic(), "greedy")
    return RLTrainer(planner, domain, domain.load_cases("train", None),
                     lambda env: SelfPlayEnv(domain, ScriptedAgent(), ScriptedTraveller(), critic, env), config, out,
                     progress=False)


@pytest.fixture(scope="module")
def finished_run(domain, tmp_path_factory) -> Path:
    """A finished two-update RL run, copied by each test that tampers with it."""
    out = tmp_path_factory.mktemp("rl") / "run"
    train_sync(trainer(domain, out))
    return out


def copy_run(finished_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    return run


def frozen(run: Path) -> Path:
    """A head-only run's planner with the untrained weights, which every checkpoint's head goes with."""
    return run / "checkpoints" / "frozen" / "planner"


def latest_state(run: Path) -> Path:
    name = json.loads((run / "checkpoints" / "latest.json").read_text())["checkpoint"]
    return run / "checkpoints" / name / "state.pt"


class RunsCode:
    """Unpickling this calls ``open(path, "w")``: the file's existence shows that the code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


# ---- checkpoints --------------------------------------------------------------------------------------
def test_an_intact_checkpoint_resumes_under_weights_only(domain, finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    resumed = trainer(domain, run)
    assert resumed.load_checkpoint() and resumed.updates_done == 2 and resumed.finished == set(range(8))
    checkpoint = latest_state(run).parent
    assert sorted(p.name for p in checkpoint.iterdir()) == ["head.safetensors", "state.pt"], \
        "a head-only run's checkpoint holds the trained head, not the encoder"
    assert (checkpoint / "head.safetensors").stat().st_size < 100_000
    final = PolicyPlanner.from_pretrained(run / "final").state_dict()  # a full standard checkpoint
    restored = resumed.planner.state_dict()
    assert final.keys() == restored.keys()
    assert all(torch.allclose(final[k], restored[k]) for k in final), "frozen planner + head = the final planner"


def test_resume_with_other_user_personas_is_refused_naming_both(domain, finished_run, tmp_path):
    resumed = trainer(domain, copy_run(finished_run, tmp_path))
    resumed.config.env.user_personas = "train"
    with pytest.raises(RLError, match=r"'user_personas': 'none'.*now asked for.*'user_personas': 'train'"):
        resumed.load_checkpoint()


def test_a_state_file_holding_a_pickled_object_is_refused_and_its_code_never_runs(domain, finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    marker = tmp_path / "pwned"
    state = latest_state(run)
    payload = torch.load(state, weights_only=True)
    torch.save({**payload, "curve": RunsCode(marker)}, state)
    with pytest.raises(RLError, match=r"state\.pt.*only tensors and plain data"):
        trainer(domain, run).load_checkpoint()
    assert not marker.exists(), "resume executed code from the checkpoint"


@pytest.mark.parametrize("name", ["../evil", "/tmp", "..", "update-000002/../../evil"])
def test_a_checkpoint_name_that_leaves_checkpoints_is_refused(domain, finished_run, tmp_path, name):
    run = copy_run(finished_run, tmp_path)
    shutil.copytree(latest_state(run).parent, run / "evil")  # a loadable checkpoint outside checkpoints/
    (run / "checkpoints" / "latest.json").write_text(json.dumps({"checkpoint": name}))
    with pytest.raises(RLError, match="not a plain directory name"):
        trainer(domain, run).load_checkpoint()


def test_a_truncated_latest_json_names_the_file_and_the_fix(domain, finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    pointer = run / "checkpoints" / "latest.json"
    pointer.write_text(pointer.read_text()[:7])
    with pytest.raises(RLError, match=r"latest\.json: not a checkpoint pointer.*delete it to replay"):
        trainer(domain, run).load_checkpoint()


def test_a_truncated_state_file_names_the_file_and_the_fix(domain, finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    state = latest_state(run)
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(RLError, match=r"state\.pt: not a readable checkpoint .*latest\.json"):
        trainer(domain, run).load_checkpoint()


# ---- damaged run directories: each file read on resume names itself and the fix -------------------------
def _rewrite_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _state_with(run: Path, **changes) -> None:
    state = latest_state(run)
    torch.save({**torch.load(state, weights_only=True), **changes}, state)


def _transcript_lines(run: Path) -> list[str]:
    return (run / "transcripts.jsonl").read_text().splitlines()


def _set_transcript_line(run: Path, index: int, text: str) -> None:
    lines = _transcript_lines(run)
    lines[index] = text
    (run / "transcripts.jsonl").write_text("\n".join(lines) + "\n")


def _row(run: Path, index: int, **changes) -> str:
    row = {**json.loads(_transcript_lines(run)[index]), **changes}
    return json.dumps({k: v for k, v in row.items() if v is not None})


DAMAGE = {
    "newer pointer": (lambda run: _rewrite_json(run / "checkpoints" / "latest.json", format_version=99),
                      r"latest\.json: format_version 99.*another ppdpp version.*start a new run with another --out"),
    "missing state": (lambda run: latest_state(run).unlink(),
                      r"latest\.json: checkpoint 'update-000002' has no state\.pt.*delete it to replay"),
    "newer state": (lambda run: _state_with(run, format_version=2),
                    r"state\.pt: checkpoint format_version 2.*another ppdpp version.*--out"),
    "foreign state": (lambda run: _state_with(run, finished="all of them"),
                      r"state\.pt: does not fit this planner and trainer.*latest\.json"),
    "missing planner.json": (lambda run: (frozen(run) / "planner.json").unlink(),
                             r"planner\.json is missing.*latest\.json: point it at an intact"),
    "truncated planner.json": (
        lambda run: (frozen(run) / "planner.json").write_text('{"format_version": 1, "dom'),
        r"planner\.json:1: not valid JSON.*latest\.json: point it at an intact"),
    "newer planner.json": (lambda run: _rewrite_json(frozen(run) / "planner.json", format_version=7),
                           r"planner\.json: format_version 7 is not supported.*delete it to replay"),
    "truncated weights": (lambda run: (frozen(run) / "model.safetensors").write_bytes(b"\x10"),
                          r"model\.safetensors: cannot be read.*delete it to replay"),
    "truncated head": (lambda run: (latest_state(run).parent / "head.safetensors").write_bytes(b"\x10"),
                       r"update-000002/head\.safetensors: not this planner's head.*delete it to replay"),
    "missing transcripts": (lambda run: (run / "transcripts.jsonl").unlink(),
                            r"transcripts\.jsonl is missing, but the checkpoint has trained on 8 episodes: restore"),
    "corrupt middle line": (lambda run: _set_transcript_line(run, 2, '{"episode": 2, "ca'),
                            r"transcripts\.jsonl:3: not valid JSON.*delete that line to play its episode again"),
    "foreign row": (lambda run: _set_transcript_line(run, 1, _row(run, 1, steps=None)),
                    r"transcripts\.jsonl:2: not a transcript line of this ppdpp version \(steps missing"),
    "row of another run": (lambda run: _set_transcript_line(run, 0, _row(run, 0, case_id="scripted-test-9")),
                           r"transcripts\.jsonl:1: episode \d+ on case 'scripted-test-9' is not an episode of this run"),
    "repeated row": (lambda run: _set_transcript_line(run, 5, _transcript_lines(run)[4]),
                     r"transcripts\.jsonl:6: episode \d+ appears again \(first on line 5\)"),
    "lost rows": (lambda run: (run / "transcripts.jsonl").write_text("\n".join(_transcript_lines(run)[:6]) + "\n"),
                  r"transcripts\.jsonl lacks episodes \[.*\] that the checkpoint trained on"),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_run_directory_is_refused_with_the_file_and_the_fix(domain, finished_run, tmp_path, damage):
    run = copy_run(finished_run, tmp_path)
    tamper, message = DAMAGE[damage]
    tamper(run)
    with pytest.raises(RLError, match=message):
        train_sync(trainer(domain, run), resume=True)


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
@pytest.mark.parametrize("cut", ["mid-line", "before the newline"])
def test_a_last_transcript_line_cut_by_a_kill_is_played_again(domain, finished_run, tmp_path, cut):
    """Back at the checkpoint of update 1, with the journal's last line cut short: that episode is dropped
    from the file, played again, and the run ends as the uninterrupted one did."""
    run = copy_run(finished_run, tmp_path)
    _rewrite_json(run / "checkpoints" / "latest.json", checkpoint="update-000001", updates_done=1)
    text = (run / "transcripts.jsonl").read_text()
    last = json.loads(text.splitlines()[-1])["episode"]
    (run / "transcripts.jsonl").write_text(text[:-40] if cut == "mid-line" else text[:-1])
    resumed = trainer(domain, run)
    played: list[int] = []
    resumed.on_episode = lambda result: played.append(int(result.episode_id))
    train_sync(resumed, resume=True)
    assert played == [last], "only the cut episode is played again"
    rows = [json.loads(line) for line in _transcript_lines(run)]
    assert sorted(r["episode"] for r in rows) == list(range(8)) and rows[-1]["episode"] == last
    reference = PolicyPlanner.from_pretrained(finished_run / "final")
    for name, weight in reference.head.state_dict().items():
        assert torch.equal(weight, resumed.planner.head.state_dict()[name]), name


def test_rl_training_leaves_the_callers_torch_rng_as_it_was(domain, tmp_path):
    run = trainer(domain, tmp_path / "run")
    before = torch.get_rng_state()
    train_sync(run)
    assert torch.equal(before, torch.get_rng_state())


# ---- SFT ----------------------------------------------------------------------------------------------
TINY_SFT = SFTConfig("tutoring", epochs=1, batch_size=8, max_train_examples=16, max_select_examples=8,
                     max_test_examples=8, planner=PlannerConfig(max_length=32))


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_sft_leaves_the_callers_torch_rng_as_it_was(tmp_path, data_dir):
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    result = train_sft(TINY_SFT, tmp_path / "run", data_dir=data_dir, progress=False)
    assert result.finished
    assert torch.equal(before, torch.get_rng_state()), "train_sft reseeded the global generator"


def test_an_sft_checkpoint_without_its_fields_is_a_clear_error(tmp_path, data_dir):
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"config": TINY_SFT.resume_key()}, out / CHECKPOINT_FILE)
    with pytest.raises(SFTError, match=r"checkpoint\.pt: checkpoint lacks state, model.*start the run over"):
        train_sft(TINY_SFT, out, data_dir=data_dir, resume=True, progress=False)


def _sft_checkpoint_with(out: Path, **changes) -> None:
    torch.save({**torch.load(out / CHECKPOINT_FILE, weights_only=True), **changes}, out / CHECKPOINT_FILE)


SFT_DAMAGE = {
    "truncated": (lambda out: (out / CHECKPOINT_FILE).write_bytes((out / CHECKPOINT_FILE).read_bytes()[:200]),
                  r"checkpoint\.pt: not a readable checkpoint.*delete it and pass no --resume to start the run over"),
    "newer": (lambda out: _sft_checkpoint_with(out, format_version=2),
              r"checkpoint\.pt: format_version 2.*another ppdpp version.*start a new run with another --out"),
    "foreign": (lambda out: _sft_checkpoint_with(out, model={"head.weight": torch.zeros(2, 2)}),
                r"checkpoint\.pt: does not fit this planner.*start the run over"),
    "missing": (lambda out: (out / CHECKPOINT_FILE).unlink(),
                r"nothing to resume: .*checkpoint\.pt does not exist.*without --resume to start it over"),
}


@pytest.fixture(scope="module")
def stopped_sft(tmp_path_factory, data_dir) -> Path:
    """An SFT run stopped (checkpointed) after its first step."""
    out = tmp_path_factory.mktemp("sft") / "run"
    train_sft(replace(TINY_SFT, max_steps=1), out, data_dir=data_dir, progress=False)
    return out


@pytest.mark.parametrize("damage", SFT_DAMAGE, ids=list(SFT_DAMAGE))
def test_a_damaged_sft_checkpoint_is_refused_with_the_file_and_the_fix(stopped_sft, tmp_path, data_dir, damage):
    out = tmp_path / "run"
    shutil.copytree(stopped_sft, out)
    tamper, message = SFT_DAMAGE[damage]
    tamper(out)
    with pytest.raises(SFTError, match=message):
        train_sft(TINY_SFT, out, data_dir=data_dir, resume=True, progress=False)


# ---- seeds --------------------------------------------------------------------------------------------
@pytest.mark.slow  # a subprocess or real back-off waits: kept out of the fast tier
def test_derived_seeds_are_pinned_distinct_and_the_same_in_every_process():
    assert derive_seed(0, "episode", 1) == 685520657, "the derivation changed: saved runs would not resume alike"
    seeds = {derive_seed(base, kind, i) for base in (0, 1, -1) for kind in ("a", "b") for i in range(50)}
    assert len(seeds) == 300 and all(0 <= s < 2**31 for s in seeds)
    assert derive_seed(3, 1) != derive_seed(3, "1")
    code = "from ppdpp.planner.core.seeding import derive_seed; print(derive_seed(7, 'call', 2, 'user'))"
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": salt}).stdout.strip() for salt in ("1", "2")}
    assert outputs == {str(derive_seed(7, "call", 2, "user"))}
    assert torch.equal(torch.rand(4, generator=torch_generator(5, "x")), torch.rand(4, generator=torch_generator(5, "x")))
    assert python_random(5, "x").random() == python_random(5, "x").random()
    with pytest.raises(TypeError, match="ints or strings"):
        derive_seed(1, 2.5)  # type: ignore[arg-type]  # a wrong value on purpose


def test_forked_torch_rng_is_seeded_inside_and_restores_outside():
    before = torch.get_rng_state()
    with forked_torch_rng(11):
        first = torch.rand(3)
    with forked_torch_rng(11):
        assert torch.equal(first, torch.rand(3))
    assert torch.equal(before, torch.get_rng_state())


# ---- the random baseline ------------------------------------------------------------------------------
class YieldingTraveller(ScriptedTraveller):
    """The scripted user, handing the event loop to the other dialogues before it answers (as a remote
    model would), so that concurrent dialogues interleave their planner calls."""

    async def complete(self, messages, **kwargs):
        await asyncio.sleep(0)
        return await super().complete(messages, **kwargs)


def random_rows(domain, concurrency: int, tmp_path: Path) -> dict[str, list]:
    critic = Critic(ScriptedCritic(), "greedy")
    make = lambda: SelfPlayEnv(domain, ScriptedAgent(), YieldingTraveller(), critic, EnvConfig(max_turns=3))
    asyncio.run(evaluate_policies(domain, [RandomPolicy(domain, seed=5)], domain.load_cases("test", None),
                                  make, concurrency=concurrency, out_dir=tmp_path, progress=False))
    rows = [json.loads(line) for line in (tmp_path / "transcripts" / "random.jsonl").read_text().splitlines()]
    return {r["case_id"]: [s["strategy"] for s in r["steps"]] for r in rows}


def test_random_baseline_draws_the_same_strategies_whatever_the_concurrency(domain, tmp_path):
    one_at_a_time = random_rows(domain, 1, tmp_path / "a")
    concurrent = random_rows(domain, 6, tmp_path / "b")
    assert len(one_at_a_time) == 6 and any(len(set(s)) > 1 for s in one_at_a_time.values())
    assert concurrent == one_at_a_time
    assert random_rows(domain, 6, tmp_path / "c") == concurrent


# ---- torch threads ------------------------------------------------------------------------------------
def test_a_local_backend_sets_torch_threads_only_when_asked_and_in_the_callers_thread(smollm2_gguf):
    from ppdpp.planner.llm.local import LocalBackend

    before = torch.get_num_threads()
    plain = LocalBackend("local/smollm2")
    assert torch.get_num_threads() == before, "a backend opened without num_threads changed torch's setting"
    try:
        asked = LocalBackend("local/smollm2", num_threads=before + 1)
        assert torch.get_num_threads() == before + 1, "num_threads is applied where it is asked for, at once"
        asyncio.run(asked.aclose())
    finally:
        torch.set_num_threads(before)
        asyncio.run(plain.aclose())
