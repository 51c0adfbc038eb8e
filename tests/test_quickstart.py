"""The README's main job, `ppdpp quickstart`, end to end at tiny sizes with the real SmolLM2 and ESConv."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ppdpp.planner.cli.app import app

TINY = ["quickstart", "--sft-examples", "48", "--rl-episodes", "2", "--eval-cases", "2", "--max-turns", "1",
        "--max-tokens", "8"]


@pytest.mark.slow
def test_quickstart_runs_sft_rl_and_evaluation_then_reuses_them(smollm2_gguf, tmp_path):
    out = tmp_path / "qs"
    first = CliRunner().invoke(app, [*TINY, "--out", str(out)])
    assert first.exit_code == 0, first.output + repr(first.exception)
    report = json.loads((out / "evaluate" / "report.json").read_text())
    names = [p["policy"] for p in report["policies"]]
    assert len(names) == 5 and names[2:] == ["no-planner", "random", "majority"], names
    assert len(report["cases"]) == 2 and all(p["episodes"] == 2 for p in report["policies"]), report
    assert (out / "evaluate" / "report.png").stat().st_size > 1000
    assert (out / "rl" / "curve.json").is_file()
    planner = json.loads((out / "rl" / "final" / "planner.json").read_text())["planner"]
    assert planner["strategy_history"], "self-play knows every earlier strategy: the quickstart planner reads them"

    again = CliRunner().invoke(app, [*TINY, "--out", str(out)])
    assert again.exit_code == 0, again.output + repr(again.exception)
    assert "SFT already done" in again.output and "RL already done" in again.output, again.output
