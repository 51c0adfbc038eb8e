"""The OpenAI protocol both servers share, over real HTTP on 127.0.0.1: limits (400 with the right ``param``,
413 for the body), bearer tokens on ``serve-llm``, real token streaming (SmolLM2 -> ``serve-llm`` -> litellm ->
``ppdpp serve`` -> the client) with usage, and a bug in a backend reported as a 500, not as an upstream 502.

The last test runs the real ``ppdpp serve-llm`` command as a subprocess.

The upstream serves the real SmolLM2 through :class:`Gated`, which passes its stream on unchanged but, when a
test arms it, waits after the first piece until the client has read a chunk: a layer that buffered the reply
would keep that chunk back until the stream ended, so the order of events shows the streaming is real.
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

import httpx
import pytest
import torch

from ppdpp.planner.llm import ChatBackend, open_chat
from ppdpp.planner.llm.cache import CachedBackend
from ppdpp.planner.llm.local import LocalBackend
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.registry.manager import get_domain
from ppdpp.planner.serving.agent import PlannedAgent
from ppdpp.planner.serving.llm_server import serve_llm_in_thread
from ppdpp.planner.serving.openai_protocol import ServerLimits
from ppdpp.planner.serving.proxy import BackgroundServer, create_app

LLM_TOKEN = "llm-token-8d2e"
PROXY_TOKEN = "proxy-token-31c7"
LIMITS = ServerLimits(max_body_bytes=64 * 1024, max_n=4, max_tokens=64)
HELLO = [{"role": "user", "content": "Write a short poem about the sea."}]
MESSAGES = [{"role": "system", "content": "You are a kind listener."},
            {"role": "user", "content": "I failed my exam and my parents are angry."}]


class Gated(ChatBackend):
    """The real backend; its stream is passed on as it comes, and logs into ``events``. While ``gate`` is
    set to an Event, the stream waits after its first piece until that Event is set (at most 120 s)."""

    def __init__(self, inner: ChatBackend, events: list[str]) -> None:
        self.inner, self.model, self.events = inner, inner.model, events
        self.gate: threading.Event | None = None

    async def complete(self, messages, **options):
        return await self.inner.complete(messages, **options)

    async def stream_items(self, messages, **options):
        stream = self.inner.stream(messages, **options)
        async for piece in stream:
            yield piece
            if self.gate is not None and "upstream: first piece" not in self.events:
                self.events.append("upstream: first piece")
                opened = await asyncio.to_thread(self.gate.wait, 120)
                self.events.append("upstream: gate opened" if opened else "upstream: gate timed out")
        self.events.append("upstream: done")
        yield stream.completion


class Buggy(ChatBackend):
    """The real backend called with a keyword it does not take: a bug, a real ``TypeError`` from its code."""

    def __init__(self, inner: ChatBackend) -> None:
        self.inner, self.model = inner, inner.model

    async def complete(self, messages, **options):
        return await self.inner.complete(messages, top_k=5, **options)


@pytest.fixture(scope="module")
def smol(smollm2_gguf):
    backend = LocalBackend("local/smollm2")
    asyncio.run(backend.load())
    yield backend
    asyncio.run(backend.aclose())


@pytest.fixture(scope="module")
def events():
    return []


@pytest.fixture(scope="module")
def gated(smol, events):
    return Gated(smol, events)


@pytest.fixture(scope="module")
def llm_server(gated):
    server = serve_llm_in_thread(gated, served_name="smollm2", token=LLM_TOKEN, limits=LIMITS)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def planner_dir(tmp_path_factory):
    torch.manual_seed(0)
    planner = PolicyPlanner(get_domain("emotional_support"), PlannerConfig(max_length=96))
    return planner.save_pretrained(tmp_path_factory.mktemp("p") / "planner")


def proxy_for(planner_dir, llm: ChatBackend | str, **options) -> BackgroundServer:
    agent = PlannedAgent.from_pretrained(planner_dir, llm, max_tokens=24, **options)
    return BackgroundServer(create_app(agent, token=PROXY_TOKEN, upstream_timeout=300, limits=LIMITS))


@pytest.fixture(scope="module")
def proxy(planner_dir, llm_server):
    """``ppdpp serve`` in front of ``serve-llm`` over HTTP (litellm's client, the real streaming path)."""
    with proxy_for(planner_dir, "openai/smollm2", api_base=llm_server.url, api_key=LLM_TOKEN, cache=False,
                   max_retries=0, timeout=300) as server:
        yield server


def post(url: str, token: str, body: dict | bytes) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{url}/chat/completions", content=content, timeout=300,
                      headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


def sse_events(url: str, token: str, body: dict, on_event=None) -> list[dict]:
    """The ``data:`` events of a streamed reply, in order; ``on_event(event)`` is called as each is read."""
    got = []
    with httpx.stream("POST", f"{url}/chat/completions", json={**body, "stream": True}, timeout=300,
                      headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            got.append(json.loads(line[len("data: "):]))
            if on_event is not None:
                on_event(got[-1])
    return got


def content(event: dict) -> str | None:
    return event["choices"][0]["delta"].get("content") if event.get("choices") else None


def both(llm_server, proxy) -> dict[str, tuple[str, str]]:
    return {"serve-llm": (llm_server.url, LLM_TOKEN), "ppdpp serve": (f"{proxy.url}/v1", PROXY_TOKEN)}


# ---- limits -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("server", ["serve-llm", "ppdpp serve"])
@pytest.mark.parametrize("field, value", [("n", LIMITS.max_n + 1), ("max_tokens", LIMITS.max_tokens + 1),
                                          ("max_completion_tokens", LIMITS.max_tokens + 1), ("max_tokens", 0)])
def test_requests_over_the_limits_get_a_400_naming_the_field(llm_server, proxy, server, field, value):
    url, token = both(llm_server, proxy)[server]
    response = post(url, token, {"messages": MESSAGES, field: value})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == field and error["type"] == "invalid_request_error", error
    assert str(value) in error["message"], error


@pytest.mark.parametrize("server", ["serve-llm", "ppdpp serve"])
def test_a_body_over_the_limit_gets_a_413_and_the_server_keeps_serving(llm_server, proxy, server):
    url, token = both(llm_server, proxy)[server]
    huge = {"messages": [{"role": "user", "content": "x" * LIMITS.max_body_bytes}]}
    response = post(url, token, huge)
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert str(LIMITS.max_body_bytes) in error["message"] and error["type"] == "invalid_request_error", error
    assert post(url, token, {"messages": MESSAGES, "max_tokens": 2}).status_code == 200


# ---- tokens -------------------------------------------------------------------------------------------------
def test_serve_llm_refuses_a_missing_or_wrong_token(llm_server):
    body = {"messages": HELLO, "max_tokens": 2}
    for headers in ({}, {"Authorization": f"Bearer {LLM_TOKEN}x"}, {"Authorization": LLM_TOKEN}):
        response = httpx.post(f"{llm_server.url}/chat/completions", json=body, headers=headers, timeout=60)
        assert response.status_code == 401, (headers, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_api_key" and LLM_TOKEN not in response.text, error
    assert post(llm_server.url, LLM_TOKEN, body).status_code == 200
    assert httpx.get(llm_server.url.removesuffix("/v1") + "/health", timeout=60).json()["status"] == "ok"


# ---- streaming ----------------------------------------------------------------------------------------------
@pytest.mark.slow  # generates with the real model several times: kept out of the fast tier
def test_serve_llm_streams_tokens_with_usage_like_the_whole_reply(llm_server, smol):
    got = sse_events(llm_server.url, LLM_TOKEN, {"messages": HELLO, "max_tokens": 24, "temperature": 0,
                                                 "stream_options": {"include_usage": True}})
    pieces = [c for c in map(content, got) if c]
    whole = smol.complete_sync(HELLO, max_tokens=24)
    assert len(pieces) > 1, got
    assert "".join(pieces) == whole.text, (pieces, whole.text)
    assert got[-1]["choices"] == [] and got[-1]["usage"] == {
        "prompt_tokens": whole.usage.prompt_tokens, "completion_tokens": whole.usage.completion_tokens,
        "total_tokens": whole.usage.prompt_tokens + whole.usage.completion_tokens}, got[-1]
    assert [e["choices"][0]["finish_reason"] for e in got if e["choices"]][-1] == whole.finish_reason()


@pytest.mark.slow  # generates with the real model several times: kept out of the fast tier
def test_litellm_streams_from_serve_llm(llm_server, smol):
    remote = open_chat("openai/smollm2", cache=False, api_base=llm_server.url, api_key=LLM_TOKEN)

    async def run():
        stream = remote.stream(HELLO, max_tokens=24)
        return [piece async for piece in stream], stream.completion

    pieces, completion = asyncio.run(run())
    whole = smol.complete_sync(HELLO, max_tokens=24)
    assert len(pieces) > 1 and "".join(pieces) == whole.text, pieces
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        whole.usage.prompt_tokens, whole.usage.completion_tokens), completion.usage


def test_a_reply_streamed_through_the_proxy_arrives_before_generation_ends(proxy, gated, events):
    events.clear()
    client_saw_first = threading.Event()

    def on_event(event: dict) -> None:
        if content(event) and not client_saw_first.is_set():
            events.append("client: first chunk")
            client_saw_first.set()

    gated.gate = client_saw_first
    try:
        got = sse_events(f"{proxy.url}/v1", PROXY_TOKEN, {"messages": MESSAGES, "max_tokens": 24,
                                                         "stream_options": {"include_usage": True}}, on_event)
    finally:
        gated.gate = None
    assert events.index("upstream: first piece") < events.index("client: first chunk") < events.index(
        "upstream: done"), events
    assert "upstream: gate opened" in events, f"the first chunk reached the client only at the end: {events}"
    assert len([c for c in map(content, got) if c]) > 1, got
    assert got[0]["ppdpp"]["strategy"], got[0]
    usage = got[-1]["usage"]
    assert got[-1]["choices"] == [] and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0, got[-1]


def test_a_cached_backend_streams_a_miss_and_replays_a_hit(smol, tmp_path):
    cached = CachedBackend(smol, directory=tmp_path)

    async def run():
        results = []
        for _ in range(2):
            stream = cached.stream(HELLO, max_tokens=12)
            results.append(([piece async for piece in stream], stream.completion))
        return results

    (miss, first), (hit, second) = asyncio.run(run())
    assert len(miss) > 1 and hit == ["".join(miss)], (miss, hit)
    assert (cached.misses, cached.hits) == (1, 1) and second.usage.cached and not first.usage.cached


# ---- bugs are 500s, not upstream failures -------------------------------------------------------------------
def test_a_type_error_in_a_backend_is_a_500_on_both_servers(smol, planner_dir):
    with serve_llm_in_thread(Buggy(smol), token=LLM_TOKEN) as server, proxy_for(planner_dir, Buggy(smol)) as proxy:
        for url, token, body in ((server.url, LLM_TOKEN, {"messages": HELLO}),
                                 (server.url, LLM_TOKEN, {"messages": HELLO, "stream": True}),
                                 (f"{proxy.url}/v1", PROXY_TOKEN, {"messages": MESSAGES}),
                                 (f"{proxy.url}/v1", PROXY_TOKEN, {"messages": MESSAGES, "stream": True})):
            response = post(url, token, body)
            assert response.status_code == 500, (url, body, response.text)
            error = response.json()["error"]
            assert error["type"] == "server_error" and "TypeError" in error["message"], error
            assert "top_k" in error["message"], error


# ---- the CLI ------------------------------------------------------------------------------------------------
@pytest.mark.slow  # a subprocess or real back-off waits: kept out of the fast tier
def test_serve_llm_reads_its_token_from_the_environment_and_warns_off_loopback(smollm2_gguf):
    env = {**os.environ, "PPDPP_LLM_SERVER_TOKEN": LLM_TOKEN, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    command = [sys.executable, "-c", "from ppdpp.planner.cli import main; main()", "serve-llm",
               "--model", "local/smollm2", "--host", "0.0.0.0", "--port", "0", "--limit-n", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while not any("OpenAI-compatible" in line for line in output) and time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if select.select([process.stdout], [], [], 1)[0]:
                output.append(process.stdout.readline())
        printed = "".join(output)
        port = re.search(r"http://0\.0\.0\.0:(\d+)/v1", printed)
        assert port, f"the server did not start:\n{printed}"
        assert "warning" in printed and "0.0.0.0" in printed and "bearer token required" in printed, printed
        url = f"http://127.0.0.1:{port.group(1)}/v1"
        assert httpx.post(f"{url}/chat/completions", json={"messages": HELLO}, timeout=60).status_code == 401
        over = post(url, LLM_TOKEN, {"messages": HELLO, "n": 3})
        assert over.status_code == 400 and over.json()["error"]["param"] == "n", over.text
        assert post(url, LLM_TOKEN, {"messages": HELLO, "max_tokens": 2}).status_code == 200
    finally:
        process.terminate()
        rest, _ = process.communicate(timeout=60)
    assert LLM_TOKEN not in "".join(output) + rest, "the token must never be printed"
