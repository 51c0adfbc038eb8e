"""examples/domain_plugin end to end: installed as its own package, found through its entry point, trained
with SFT and evaluated in self-play with SmolLM2 (tiny sizes), all in subprocesses as a user would run it.

The package is installed with ``pip install --no-deps --no-build-isolation --target DIR`` from a copy of the
folder (so that no build files land in the repository) and put on ``PYTHONPATH``; it is never installed into
the test environment itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "domain_plugin"
DOMAIN = "example_persuasion"
STRATEGIES = {"logical_appeal", "emotion_appeal", "credibility_appeal", "foot_in_the_door", "self_modeling",
              "personal_story", "donation_information", "inquiry"}


@pytest.fixture
def installed(example_plugin_site) -> Path:
    """The example installed once per session (tests/conftest.py)."""
    return example_plugin_site


def run(args: list[str], pythonpath: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    env.pop("PPDPP_PLUGINS", None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout)


def ppdpp(*args: str, pythonpath: Path) -> subprocess.CompletedProcess:
    return run(["-c", "from ppdpp.planner.cli import main; main()", *args], pythonpath)


def test_the_installed_plugin_is_found_through_its_entry_point(installed):
    result = ppdpp("data", "stats", "--domain", DOMAIN, pythonpath=installed)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 3}
    counts = {split: [cell.strip() for cell in rows[split].split("│")[2:4]] for split in ("train", "valid", "test")}
    assert counts == {"train": ["8", "24"], "valid": ["2", "5"], "test": ["2", "4"]}, result.stdout
    assert STRATEGIES <= set(rows), f"every strategy is listed:\n{result.stdout}"


@pytest.mark.slow
def test_sft_then_self_play_evaluation(installed, tmp_path):
    out = tmp_path / "run"
    result = run([str(EXAMPLE / "run_example.py"), "--out", str(out), "--epochs", "1", "--episodes", "1",
                  "--max-turns", "1", "--max-tokens", "8", "--max-length", "64", "--threads", "1"], installed)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr[-3000:]}"
    assert "ppdpp" in result.stdout and "no-planner" in result.stdout, result.stdout

    metrics = json.loads((out / "sft" / "metrics.json").read_text())
    assert metrics["domain"] == DOMAIN and metrics["test"]["planner"]["count"] == 4, metrics["test"]
    assert metrics["train"]["examples"] == 24 and metrics["train"]["steps"] == 3, metrics["train"]
    assert (out / "sft" / "best" / "planner.json").is_file()

    report = json.loads((out / "eval" / "report.json").read_text())
    assert report["domain"] == DOMAIN and report["max_turns"] == 1 and len(report["cases"]) == 1, report
    policies = {p["policy"]: p for p in report["policies"]}
    assert set(policies) == {"ppdpp", "no-planner"}, policies
    for name, summary in policies.items():
        assert summary["episodes"] == 1 and 1 <= summary["at"]["mean"] <= 1, (name, summary)
        assert summary["critic_samples"] >= summary["at"]["mean"], "the critic judged every exchange"

    planned = [json.loads(line) for line in (out / "eval" / "transcripts" / "ppdpp.jsonl").read_text().splitlines()]
    plain = [json.loads(line) for line in (out / "eval" / "transcripts" / "no-planner.jsonl").read_text().splitlines()]
    assert len(planned) == len(plain) == 1 and planned[0]["case_id"] == plain[0]["case_id"], (planned, plain)
    assert {step["strategy"] for step in planned[0]["steps"]} <= STRATEGIES, planned[0]["steps"]
    assert {step["strategy"] for step in plain[0]["steps"]} == {None}, "plain prompting uses no strategy"
    for transcript in planned + plain:
        assert transcript["domain"] == DOMAIN and len(transcript["opening"]) == 2, transcript
        assert all(step["agent"] and step["user"] for step in transcript["steps"]), transcript["steps"]
