"""A careless user at the command line: every bad value of every command is refused with exit 2 and one clear
line (no traceback), before any model loads and before anything is written to the output folder. Driven
in-process through the console script's ``main()``; also tables that fit 80 columns and API errors that
cannot succeed on retry failing at once (against a real local HTTP server)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest
from rich.console import Console

from ppdpp.planner.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from test_llm_api import HELLO, fail, scripted_server  # noqa: E402  (the local fake provider)

EVAL = ["evaluate", "-d", "negotiation", "--agent", "local/smollm2"]
RL = ["rl", "-d", "negotiation", "--agent", "local/smollm2", "--planner", "{planner}"]
SFT = ["sft", "-d", "tutoring"]

# (command line, what the one line must name); {out} is a fresh path under tmp_path, {planner} an empty folder
CARELESS = [
    (["nosuch-command"], "nosuch-command"),
    (["--plugins", "nosuch", "plugins"], "nosuch"),
    (["data", "stats", "-d", "nosuch"], "nosuch"),
    (["data", "stats"], "--domain"),
    ([*SFT, "--max-train-examples", "-5", "--out", "{out}"], "--max-train-examples"),
    ([*SFT, "--max-train-examples", "0", "--out", "{out}"], "--max-train-examples"),
    ([*SFT, "--epochs", "0", "--out", "{out}"], "--epochs"),
    ([*SFT, "--epochs", "two", "--out", "{out}"], "--epochs"),
    ([*SFT, "--holdout-fraction", "1.5", "--out", "{out}"], "--holdout-fraction"),
    ([*SFT, "--threads", "100000", "--out", "{out}"], "--threads"),
    ([*SFT, "--max-length", "4", "--out", "{out}"], "--max-length"),
    (["sft", "-d", "nosuch", "--out", "{out}"], "nosuch"),
    ([*SFT, "--config", "{out}.yaml", "--out", "{out}"], ".yaml"),
    ([*RL, "--episodes", "0", "--out", "{out}"], "--episodes"),
    ([*RL, "--episodes", "-3", "--out", "{out}"], "--episodes"),
    ([*RL, "--episodes-per-update", "0", "--out", "{out}"], "--episodes-per-update"),
    ([*RL, "--gamma", "2", "--out", "{out}"], "--gamma"),
    ([*RL, "--cases", "0", "--out", "{out}"], "--cases"),
    ([*RL, "--out", "{out}"], "--planner"),  # an empty folder is not a saved planner
    (["rl", "-d", "negotiation", "--agent", "banana", "--planner", "{planner}", "--out", "{out}"], "--planner"),
    ([*EVAL, "--cases", "0", "--out", "{out}"], "--cases"),
    ([*EVAL, "--cases", "-2", "--out", "{out}"], "--cases"),
    ([*EVAL, "--max-turns", "0", "--out", "{out}"], "--max-turns"),
    ([*EVAL, "--critic-mode", "best", "--out", "{out}"], "--critic-mode"),
    ([*EVAL, "--concurrency", "0", "--out", "{out}"], "--concurrency"),
    ([*EVAL, "--concurrency", "99999999999", "--out", "{out}"], "--concurrency"),
    ([*EVAL, "--split", "nope", "--out", "{out}"], "--split"),
    ([*EVAL, "--baselines", "oracle", "--out", "{out}"], "oracle"),
    ([*EVAL, "--planner", "{out}/nowhere", "--out", "{out}"], "--planner"),
    (["evaluate", "-d", "negotiation", "--agent", "banana", "--out", "{out}"], "banana"),
    (["evaluate", "-d", "negotiation", "--agent", "local/smollm3", "--out", "{out}"], "smollm3"),
    (["evaluate", "-d", "negotiation", "--agent", "local/smollm2", "--user", "banana", "--out", "{out}"], "banana"),
    (["evaluate", "-d", "nosuch", "--agent", "local/smollm2", "--out", "{out}"], "nosuch"),
    (["quickstart", "--eval-cases", "0", "--out", "{out}"], "--eval-cases"),
    (["quickstart", "--rl-episodes", "-1", "--out", "{out}"], "--rl-episodes"),
    (["quickstart", "--sft-examples", "many", "--out", "{out}"], "--sft-examples"),
    (["quickstart", "-d", "nosuch", "--out", "{out}"], "nosuch"),
    (["quickstart", "--model", "banana", "--out", "{out}"], "banana"),
    (["quickstart", "--model", "local/smollm3", "--out", "{out}"], "smollm3"),
    (["serve", "--planner", "{planner}", "--upstream", "banana"], "banana"),
    (["serve", "--planner", "{out}", "--upstream", "local/smollm2"], "--planner"),
    (["serve", "--planner", "{planner}", "--upstream", "local/smollm2", "--port", "99999"], "--port"),
    (["serve", "--planner", "{planner}", "--upstream", "local/smollm2", "--limit-n", "0"], "--limit-n"),
    (["serve", "--planner", "{planner}", "--upstream", "local/smollm2", "--max-tokens", "-1"], "--max-tokens"),
    (["serve-llm", "-m", "local/smollm2", "--port", "99999"], "--port"),
    (["serve-llm", "-m", "local/smollm2", "--port", "-1"], "--port"),
    (["serve-llm", "-m", "local/smollm2", "--dtype", "int3"], "--dtype"),
    (["serve-llm", "-m", "local/smollm2", "--max-batch-size", "0"], "--max-batch-size"),
    (["serve-llm", "-m", "banana"], "banana"),
    (["chat", "-m", "local/smollm2", "--max-tokens", "0"], "--max-tokens"),
    (["chat", "-m", "local/smollm2", "--temperature", "-1"], "--temperature"),
    (["chat", "-m", "local/smollm3"], "smollm3"),
    (["chat", "-m", "banana"], "banana"),
    (["models", "nosuch"], "nosuch"),
    (["models", "fetch", "nosuch"], "nosuch"),
]


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    """``ppdpp ARGV`` through the console script's ``main()``: its exit code and everything it printed."""
    from ppdpp.planner.registry.manager import restrict_plugins

    try:
        with pytest.raises(SystemExit) as caught:
            main(argv)
    finally:
        restrict_plugins(None)  # --plugins restricts the process's registry: as a fresh process would be
    out = capsys.readouterr()
    return caught.value.code, out.out + out.err


