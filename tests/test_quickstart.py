"""The README's main job, `ppdpp quickstart`, end to end at small sizes through its real path: the grounded track
(real CraigslistBargain data, MiniLM planner, rule-based seller, oracle, then the real SmolLM2 for one turn) and
the LLM track (real SmolLM2 and ESConv)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ppdpp.planner.cli.app import app

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SMALL = ["quickstart", "--sft-examples", "64", "--rl-episodes", "16", "--eval-cases", "8", "--demo-turns", "1",
         "--max-tokens", "8", "--data-dir", str(DATA)]
TINY_LLM = ["quickstart", "--track", "llm", "--sft-examples", "48", "--rl-episodes", "2", "--eval-cases", "1",
            "--max-turns", "1", "--max-tokens", "8"]


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "craigslistbargain").is_dir(), reason="needs ../shared/data (CraigslistBargain)")
def test_grounded_quickstart_trains_evaluates_reads_and_plugs_in_then_reuses_its_stages(smollm2_gguf, tmp_path):
    out = tmp_path / "qs"
    first = CliRunner().invoke(app, [*SMALL, "--out", str(out)], terminal_width=250)
    assert first.exit_code == 0, first.output + repr(first.exception)
    text = first.output
    headers = re.findall(r"(\d)/4 (SFT|RL|evaluation|plug-and-play)", text)
    assert headers == [("1", "SFT"), ("2", "RL"), ("3", "evaluation"), ("4", "plug-and-play")], text
    assert len(re.findall(r"\(about \d+ CPU seconds\)", text)) == 4, "each stage shows its expected time"

    report = json.loads((out / "evaluate" / "report.json").read_text())
    names = [p["policy"] for p in report["policies"]]
    assert names == ["planner:sft/best", "planner:rl/final", "no-planner", "random", "majority"], names
    assert report["models"]["agent"] == "template" and report["critic_mode"], report["models"]
    assert len(report["cases"]) == 8 and all(p["episodes"] == 8 for p in report["policies"])
    assert all("sl" in p["metrics"] for p in report["policies"]), "negotiation's metric is reported"
    assert (out / "evaluate" / "report.png").stat().st_size > 1000
    rl = json.loads((out / "rl" / "config.json").read_text())
    assert (rl["agent"], rl["user"], rl["critic"], rl["episodes"]) == ("template", "rule-based", "oracle", 16)
    planner = json.loads((out / "rl" / "final" / "planner.json").read_text())["planner"]
    assert planner["strategy_history"] and planner["freeze_encoder"], planner

    reading = text[text.index("Reading"):]
    for other in ("SFT", "no-planner", "random", "majority"):
        assert re.search(rf"vs {other} \([0-9.]+\): [+-][0-9.]+ \[[+-][0-9.]+, [+-][0-9.]+\], paired p = [0-9.]+",
                         reading), reading
    assert "planner:" in text and "instruction:" in text and "Seller (rule-based):" in text, text
    assert "Buyer (local/smollm2):" in text and "135M" in text, "the plug-in step is printed turn by turn, honestly"
    assert f"ppdpp ui --planner {out / 'rl' / 'final'} --upstream local/smollm2" in text
    assert "ppdpp serve --planner" in text

    again = CliRunner().invoke(app, [*SMALL, "--out", str(out), "--demo-turns", "0"], terminal_width=250)
    assert again.exit_code == 0, again.output + repr(again.exception)
    for stage in ("SFT", "RL", "evaluation"):
        assert f"{stage} already done" in again.output, again.output
    assert "Reading" in again.output and "plug-and-play" not in again.output


def test_grounded_quickstart_refuses_a_domain_without_an_exact_outcome(tmp_path):
    result = CliRunner().invoke(app, ["quickstart", "-d", "emotional_support", "--out", str(tmp_path / "q")],
                                terminal_width=250)
    assert result.exit_code == 2, result.output
    assert "negotiation or tutoring" in result.output and "--track llm" in result.output, result.output
    assert not (tmp_path / "q").exists()


@pytest.mark.slow
def test_llm_quickstart_runs_sft_rl_and_evaluation_then_reuses_them(smollm2_gguf, tmp_path):
    out = tmp_path / "qs"
    first = CliRunner().invoke(app, [*TINY_LLM, "--out", str(out)])
    assert first.exit_code == 0, first.output + repr(first.exception)
    report = json.loads((out / "evaluate" / "report.json").read_text())
    names = [p["policy"] for p in report["policies"]]
    assert len(names) == 5 and names[2:] == ["no-planner", "random", "majority"], names
    assert len(report["cases"]) == 1 and all(p["episodes"] == 1 for p in report["policies"]), report
    assert (out / "evaluate" / "report.png").stat().st_size > 1000
    assert (out / "rl" / "curve.json").is_file()
    planner = json.loads((out / "rl" / "final" / "planner.json").read_text())["planner"]
    assert planner["strategy_history"], "self-play knows every earlier strategy: the quickstart planner reads them"

    again = CliRunner().invoke(app, [*TINY_LLM, "--out", str(out)])
    assert again.exit_code == 0, again.output + repr(again.exception)
    assert "SFT already done" in again.output and "RL already done" in again.output, again.output
