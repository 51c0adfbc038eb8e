"""Cost control: the spend meter and its budget, ``--dry-run``'s estimate against the tokens a real run then
uses (the real SmolLM2), and ``--max-cost`` stopping ``rl`` and ``evaluate`` over real HTTP (``serve-llm``
serving SmolLM2, addressed as the priced ``openai/gpt-4o-mini``), then ``rl --resume`` finishing the run."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ppdpp.planner.cli import app
from ppdpp.planner.core.types import Usage
from ppdpp.planner.llm.base import ChatBackend, Completion
from ppdpp.planner.llm.spend import BudgetExceeded, MeteredBackend, Price, SpendMeter, known_price

HELLO = [{"role": "user", "content": "Say hello."}]


class FixedUsage(ChatBackend):
    """A backend whose every reply costs 100 prompt and 10 completion tokens (and ``cost``, if given)."""

    def __init__(self, model: str, cost: float | None = None, cached: bool = False) -> None:
        self.model, self.cost, self.cached, self.calls = model, cost, cached, 0

    async def complete(self, messages, **kwargs) -> Completion:
        self.calls += 1
        return Completion(["hi"], Usage(100, 10, self.cost, cached=self.cached), self.model)


def test_the_meter_prices_completions_and_stops_at_the_budget():
    meter = SpendMeter(max_cost=0.25, price_override=Price.per_1k([1.0, 5.0]))  # $0.10 + $0.05 a call
    inner = FixedUsage("openai/my-model")
    backend = MeteredBackend(inner, meter)
    asyncio.run(backend.complete(HELLO))
    assert meter.cost == pytest.approx(0.15) and meter.tokens == 110 and meter.calls == 1
    asyncio.run(backend.complete(HELLO))  # 0.15 < 0.25: sent; now 0.30
    with pytest.raises(BudgetExceeded, match=r"spent \$0.3000 of --max-cost \$0.2500"):
        asyncio.run(backend.complete(HELLO))
    assert inner.calls == 2, "a call past the budget is never sent"

    local = SpendMeter(price_override=Price.per_1k([1.0]))
    asyncio.run(MeteredBackend(FixedUsage("local/smollm2", cost=0.0), local).complete(HELLO))
    assert local.cost == 0.0 and local.tokens == 110, "local models cost nothing, whatever the override"
    cached = SpendMeter()
    asyncio.run(MeteredBackend(FixedUsage("openai/gpt-4o-mini", cached=True), cached).complete(HELLO))
    assert cached.tokens == 0 and cached.calls == 0, "a response-cache hit spends nothing"


def test_litellm_prices_known_models_offline_and_unknown_ones_are_listed():
    price = known_price("openai/gpt-4o-mini")
    assert price is not None and price.prompt > 0 and price.completion > price.prompt
    meter = SpendMeter()
    asyncio.run(MeteredBackend(FixedUsage("openai/gpt-4o-mini"), meter).complete(HELLO))  # usage.cost None
    assert meter.cost == pytest.approx(100 * price.prompt + 10 * price.completion)
    asyncio.run(MeteredBackend(FixedUsage("openai/self-hosted-thing"), meter).complete(HELLO))
    assert meter.unpriced == {"openai/self-hosted-thing"} and "unpriced" in meter.summary()


def _tokens(output: str) -> int:
    found = re.search(r"LLM calls, ([\d,]+) tokens", output)
    assert found, output
    return int(found.group(1).replace(",", ""))


def test_dry_run_of_the_paper_preset_prices_an_api_model_and_calls_nothing(tmp_path, data_dir):
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["evaluate", "-d", "negotiation", "--agent", "openai/gpt-4o-mini",
                                      "--baselines", "no-planner,llm", "--cases", "3", "--preset", "ppdpp-paper",
                                      "--dry-run", "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "no model was called" in result.output and not out.exists(), "a dry run writes nothing"
    # 2 policies x 3 cases x 8 exchanges: agent, user, critic each; the LLM planner once per exchange
    calls = int(re.search(r"([\d,]+) LLM calls", result.output).group(1).replace(",", ""))
    assert calls == 2 * 3 * 8 * 3 + 3 * 8
    cost = float(re.search(r"tokens, \$(\d+\.\d+)", result.output).group(1))
    assert cost > 0 and "litellm" in result.output


@pytest.mark.slow  # plays dialogues with the real SmolLM2
def test_dry_run_estimate_is_within_20_percent_of_what_the_run_uses(tmp_path, data_dir, smollm2_gguf, monkeypatch):
    monkeypatch.setenv("PPDPP_NO_CACHE", "1")  # every call reaches the model and counts
    args = ["evaluate", "-d", "negotiation", "--agent", "local/smollm2", "--baselines", "no-planner,llm",
            "--cases", "1", "--max-turns", "1", "--max-tokens", "16", "--no-stop-on-repeat",
            "--out", str(tmp_path / "eval")]
    dry = CliRunner().invoke(app, [*args, "--dry-run"], env={"COLUMNS": "200"})
    assert dry.exit_code == 0, dry.output
    estimated = _tokens(dry.output)
    run = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert run.exit_code == 0, run.output
    spent = int(re.search(r"spent: ([\d,]+) tokens", run.output).group(1).replace(",", ""))
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    played = [p["turns"] for p in report["policies"]] if "turns" in report["policies"][0] else None
    assert abs(estimated - spent) <= 0.2 * spent, (
        f"dry run said {estimated:,} tokens, the run used {spent:,} (turns played: {played})")


@pytest.fixture(scope="module")
def priced_server(smollm2_gguf):
    """SmolLM2 behind ``serve-llm`` on 127.0.0.1; litellm addresses it as ``openai/gpt-4o-mini`` (a model
    whose price litellm knows) through ``OPENAI_API_BASE``."""
    from ppdpp.planner.llm.local import LocalBackend
    from ppdpp.planner.serving.llm_server import serve_llm_in_thread

    backend = LocalBackend("local/smollm2")
    server = serve_llm_in_thread(backend)
    yield server
    server.stop()
    asyncio.run(backend.aclose())


@pytest.mark.slow  # RL and evaluation dialogues over HTTP
def test_max_cost_stops_rl_cleanly_and_resume_finishes_the_run(tmp_path, data_dir, priced_server, monkeypatch):
    from ppdpp.planner.core.domain import Domain  # noqa: F401 - the registry is loaded by the CLI
    from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
    from ppdpp.planner.registry.manager import get_domain

    monkeypatch.setenv("OPENAI_API_BASE", priced_server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-dummy")
    monkeypatch.setenv("PPDPP_NO_CACHE", "1")
    planner = PolicyPlanner(get_domain("negotiation"), PlannerConfig(max_length=96)).save_pretrained(
        tmp_path / "planner")
    out = tmp_path / "rl"
    args = ["rl", "-d", "negotiation", "--planner", str(planner), "--agent", "openai/gpt-4o-mini",
            "--episodes", "2", "--episodes-per-update", "2", "--concurrency", "1", "--max-turns", "1",
            "--max-tokens", "16", "--cases", "3", "--out", str(out)]
    price = known_price("openai/gpt-4o-mini")
    assert price is not None
    # one exchange is about 1,000 prompt tokens (agent, user, critic): stop in the second episode, its first
    # kept in the journal but not yet in an update (both are one update's batch)
    budget = 1500 * price.prompt
    stopped = CliRunner().invoke(app, [*args, "--max-cost", f"{budget:.10f}"], env={"COLUMNS": "200"})
    assert stopped.exit_code == 3, stopped.output
    assert "stopped" in stopped.output and "--resume" in stopped.output
    lines = [json.loads(line) for line in (out / "transcripts.jsonl").read_text().splitlines()]
    assert [line["episode"] for line in lines] == [0], "it stopped before the end, keeping the finished episode"
    assert not (out / "final").exists()
    spent = float(re.search(r"tokens, \$(\d+\.\d+)", stopped.output).group(1))
    assert spent >= budget * 0.99

    resumed = CliRunner().invoke(app, [*args, "--resume"], env={"COLUMNS": "200"})
    assert resumed.exit_code == 0, resumed.output
    episodes = sorted(json.loads(line)["episode"] for line in (out / "transcripts.jsonl").read_text().splitlines())
    assert episodes == [0, 1], "every episode played once across the stop"
    assert len(json.loads((out / "curve.json").read_text())) == 1 and (out / "final").is_dir(), \
        "one update over the kept episode and the one played after the resume"


@pytest.mark.slow
def test_max_cost_stops_evaluate_keeping_the_finished_dialogues(tmp_path, data_dir, priced_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_BASE", priced_server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-dummy")
    monkeypatch.setenv("PPDPP_NO_CACHE", "1")
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, [
        "evaluate", "-d", "negotiation", "--agent", "openai/gpt-4o-mini", "--baselines", "no-planner",
        "--cases", "3", "--concurrency", "1", "--max-turns", "1", "--max-tokens", "16",
        "--price-per-1k-tokens", "1", "--max-cost", "1.5", "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 3, result.output
    assert "no report was written" in result.output and not (out / "report.json").exists()
    kept = (out / "transcripts" / "no-planner.jsonl").read_text().splitlines()
    assert 1 <= len(kept) < 3, result.output