@pytest.mark.parametrize("argv, named", CARELESS, ids=[" ".join(a[:4]) + f" [{n}]" for a, n in CARELESS])
def test_careless_input_is_one_clear_line_and_exit_2(argv, named, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # chat must fail before it reads
    out, planner = tmp_path / "x", tmp_path / "empty-planner"
    planner.mkdir()
    argv = [a.format(out=out, planner=planner) for a in argv]
    code, printed = run_main(argv, capsys)
    errors = [line for line in printed.splitlines() if line.startswith("error:")]
    assert code == 2, f"exit {code}: {printed}"
    assert "Traceback" not in printed and len(errors) == 1, printed
    assert printed.strip().endswith(errors[0]) and named in errors[0], printed
    assert "loading" not in printed.lower(), f"a model loaded before the input was refused: {printed}"
    assert not out.exists(), f"{out} was written before the inputs were checked"


def test_debug_shows_the_traceback(capsys):
    from ppdpp.planner.core.domain import DomainError

    with pytest.raises(DomainError, match="nosuch"):
        main(["--debug", "data", "stats", "-d", "nosuch"])


def test_a_port_in_use_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        code, printed = run_main(["serve-llm", "-m", "local/smollm2", "--port", str(taken.getsockname()[1])], capsys)
    finally:
        taken.close()
    errors = [line for line in printed.splitlines() if line.startswith("error:")]
    assert code == 2 and "Traceback" not in printed and len(errors) == 1, printed
    assert "already in use" in errors[0] and "--port" in errors[0], printed


def test_the_evaluation_table_at_80_columns_keeps_every_name_and_value():
    from ppdpp.simulators.evaluate import Estimate, EvaluationReport, PolicyReport, report_table

    names = ["planner:sft-emotional_support/best", "planner:rl-emotional_support/final", "no-planner", "random"]
    policies = [PolicyReport(name, 10, i, Estimate(i / 10, 0.05, 0.95), Estimate(2.5 + i, 2.0, 3.0),
                             Estimate(0.125 * i, 0.0, 1.0), {}, [0.1, 0.2, 0.3 + i / 100], 0, 30, i, None,
                             1234567, 89012, None) for i, name in enumerate(names)]
    report = EvaluationReport("emotional_support", "test", ["c"] * 10, 0, 3, {"agent": "local/smollm2"},
                              "greedy", policies)
    narrow, wide = render(report_table(report), 80), render(report_table(report), 250)
    assert max(map(len, narrow.splitlines())) <= 80, narrow
    for text in (narrow, wide):
        for p in policies:
            assert p.policy in text, f"{p.policy} cut at this width:\n{text}"
            for value in (str(p.sr), str(p.at), "0.30" if p.planner_parse_failures == 0 else "0.33",
                          f"{p.prompt_tokens + p.completion_tokens:,}"):
                assert value in text, f"{value} missing:\n{text}"
    assert "…" not in narrow, narrow
    assert len(wide.splitlines()) < len(narrow.splitlines()), "a wide console gets one row per policy"


def test_errors_that_cannot_succeed_on_retry_fail_at_once(monkeypatch):
    from ppdpp.planner.llm import LLMError, open_chat

    async def unauthorised(i, body, request):
        return fail(401, "invalid api key")

    async def run() -> tuple[int, str, str]:
        async with scripted_server(unauthorised) as (url, seen):
            backend = open_chat("openai/m", cache=False, api_base=url, api_key="sk-wrong", backoff_s=0.01)
            with pytest.raises(LLMError) as wrong_key:
                await backend.complete(HELLO, max_tokens=2)
            requests = len(seen)
            monkeypatch.delenv("OPENAI_API_KEY", raising=False)
            keyless = open_chat("openai/m", cache=False, api_base=url, backoff_s=0.01)  # no key at all
            with pytest.raises(LLMError) as no_key:
                await keyless.complete(HELLO, max_tokens=2)
            return requests, str(wrong_key.value), str(no_key.value)

    requests, wrong_key, no_key = asyncio.run(run())
    assert requests == 1, f"a 401 must not be retried; the server saw {requests} requests"
    assert "not retryable" in wrong_key and "401" in wrong_key, wrong_key
    assert "not retryable" in no_key and "api_key" in no_key, f"a missing key must fail at once: {no_key}"


def render(renderable, width: int = 80) -> str:
    console = Console(width=width, record=True, file=open(os.devnull, "w"))
    console.print(renderable)
    return console.export_text()


def test_a_wrong_api_key_on_the_first_call_leaves_no_output_folder(tmp_path, monkeypatch, capsys):
    async def unauthorised(i, body, request):
        return fail(401, "invalid api key")

    async def evaluate_into(out: Path) -> tuple[int, str]:
        async with scripted_server(unauthorised) as (url, seen):
            monkeypatch.setenv("OPENAI_API_BASE", url)
            monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
            return await asyncio.to_thread(
                run_main, ["evaluate", "-d", "negotiation", "--agent", "openai/m", "--user", "rule-based", "--critic",
                           "oracle", "--baselines", "no-planner", "--cases", "1", "--max-turns", "1",
                           "--out", str(out)], capsys)

    code, printed = asyncio.run(evaluate_into(tmp_path / "ev"))
    assert code == 2 and "401" in printed, printed
    assert not (tmp_path / "ev").exists(), "a run that played nothing must not leave its folder behind"
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    code, printed = asyncio.run(evaluate_into(kept))
    assert code == 2 and (kept / "notes.txt").read_text() == "mine", "a folder that was there stays"
