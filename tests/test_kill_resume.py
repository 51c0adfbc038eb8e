"""Hard kills and damaged run directories: a run SIGKILLed at any of its kill points (planner/core/faults.py)
resumes to exactly the episodes and weights of an uninterrupted run; a truncated, missing or foreign file read
on resume is an error that names the file and says what to do.

Each run is a real process, SIGKILLed for real: forked from a ``multiprocessing`` fork server that imported
torch, transformers and ppdpp once, so a run costs its own work instead of a fresh interpreter's ~8 s of
imports. The RL runs train the scripted domain (tests/scripted_domain.py); the SFT runs are ``ppdpp sft``'s
``main``. Run as a script, this file is the same RL driver: ``python tests/test_kill_resume.py OUT [--resume]``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
KILLED = -signal.SIGKILL
RL_EPISODES = 24  # 6 updates of 4, a checkpoint every 2


def rl_trainer(out: Path):
    """The driver's trainer: scripted agent, traveller and critic (no LLM), head-only updates."""
    from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
    from ppdpp.planner.training.rl import RLConfig, RLTrainer
    from ppdpp.simulators.critic import Critic
    from ppdpp.simulators.env import EnvConfig, SelfPlayEnv

    from scripted_domain import ScriptedAgent, ScriptedCritic, ScriptedTraveller, register

    domain = register()
    torch.manual_seed(0)
    planner = PolicyPlanner(domain, PlannerConfig(max_length=32))
    config = RLConfig(episodes=RL_EPISODES, episodes_per_update=4, lr=0.02, entropy_coef=0.05,
                      env=EnvConfig(max_turns=3), train_backbone=False, concurrency=2, seed=3, checkpoint_every=2)
    critic = Critic(ScriptedCritic(), "greedy")
    make_env = lambda env: SelfPlayEnv(domain, ScriptedAgent(), ScriptedTraveller(), critic, env)  # noqa: E731
    return RLTrainer(planner, domain, domain.load_cases("train", None), make_env, config, out, progress=False)


def child_env(kill_at: str | None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PPDPP_FAULT_KILL_AT", None)
    if kill_at:
        env["PPDPP_FAULT_KILL_AT"] = kill_at
    return env


PRELOAD = ["torch", "transformers", "transformers.models.bert.modeling_bert", "safetensors.torch",
           "ppdpp.planner.cli", "ppdpp.planner.training.rl", "ppdpp.planner.training.sft",
           "ppdpp.planner.policy.policy_planner", "ppdpp.simulators.env", "ppdpp.simulators.critic"]
"""Imported once by the fork server (library modules only: it runs nothing, so no torch thread pool exists
before a fork)."""


def _forks() -> multiprocessing.context.ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _child(run: list[str], env: dict[str, str], log: str) -> None:
    """In the forked process: the test's environment, output to ``log``, then the run."""
    os.environ.clear()
    os.environ.update(env)
    with open(log, "ab", buffering=0) as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    torch.set_num_threads(1)
    if run[0] == "rl":
        from ppdpp.planner.training.rl import train_sync

        train_sync(rl_trainer(Path(run[1])), resume="--resume" in run[2:])
    else:
        from ppdpp.planner.cli import main

        main(run)


class Finished:
    """A child's exit code and its output."""

    def __init__(self, returncode: int, output: str) -> None:
        self.returncode, self.output = returncode, output


def run_child(run: list[str], kill_at: str | None, log_dir: Path) -> Finished:
    """``run`` (``["rl", OUT, ...]`` or ``ppdpp`` arguments) in a process forked from the fork server."""
    log = log_dir / f"child-{len(list(log_dir.glob('child-*.log')))}.log"
    process = _forks().Process(target=_child, args=(run, child_env(kill_at), str(log)))
    process.start()
    process.join(300)
    if process.exitcode is None:
        process.kill()
        process.join()
        raise AssertionError(f"{run} did not finish in 300 s:\n{log.read_text()[-3000:]}")
    return Finished(process.exitcode, log.read_text() if log.is_file() else "")


def expect(proc: Finished, code: int, what: str) -> None:
    assert proc.returncode == code, f"{what}: exit {proc.returncode}, wanted {code}\n{proc.output[-3000:]}"


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path)) if path.suffix == ".safetensors" else torch.load(path, weights_only=True)


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    assert a.keys() == b.keys(), what
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{what}: {differ[:5]} differ between the straight and the killed-and-resumed run"


