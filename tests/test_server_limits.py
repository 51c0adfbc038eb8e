"""The limits that protect the machine, on both servers over real HTTP on 127.0.0.1: the prompt's tokens
(counted by the real SmolLM2 tokenizer), the queue of admitted requests (429 with ``Retry-After`` while
``/health`` still answers), the per-request timeout (504, the model call cancelled, the server keeps serving),
and a memory guard on the real ``ppdpp serve-llm`` and ``ppdpp serve`` commands run as subprocesses.

A slow model is :class:`Held`, a ChatBackend served as it is (it is the thing ``serve-llm`` serves, and the
proxy's upstream): it answers at once once ``release`` is set and waits until then, recording the calls that
started and the ones cancelled. The servers' own code is unchanged.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch

from ppdpp.planner.core.types import Usage
from ppdpp.planner.llm import ChatBackend
from ppdpp.planner.llm.base import Completion
from ppdpp.planner.llm.local import LocalBackend
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.registry.manager import get_domain
from ppdpp.planner.serving.agent import PlannedAgent
from ppdpp.planner.serving.llm_server import serve_llm_in_thread
from ppdpp.planner.serving.openai_protocol import ServerLimits, estimate_prompt_tokens
from ppdpp.planner.serving.proxy import BackgroundServer, create_app

from helpers import RecordingBackend, scrape

HELLO = [{"role": "user", "content": "Say hello."}]
MESSAGES = [{"role": "system", "content": "You are a kind listener."},
            {"role": "user", "content": "I failed my exam and my parents are angry."}]
WAIT_S = 60  # bound of every wait for a server-side event (never asserted: a bound on a loop that stops itself)
RSS_BOUND_MB = 200  # how much a server's resident memory may grow while it refuses the hostile requests


class Held(ChatBackend):
    """Answers ``"ok"`` once ``release`` is set, and waits until then (polling, so that a cancelled call stops
    at once). ``started`` counts the calls that reached it, ``cancelled`` the ones cancelled while waiting.
    Its stream yields ``"o"`` at once and ``"k"`` after the release."""

    model = "held"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0
        self.cancelled = 0

    async def _wait(self) -> None:
        try:
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def complete(self, messages, *, n=1, **options):
        self.started += 1
        await self._wait()
        return Completion(["ok"] * n, Usage(1, 1))

    async def stream_items(self, messages, **options):
        self.started += 1
        yield "o"
        await self._wait()
        yield "k"
        yield Completion(["ok"], Usage(1, 1))


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def post(url: str, body: dict | bytes, timeout: float = 120) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{url}/chat/completions", content=content, timeout=timeout,
                      headers={"Content-Type": "application/json"})


def error_of(response: httpx.Response, status: int, **fields) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    for key, value in fields.items():
        assert error[key] == value, error
    return error


@pytest.fixture(scope="module")
def planner_dir(tmp_path_factory):
    torch.manual_seed(0)
    planner = PolicyPlanner(get_domain("emotional_support"), PlannerConfig(max_length=96))
    return planner.save_pretrained(tmp_path_factory.mktemp("p") / "planner")


@pytest.fixture(scope="module")
def smol(smollm2_gguf):
    backend = LocalBackend("local/smollm2")
    asyncio.run(backend.load())
    yield backend
    asyncio.run(backend.aclose())


def serve_llm(backend: ChatBackend, limits: ServerLimits):
    """``serve-llm`` serving ``backend``; yields its ``/v1`` URL."""
    return serve_llm_in_thread(backend, limits=limits)


def proxy(planner_dir: Path, backend: ChatBackend, limits: ServerLimits) -> BackgroundServer:
    """``ppdpp serve`` with ``backend`` as its upstream (no upstream timeout: only the request's)."""
    agent = PlannedAgent.from_pretrained(planner_dir, backend, max_tokens=8)
    return BackgroundServer(create_app(agent, upstream_timeout=None, limits=limits))


def servers(planner_dir: Path, backend: ChatBackend, limits: ServerLimits, which: str):
    """A context manager with ``.url`` (the ``/v1`` base) for ``which`` server serving ``backend``."""
    if which == "serve-llm":
        return serve_llm(backend, limits)
    return _ProxyURL(proxy(planner_dir, backend, limits))


class _ProxyURL:
    def __init__(self, server: BackgroundServer) -> None:
        self.server = server

    def __enter__(self) -> "_ProxyURL":
        self.server.start()
        self.url = f"{self.server.url}/v1"
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()


BOTH = ["serve-llm", "ppdpp serve"]


# ---- prompt tokens ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", BOTH)
def test_a_prompt_over_the_token_limit_is_refused_by_the_models_own_tokenizer(smol, planner_dir, which):
    limit = 128
    long = [{"role": "user", "content": "tell me about the sea " * 40}]
    tokens = len(smol.engine.prompt_ids(long))
    assert tokens > limit and tokens != estimate_prompt_tokens(long), "the estimate would not tell them apart"
    recording = RecordingBackend(smol)  # a wrapper, as the disk cache is: the tokenizer is found under it
    with servers(planner_dir, recording, ServerLimits(max_prompt_tokens=limit), which) as server:
        error = error_of(post(server.url, {"messages": long, "max_tokens": 2}), 400, param="messages",
                         code="context_length_exceeded", type="invalid_request_error")
        assert f"{tokens} tokens (local/smollm2's tokenizer)" in error["message"], error
        assert str(limit) in error["message"] and recording.received == [], "refused before any model work"
        assert post(server.url, {"messages": MESSAGES, "max_tokens": 2}).status_code == 200
        assert len(recording.received) == 1


def test_without_a_tokenizer_the_prompt_is_estimated_on_the_safe_side(planner_dir):
    held = Held()
    held.release.set()
    limits = ServerLimits(max_prompt_tokens=64)
    over = [{"role": "user", "content": "x" * 300}]  # 100 tokens estimated + 4 for the message
    with serve_llm(held, limits) as server:
        error = error_of(post(server.url, {"messages": over}), 400, param="messages")
        assert "104 tokens (estimated)" in error["message"], error
        assert held.started == 0
        assert post(server.url, {"messages": [{"role": "user", "content": "x" * 150}]}).status_code == 200
    assert estimate_prompt_tokens([{"role": "user", "content": "The sea is calm tonight."}]) >= 6


# ---- the queue ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", BOTH)
def test_a_full_queue_sheds_with_429_and_retry_after_while_health_answers(planner_dir, which):
    held = Held()
    limits = ServerLimits(max_queue=2, retry_after_s=7)
    with servers(planner_dir, held, limits, which) as server, ThreadPoolExecutor(2) as pool:
        waiting = [pool.submit(post, server.url, {"messages": MESSAGES, "max_tokens": 2}) for _ in range(2)]
        wait_until(lambda: held.started == 2, "two requests to reach the model")
        shed = post(server.url, {"messages": MESSAGES, "max_tokens": 2})
        error = error_of(shed, 429, type="rate_limit_error", code="server_busy")
        assert shed.headers["Retry-After"] == "7" and "2 requests" in error["message"], (shed.headers, error)
        assert not any(f.done() for f in waiting), "the 429 came while the queue was full, at once"
        root = server.url.removesuffix("/v1")
        metrics = scrape(root)
        assert metrics("ppdpp_requests_admitted") == 2 and metrics("ppdpp_requests_shed_total") == 1
        assert metrics("ppdpp_http_requests_total", route="/v1/chat/completions", status="429") == 1
        assert httpx.get(f"{root}/health", timeout=30).status_code == 200, "/health is never shed"
        assert httpx.get(f"{server.url}/models", timeout=30).status_code == 200
        assert held.started == 2, "the shed request never reached the model"
        held.release.set()
        assert [f.result().status_code for f in waiting] == [200, 200]
        assert post(server.url, {"messages": MESSAGES, "max_tokens": 2}).status_code == 200, "a freed slot"


# ---- the timeout --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", BOTH)
def test_a_request_past_its_timeout_gets_504_and_the_server_keeps_serving(planner_dir, which):
    held = Held()
    with servers(planner_dir, held, ServerLimits(request_timeout_s=0.5), which) as server:
        error = error_of(post(server.url, {"messages": MESSAGES, "max_tokens": 2}), 504, code="request_timeout")
        assert "0.5 s" in error["message"], error
        assert (held.started, held.cancelled) == (1, 1), "the model call was cancelled"
        metrics = scrape(server.url.removesuffix("/v1"))
        assert metrics("ppdpp_request_timeouts_total") == 1 and metrics("ppdpp_requests_admitted") == 0
        held.release.set()
        response = post(server.url, {"messages": MESSAGES, "max_tokens": 2})
        assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"], response.text


@pytest.mark.parametrize("which", BOTH)
def test_a_stream_past_its_timeout_ends_with_the_timeout_error_event(planner_dir, which):
    held = Held()
    with servers(planner_dir, held, ServerLimits(request_timeout_s=0.5), which) as server:
        body = {"messages": MESSAGES, "max_tokens": 2, "stream": True}
        with httpx.stream("POST", f"{server.url}/chat/completions", json=body, timeout=120) as response:
            assert response.status_code == 200, response.read()
            events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
        assert events[-1]["error"]["code"] == "request_timeout", events
        assert [e["choices"][0]["delta"].get("content") for e in events[:-1]][-1] == "o", events
        assert held.cancelled == 1, "the stream's model call was cancelled"


# ---- the memory guard (the real commands) -------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) / 1024


def start(args: list[str], ready: str, env: dict) -> tuple[subprocess.Popen, str]:
    """Run ``ppdpp <args>`` and return it with the line that has ``ready`` in it (or fail with its output)."""
    process = subprocess.Popen([sys.executable, "-c", "from ppdpp.planner.cli import main; main()", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if select.select([process.stdout], [], [], 1)[0]:
            output.append(process.stdout.readline())
            if ready in output[-1]:
                return process, output[-1]
    process.kill()
    pytest.fail(f"ppdpp {' '.join(args)} did not start:\n{''.join(output)}{process.stdout.read()}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def hostile_requests(url: str, prompt_limit: int) -> None:
    """The requests that made ``serve-llm`` grow to 14 GB or hold the model for minutes: each refused."""
    ten_mb = json.dumps({"messages": [{"role": "user", "content": "x" * 10_000_000}]}).encode()
    error_of(post(url, ten_mb), 413)
    error_of(post(url, {"messages": HELLO, "n": 64}), 400, param="n")
    error_of(post(url, {"messages": HELLO, "max_tokens": 100_000}), 400, param="max_tokens")
    error_of(post(url, {"messages": HELLO, "max_tokens": 0}), 400, param="max_tokens")
    near_limit = [{"role": "user", "content": "the sea " * 120_000}]  # under 1 MiB, far over the tokens
    error = error_of(post(url, {"messages": near_limit, "max_tokens": 4}), 400, param="messages")
    assert str(prompt_limit) in error["message"], error


@pytest.mark.slow  # two real servers as subprocesses (SmolLM2 and the MiniLM planner)
def test_hostile_requests_are_refused_before_model_work_within_a_memory_bound(smollm2_gguf, planner_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", "OMP_NUM_THREADS": "1", "UPSTREAM_KEY": "unused"}
    llm, line = start(["serve-llm", "--model", "local/smollm2", "--port", "0", "--limit-prompt-tokens", "2000",
                       "--limit-queue", "1", "--retry-after", "9"], "OpenAI-compatible", env)
    try:
        llm_url = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line).group(1)
        proxy_process, line = start(
            ["serve", "--planner", str(planner_dir), "--upstream", "openai/smollm2", "--api-base", llm_url,
             "--upstream-key-env", "UPSTREAM_KEY", "--upstream-retries", "0", "--port", "0", "--max-tokens", "4",
             "--threads", "1", "--limit-prompt-tokens", "3000"], "ppdpp serve:", env)
        try:
            proxy_url = line.split(" at ")[1].split()[0]
            for url, process, limit in ((llm_url, llm, 2000), (proxy_url, proxy_process, 3000)):
                assert post(url, {"messages": HELLO, "max_tokens": 4}).status_code == 200  # warm: lazy buffers
                before = rss_mb(process.pid)
                hostile_requests(url, limit)
                grown = rss_mb(process.pid) - before
                assert grown < RSS_BOUND_MB, f"{url}: RSS grew {grown:.0f} MB refusing the hostile requests"
                response = post(url, {"messages": HELLO, "max_tokens": 4})
                assert response.status_code == 200 and response.json()["choices"], response.text
            # --limit-queue 1 and --retry-after 9 reach serve-llm: while a stream holds its one slot, a POST is shed
            body = {"messages": [{"role": "user", "content": "Count from 1 to 500."}], "max_tokens": 2000,
                    "temperature": 0, "stream": True}
            with httpx.stream("POST", f"{llm_url}/chat/completions", json=body, timeout=120) as stream:
                assert stream.status_code == 200
                next(stream.iter_lines())
                shed = post(llm_url, {"messages": HELLO, "max_tokens": 4})
            error_of(shed, 429, type="rate_limit_error")
            assert shed.headers["Retry-After"] == "9", shed.headers
        finally:
            stop(proxy_process)
    finally:
        stop(llm)
