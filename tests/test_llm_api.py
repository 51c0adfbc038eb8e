"""The litellm API backend over real HTTP: against `serve-llm` serving the real SmolLM2, and against small
aiohttp servers started here that fail on purpose (rate limits, server errors, a hang) to exercise retries."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web

from ppdpp.planner.llm import LLMError, open_chat
from ppdpp.planner.llm.api import APIBackend
from ppdpp.planner.llm.local import LocalBackend
from ppdpp.planner.serving.llm_server import serve_llm_in_thread
from helpers import scripted_server

HELLO = [{"role": "user", "content": "Say hello."}]
SECRET = "sk-test-DO-NOT-LEAK-4242"


@pytest.fixture(scope="module")
def served(smollm2_gguf):
    """SmolLM2 behind the OpenAI-compatible server, on a free port of 127.0.0.1."""
    backend = LocalBackend("local/smollm2")
    server = serve_llm_in_thread(backend)
    yield backend, server
    server.stop()
    asyncio.run(backend.aclose())


def api(url: str, **options) -> APIBackend:
    backend = open_chat("openai/smollm2", cache=False, api_base=url, api_key="sk-dummy", **options)
    assert isinstance(backend, APIBackend)
    return backend


def test_litellm_talks_to_the_served_local_model(served):
    local, server = served
    remote = api(server.url)
    got = remote.complete_sync(HELLO, max_tokens=8)
    want = local.complete_sync(HELLO, max_tokens=8)
    assert got.texts == want.texts, f"over HTTP {got.texts} != direct {want.texts}"
    assert (got.usage.prompt_tokens, got.usage.completion_tokens) == (
        want.usage.prompt_tokens, want.usage.completion_tokens)
    assert got.usage.cost is None, "no price is known for a self-hosted model"
    assert got.model == "openai/smollm2"


@pytest.mark.slow  # generates with the real model several times: kept out of the fast tier
def test_finish_reason_says_whether_the_reply_was_cut_at_max_tokens(served):
    local, server = served
    remote = api(server.url)
    story = [{"role": "user", "content": "Write a long story about a dragon."}]
    for messages, max_tokens, expected in ((story, 3, "length"), (HELLO, 64, "stop")):
        direct = local.complete_sync(messages, max_tokens=max_tokens)
        over_http = remote.complete_sync(messages, max_tokens=max_tokens)
        assert direct.finish_reasons == [expected], (direct.texts, direct.finish_reasons)
        assert over_http.finish_reasons == [expected], "serve-llm must pass the reason on"


def test_n_samples_in_one_request_match_the_local_backend(served):
    local, server = served
    remote = api(server.url)
    got = remote.complete_sync(HELLO, n=3, temperature=1.0, seed=21, max_tokens=6)
    assert remote._n_in_one_request, "litellm should send n in one request to an OpenAI-compatible server"
    want = local.complete_sync(HELLO, n=3, temperature=1.0, seed=21, max_tokens=6)
    assert len(got.texts) == 3 and got.texts == want.texts, (got.texts, want.texts)


def test_server_models_and_openai_style_errors(served):
    _, server = served

    async def probe():
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/models") as response:
                models = await response.json()
            bad = {}
            for name, body in {
                "no messages": {"model": "x"},
                "n=0": {"messages": HELLO, "n": 0},
                "n over the limit": {"messages": HELLO, "n": 17},
                "max_tokens=0": {"messages": HELLO, "max_tokens": 0},
                "bad stop": {"messages": HELLO, "stop": [1, 2]},
                "bad role": {"messages": [{"role": "wizard", "content": "hi"}]},
            }.items():
                async with session.post(f"{server.url}/chat/completions", json=body) as response:
                    bad[name] = (response.status, await response.json())
            async with session.post(f"{server.url}/chat/completions", data=b"{not json") as response:
                bad["not json"] = (response.status, await response.json())
            return models, bad

    models, bad = asyncio.run(probe())
    assert [m["id"] for m in models["data"]] == ["local/smollm2"], models
    for name, (status, body) in bad.items():
        assert status == 400, f"{name}: status {status}"
        assert body["error"]["type"] == "invalid_request_error" and body["error"]["message"], f"{name}: {body}"
    assert bad["n=0"][1]["error"]["param"] == "n"
    assert bad["n over the limit"][1]["error"]["param"] == "n"
    assert bad["max_tokens=0"][1]["error"]["param"] == "max_tokens"


# ---- retries, against servers that fail on purpose ----------------------------------------------------------
def ok_body(text: str = "fine", n: int = 1) -> dict:
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
        "choices": [{"index": i, "message": {"role": "assistant", "content": f"{text} {i}"}, "finish_reason": "stop"}
                    for i in range(n)],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500},
    }


def fail(status: int, message: str = "try later") -> web.Response:
    return web.json_response({"error": {"message": message, "type": "server_error"}}, status=status)


@pytest.mark.slow  # a subprocess or real back-off waits: kept out of the fast tier
def test_retries_rate_limit_server_error_and_timeout_then_succeeds():
    script = ["ok", 429, 500, "hang", "ok"]  # the first call warms litellm up (its first call is slow)
    released = asyncio.Event()

    async def handle(i, body, request):
        if script[i] == "hang":
            await released.wait()  # until the test ends: past the backend's timeout however loaded the machine
        if isinstance(script[i], int):
            return fail(script[i])
        return web.json_response(ok_body(f"answer {i}"))

    async def run():
        async with scripted_server(handle) as (url, seen):
            backend = api(url, timeout=2.0, max_retries=3, backoff_s=0.01)
            await backend.complete(HELLO, max_tokens=4)
            completion = await backend.complete(HELLO, max_tokens=4)
            released.set()
            return completion, len(seen)

    completion, requests = asyncio.run(run())
    assert completion.texts == ["answer 4 0"], completion.texts
    assert requests == 5, f"expected warm-up + 429, 500, timeout, success = 5 requests; the server saw {requests}"


def test_a_server_that_always_fails_gives_a_clear_error_without_the_key():
    async def handle(i, body, request):
        return fail(503, f"overloaded; you sent {request.headers.get('Authorization')}")

    async def run():
        async with scripted_server(handle) as (url, seen):
            backend = open_chat("openai/my-model", cache=False, api_base=url, api_key=SECRET, max_retries=2,
                                backoff_s=0.01)
            with pytest.raises(LLMError) as caught:
                await backend.complete(HELLO)
            return str(caught.value), repr(backend), len(seen)

    message, representation, requests = asyncio.run(run())
    assert requests == 3, f"max_retries=2 means 3 attempts in all; the server saw {requests} (hidden retries?)"
    assert "openai/my-model" in message and "3 attempts" in message and "503" in message, message
    assert SECRET not in message and SECRET not in representation, "the API key leaked"


def test_bad_requests_are_not_retried():
    async def handle(i, body, request):
        return fail(400, "bad request")

    async def run():
        async with scripted_server(handle) as (url, seen):
            with pytest.raises(LLMError, match="not retryable"):
                await api(url, backoff_s=0.01).complete(HELLO)
            return len(seen)

    assert asyncio.run(run()) == 1


def test_n_as_separate_requests_and_known_prices():
    async def handle(i, body, request):
        return web.json_response(ok_body(f"seed {body.get('seed')}", body.get("n", 1)))

    async def run():
        async with scripted_server(handle) as (url, seen):
            backend = open_chat("openai/gpt-4o-mini", cache=False, api_base=url, api_key="sk-dummy",
                                n_in_one_request=False)
            completion = await backend.complete(HELLO, n=3, temperature=1.0, seed=7)
            return completion, seen

    completion, seen = asyncio.run(run())
    assert len(seen) == 3 and all("n" not in body for body in seen), json.dumps(seen)[:300]
    assert sorted(completion.texts) == ["seed 7 0", "seed 8 0", "seed 9 0"], completion.texts
    assert completion.usage.prompt_tokens == 3000 and completion.usage.completion_tokens == 1500
    assert completion.usage.cost is not None and completion.usage.cost > 0, "gpt-4o-mini has a known price"