def transcript_ids(run: Path) -> list[int]:
    return [json.loads(line)["episode"] for line in (run / "transcripts.jsonl").read_text().splitlines()]


# ---- hard kills ---------------------------------------------------------------------------------------
# Each step resumes the run the step before it killed; the counts are per process. rl.plan:32 falls in the
# third batch (episodes 8-11, two at a time) after the checkpoint of update 2, once episodes 8 and 9 are in the
# journal; rl.update:2 in the resumed process's second update (update 4); the checkpoint kills in the checkpoint
# of update 4 (each resumed process replays updates 3-4 from the journal first).
RL_KILLS = ["rl.plan:32", "rl.update:2", "rl.checkpoint.files:1", "rl.checkpoint.pointer:1"]


@pytest.mark.slow
def test_rl_killed_at_each_point_resumes_to_the_uninterrupted_run(tmp_path):
    straight = tmp_path / "straight"
    expect(run_child(["rl", str(straight)], None, tmp_path), 0, "the uninterrupted run")
    run = tmp_path / "run"
    for step, kill_at in enumerate(RL_KILLS):
        resume = ["--resume"] if step else []
        expect(run_child(["rl", str(run), *resume], kill_at, tmp_path), KILLED, f"killed at {kill_at}")
    expect(run_child(["rl", str(run), "--resume"], None, tmp_path), 0, "the last resume")

    ids = transcript_ids(run)
    assert sorted(ids) == list(range(RL_EPISODES)), f"each episode exactly once, got {sorted(ids)}"
    assert sorted(ids) == sorted(transcript_ids(straight))
    assert_same_tensors(tensors(straight / "final" / "model.safetensors"), tensors(run / "final" / "model.safetensors"),
                        "final planner weights")
    assert json.loads((run / "curve.json").read_text()) == json.loads((straight / "curve.json").read_text())
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert not leftovers, f"a killed checkpoint write left {leftovers}"


SFT_ARGS = ["--domain", "emotional_support", "--epochs", "2", "--batch-size", "4", "--max-train-examples", "24",
            "--max-select-examples", "8", "--max-test-examples", "8", "--max-length", "32", "--checkpoint-every", "2",
            "--train-splits", "train", "--threads", "1", "--keep-checkpoint"]
# 12 steps, evaluated (and best/ written) at steps 6 and 12, checkpointed every 2 steps. sft.best:1 kills after
# the first best/ (step 6, before its checkpoint); sft.step:3 after step 7; sft.checkpoint:2 while writing step 10's.
SFT_KILLS = ["sft.best:1", "sft.step:3", "sft.checkpoint:2"]


def sft(out: Path, data_dir: Path, *extra: str) -> list[str]:
    return ["sft", *SFT_ARGS, "--out", str(out), "--data-dir", str(data_dir), *extra]


@pytest.mark.slow
def test_sft_killed_at_each_point_resumes_to_the_uninterrupted_run(tmp_path, data_dir):
    straight = tmp_path / "straight"
    expect(run_child(sft(straight, data_dir), None, tmp_path), 0, "the uninterrupted run")
    run = tmp_path / "run"
    for step, kill_at in enumerate(SFT_KILLS):
        resume = ["--resume"] if step else []
        expect(run_child(sft(run, data_dir, *resume), kill_at, tmp_path), KILLED, f"killed at {kill_at}")
    expect(run_child(sft(run, data_dir, "--resume"), None, tmp_path), 0, "the last resume")

    a, b = (torch.load(r / "checkpoint.pt", weights_only=True) for r in (straight, run))
    assert b["state"]["step"] == 12 and b["state"]["losses"] == a["state"]["losses"], \
        "every step once, with the same loss"
    assert b["state"]["evaluations"] == a["state"]["evaluations"]
    assert_same_tensors(a["model"], b["model"], "final weights")
    assert_same_tensors(tensors(straight / "best" / "model.safetensors"), tensors(run / "best" / "model.safetensors"),
                        "best planner weights")
    assert json.loads((run / "metrics.json").read_text())["test"] == \
        json.loads((straight / "metrics.json").read_text())["test"]


if __name__ == "__main__":  # the RL driver of the kill tests
    from ppdpp.planner.training.rl import train_sync

    torch.set_num_threads(1)
    train_sync(rl_trainer(Path(sys.argv[1])), resume="--resume" in sys.argv[2:])
