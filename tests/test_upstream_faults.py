"""An evaluation whose agent is an API model rides out upstream faults, over real HTTP on 127.0.0.1.

The domain is negotiation with the rule-based Seller and the oracle critic, so the only LLM calls are the
agent's, made through the litellm backend (``openai/...`` with ``api_base``). The upstream is
(a) ``ppdpp serve-llm --model local/smollm2`` in a subprocess, killed and restarted on the same port
mid-evaluation; (b) a stub provider slower than the backend's timeout at first; (c) a stub provider in a 429
storm that answers with ``Retry-After`` and refuses anyone who comes back sooner. Each time the evaluation must
finish with every case played exactly once, and each failed attempt must be logged as one line without the key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from ppdpp.planner.llm import open_chat
from ppdpp.planner.llm.api import parse_retry_after
from ppdpp.planner.policy.baselines import NoPlannerPolicy
from ppdpp.planner.registry.manager import get_domain
from ppdpp.simulators.env import EnvConfig
from ppdpp.simulators.evaluate import EvaluationReport, evaluate_policies, transcript_path
from ppdpp.simulators.roles import resolve_roles
from ppdpp.simulators.runner import load_transcripts

CASES = 3
SECRET = "sk-test-DO-NOT-LEAK-7171"
LOGGER = "ppdpp.llm.api"


async def evaluate(url: str, out: Path, data_dir: Path, *, concurrency: int = CASES,
                   **options: object) -> EvaluationReport:
    """The no-planner agent (``openai/smollm2`` at ``url``, no response cache) on the first test cases."""
    domain = get_domain("negotiation")
    roles = resolve_roles(domain, "openai/smollm2", "rule-based", "oracle", data_dir=data_dir,
                          open_chat=lambda model: open_chat(model, cache=False, api_base=url, api_key=SECRET,
                                                            **options))
    cases = domain.load_cases("test", data_dir)[:CASES]
    try:
        return await evaluate_policies(domain, [NoPlannerPolicy()], cases,
                                       lambda: roles.make_env(EnvConfig(max_turns=2, max_tokens=8)),
                                       concurrency=concurrency, out_dir=out, progress=False)
    finally:
        await roles.aclose()


def assert_every_case_once(report: EvaluationReport, out: Path) -> None:
    (policy,) = report.policies
    assert len(report.cases) == CASES and policy.episodes == CASES, (report.cases, policy.episodes)
    played = [row["case_id"] for row in load_transcripts(transcript_path(out, "no-planner"))]
    assert sorted(played) == sorted(report.cases), f"each case once: played {played}, cases {report.cases}"


def failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert all(SECRET not in line and "\n" not in line for line in lines), lines
    return lines


# ---- (a) the real serve-llm process, killed and restarted --------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServeLLM:
    """``ppdpp serve-llm --model local/smollm2`` as a subprocess on one fixed port, its output in a log file."""

    def __init__(self, port: int, logs: Path) -> None:
        self.port, self.logs, self.starts = port, logs, 0
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        """Start it and wait until it listens."""
        self.starts += 1
        log = self.logs / f"serve-llm-{self.starts}.log"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        with open(log, "w") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from ppdpp.planner.cli import main; main()", "serve-llm",
                 "--model", "local/smollm2", "--port", str(self.port)],
                stdout=sink, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 300
        while "serving" not in log.read_text() and self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "serving" in log.read_text(), f"serve-llm did not start:\n{log.read_text()}"

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.mark.slow  # loads SmolLM2 twice in subprocesses and waits out a restart
def test_evaluation_survives_serve_llm_killed_and_restarted(smollm2_gguf, data_dir, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    server = ServeLLM(free_port(), tmp_path)
    server.start()
    out = tmp_path / "eval"
    finished_at_kill: list[int] = []

    async def kill_and_restart_after_the_first_dialogue() -> None:
        transcript = transcript_path(out, "no-planner")
        while True:
            done = len(await asyncio.to_thread(lambda: transcript.read_text().splitlines())) \
                if transcript.exists() else 0
            if done:
                break
            await asyncio.sleep(0.1)
        finished_at_kill.append(done)
        server.kill()
        await asyncio.to_thread(server.start)

    async def run() -> EvaluationReport:
        fault = asyncio.create_task(kill_and_restart_after_the_first_dialogue())
        try:  # one dialogue at a time; a budget (60 retries, 2 s apart at most) for a restart on a loaded machine
            report = await evaluate(server.url, out, data_dir, concurrency=1, max_retries=60, max_backoff_s=2)
            await fault
            return report
        finally:
            fault.cancel()

    try:
        report = asyncio.run(run())
    finally:
        server.kill()
    assert finished_at_kill and finished_at_kill[0] < CASES, f"not killed mid-evaluation: {finished_at_kill}"
    assert server.starts == 2
    assert_every_case_once(report, out)
    lost = [line for line in failures(caplog) if "could not connect to " + server.url in line]
    assert lost, f"the restart should have cost some attempts: {failures(caplog)}"


# ---- (b) and (c): a stub provider at the HTTP boundary --------------------------------------------------------
def reply(text: str) -> web.Response:
    return web.json_response({
        "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": "smollm2",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59},
    })


@asynccontextmanager
async def stub(handle: Callable[[dict, web.Request], Awaitable[web.Response]]) -> AsyncIterator[str]:
    """An OpenAI-compatible stub on a free local port; yields its base URL."""

    async def chat(request: web.Request) -> web.Response:
        return await handle(await request.json(), request)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_evaluation_retries_an_upstream_slower_than_the_timeout(data_dir, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    slow = {"left": CASES, "seen": 0}  # each dialogue's first request comes too late
    released = asyncio.Event()

    async def handle(body: dict, request: web.Request) -> web.Response:
        slow["seen"] += 1
        if slow["left"] > 0:
            slow["left"] -= 1
            await released.wait()  # hangs until the evaluation is over: past any timeout, however loaded the machine
        return reply("I can pay $100 for it, cash today.")

    async def run() -> EvaluationReport:
        async with stub(handle) as url:
            try:
                return await evaluate(url, tmp_path, data_dir, timeout=2.0, max_retries=3, backoff_s=0.05)
            finally:
                released.set()

    report = asyncio.run(run())
    assert_every_case_once(report, tmp_path)
    assert slow["left"] == 0 and slow["seen"] > CASES, slow
    timed_out = [line for line in failures(caplog) if "timed out after 2s" in line]
    assert len(timed_out) >= CASES, failures(caplog)


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_evaluation_waits_out_a_429_storm_as_retry_after_asks(data_dir, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    retry_after = 1.0
    storm = {"left": 2 * CASES, "early": 0, "ok": 0}  # the first 2*CASES requests are refused
    not_before: dict[str, float] = {}

    async def handle(body: dict, request: web.Request) -> web.Response:
        key, now = json.dumps(body["messages"], sort_keys=True), time.monotonic()
        early = now < not_before.get(key, 0.0)
        if early or storm["left"] > 0:
            storm["early"] += early
            if not early:
                storm["left"] -= 1
                not_before[key] = now + retry_after
            message = f"rate limited; you sent {request.headers.get('Authorization')}"
            return web.json_response({"error": {"message": message, "type": "rate_limit_error"}}, status=429,
                                     headers={"Retry-After": f"{retry_after:g}"})
        storm["ok"] += 1
        return reply("Would you take $80? I can pick it up tonight.")

    async def run() -> EvaluationReport:
        async with stub(handle) as url:  # our own backoff alone (10 ms doubling) would come back far too soon
            return await evaluate(url, tmp_path, data_dir, max_retries=4, backoff_s=0.01, max_backoff_s=10)

    report = asyncio.run(run())
    assert_every_case_once(report, tmp_path)
    assert storm["left"] == 0 and storm["early"] == 0, f"retried before Retry-After said: {storm}"
    limited = [line for line in failures(caplog) if "rate limited" in line and "(Retry-After 1s)" in line]
    assert len(limited) == 2 * CASES, failures(caplog)


def test_retry_after_is_read_as_seconds_or_a_date_and_capped_by_max_backoff(tmp_path):
    assert parse_retry_after("2") == 2.0 and parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0, "a date in the past: now"
    assert 50 < (parse_retry_after(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60)))
                 or 0) <= 60
    assert parse_retry_after("soon") is None and parse_retry_after("nan") is None
    calls = {"n": 0}

    async def handle(body: dict, request: web.Request) -> web.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return web.json_response({"error": {"message": "busy", "type": "server_error"}}, status=503,
                                     headers={"Retry-After": "3600"})
        return reply("fine")

    async def run() -> str:
        async with stub(handle) as url:
            backend = open_chat("openai/smollm2", cache=False, api_base=url, api_key=SECRET, max_backoff_s=0.2)
            completion = await asyncio.wait_for(backend.complete([{"role": "user", "content": "hi"}]), 60)
            return completion.text

    assert asyncio.run(run()) == "fine" and calls["n"] == 2
