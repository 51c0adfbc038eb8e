"""The planning proxy over real HTTP: the openai SDK -> ppdpp serve -> the serve-llm server running SmolLM2.

Everything listens on 127.0.0.1 on free ports. The upstream serves SmolLM2-135M through a wrapper that
records every message list it receives, so the tests check what the upstream really got. The planner is a
PolicyPlanner on the real all-MiniLM-L6-v2 (fresh head, seeded), saved to a directory as ``ppdpp serve`` reads
it. Most tests use the proxy app in a background thread (so a test can register a hook plugin in-process);
``test_the_ppdpp_serve_command`` runs the real CLI as a subprocess. The in-thread proxy's upstream client is
wrapped in :class:`WordStream`, which gives it the ``stream`` method of a streaming backend, so that the
piece-by-piece path of streaming is exercised (the CLI's upstream client has none and streams one piece).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import torch
from openai import OpenAI

from ppdpp.planner import hookimpl
from ppdpp.planner.serving.agent import PlannedAgent
from ppdpp.planner.llm import ChatBackend, open_chat
from ppdpp.planner.serving.llm_server import serve_llm_in_thread
from ppdpp.planner.registry.manager import get_domain, register_plugin, unregister_plugin
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.serving.proxy import BackgroundServer, create_app
from ppdpp.planner.serving.dialogue_log import JsonlDialogueLog
from ppdpp.plugins.runtime_defaults import strip_role_prefix

from helpers import RecordingBackend, scrape

REPO = Path(__file__).resolve().parents[1]
TOKEN = "test-token-5f1c2a"
MESSAGES = [
    {"role": "system", "content": "You are a kind listener."},
    {"role": "user", "content": "I failed my exam and my parents are angry."},
]


class WordStream(ChatBackend):
    """The real upstream, plus the ``stream`` method of a streaming backend: its reply handed out word by word."""

    def __init__(self, inner: ChatBackend) -> None:
        self.inner, self.model = inner, inner.model

    async def complete(self, messages, **options):
        return await self.inner.complete(messages, **options)

    async def stream(self, messages, **options):
        for word in re.findall(r"\S+\s*", (await self.inner.complete(messages, **options)).text):
            yield word


@pytest.fixture(scope="module")
def esc():
    return get_domain("emotional_support")


@pytest.fixture(scope="module")
def planner_dir(esc, tmp_path_factory):
    torch.manual_seed(0)
    return PolicyPlanner(esc, PlannerConfig(max_length=96)).save_pretrained(tmp_path_factory.mktemp("p") / "planner")


@pytest.fixture(scope="module")
def upstream_backend(smollm2_gguf):
    backend = RecordingBackend(open_chat("local/smollm2", cache=False))
    asyncio.run(backend.inner.load())  # before any request: converting the GGUF file takes a while
    yield backend
    asyncio.run(backend.inner.aclose())


@pytest.fixture(scope="module")
def upstream(upstream_backend):
    """The serve-llm server; ``upstream.restart()`` brings it back on the same port after ``stop()``."""

    class Upstream:
        def __init__(self) -> None:
            self.server = serve_llm_in_thread(upstream_backend)
            self.port, self.url = self.server.port, self.server.url
            self.running = True

        def stop(self) -> None:
            self.server.stop()
            self.running = False

        def restart(self) -> None:
            self.server = serve_llm_in_thread(upstream_backend, port=self.port)
            self.running = True

    up = Upstream()
    yield up
    if up.running:
        up.stop()


@pytest.fixture(scope="module")
def proxy(esc, planner_dir, upstream):
    """The proxy app in a background thread, in front of the upstream, with a bearer token."""
    agent = PlannedAgent.from_pretrained(planner_dir, "openai/smollm2", api_base=upstream.url, api_key="unused",
                                         max_retries=0, timeout=300, cache=False, max_tokens=12)
    agent.llm = WordStream(agent.llm)
    with BackgroundServer(create_app(agent, token=TOKEN, upstream_timeout=300)) as server:
        yield server


@pytest.fixture
def client(proxy):
    return OpenAI(base_url=f"{proxy.url}/v1", api_key=TOKEN, max_retries=0, timeout=300)


@pytest.fixture
def received(upstream_backend):
    """What the upstream receives during one test."""
    upstream_backend.received.clear()
    return upstream_backend.received


def raw(proxy, method: str, path: str, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKEN}", **kwargs.pop("headers", {})}
    return httpx.request(method, f"{proxy.url}{path}", headers=headers, timeout=60, **kwargs)


def assert_openai_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert error["message"] and error["type"], error
    if param is not None:
        assert error["param"] == param, error
    return error


# ---- planned replies ----------------------------------------------------------------------------------------
def test_a_chat_completion_through_the_openai_sdk_is_planned(client, esc, received):
    raw_response = client.chat.completions.with_raw_response.create(model="local/smollm2", messages=MESSAGES)
    response = raw_response.parse()
    plan = response.model_extra["ppdpp"]
    assert plan["domain"] == "emotional_support" and plan["strategy"] in esc.strategy_names, plan
    assert raw_response.headers["X-PPDPP-Strategy"] == plan["strategy"], raw_response.headers
    assert float(raw_response.headers["X-PPDPP-Probability"]) == pytest.approx(plan["probability"], abs=1e-5)
    assert plan["probability"] == pytest.approx(max(plan["distribution"].values()))
    assert response.choices[0].message.content.strip(), "the upstream's reply is passed on"
    assert response.object == "chat.completion" and response.usage.completion_tokens > 0, response
    assert len(received) == 1, received
    system = received[0][0]["content"]
    assert system == f"You are a kind listener.\n\nFor your next reply: {esc.instruction(plan['strategy'])}"
    assert received[0][-1]["content"].startswith("I failed my exam and my parents are angry.")


def test_an_echoed_strategy_on_an_assistant_message_is_read_and_not_sent_upstream(proxy, received):
    messages = [*MESSAGES, {"role": "assistant", "content": "That sounds hard.", "strategy": "Question"},
                {"role": "user", "content": "They will not talk to me."}]
    response = raw(proxy, "POST", "/v1/chat/completions", json={"messages": messages})
    assert response.status_code == 200, response.text
    assert len(received) == 1 and all("strategy" not in m for m in received[0]), received
    assert any(m["role"] == "assistant" and m["content"] == "That sounds hard." for m in received[0]), received


def test_a_case_in_the_request_switches_to_the_domains_prompt(client, esc, data_dir, received):
    case = esc.load_cases("test", data_dir)[0]
    history = [{"role": "assistant" if t.speaker == "agent" else "user", "content": t.text}
               for t in case.dialogue[:3]]
    response = client.chat.completions.create(
        model="x", messages=[{"role": "system", "content": "Answer in English."}, *history],
        extra_body={"ppdpp": {"case": {"id": case.id, "fields": case.fields}, "dialogue_id": "d-7"}})
    strategy = response.model_extra["ppdpp"]["strategy"]
    expected = esc.agent_messages(case, list(case.dialogue[:3]), strategy, reminder=True)
    expected[0] = {"role": "system", "content": f"Answer in English.\n\n{expected[0]['content']}"}
    assert received == [expected], received


def test_streaming_passes_the_upstream_pieces_on_as_sse_chunks(client, esc):
    chunks = list(client.chat.completions.create(model="local/smollm2", messages=MESSAGES, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].model_extra["ppdpp"]["strategy"] in esc.strategy_names, chunks[0]
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1, f"one chunk per upstream piece expected: {chunks}"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1, finishes
    assert chunks[-1].usage is not None and not chunks[-1].choices, "include_usage: a last chunk with usage"
    whole = client.chat.completions.create(model="local/smollm2", messages=MESSAGES).choices[0].message.content
    streamed = strip_role_prefix("".join(pieces), "Therapist")  # after_response cannot edit what was streamed
    assert streamed == whole, "greedy: the streamed and the whole reply agree"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1, finishes
    assert chunks[-1].usage is not None and not chunks[-1].choices, "include_usage: a last chunk with usage"


def test_models_lists_the_proxied_model(client):
    assert [m.id for m in client.models.list().data] == ["openai/smollm2"]


# ---- refusing requests ----------------------------------------------------------------------------------------
def test_the_token_is_required(proxy):
    anonymous = OpenAI(base_url=f"{proxy.url}/v1", api_key="wrong-token", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        anonymous.chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.status_code == 401
    no_header = httpx.post(f"{proxy.url}/v1/chat/completions", json={"messages": MESSAGES}, timeout=30)
    error = assert_openai_error(no_header, 401)
    assert error["code"] == "invalid_api_key" and TOKEN not in no_header.text
    assert httpx.get(f"{proxy.url}/health", timeout=30).json()["status"] == "ok", "health needs no token"


@pytest.mark.parametrize("body, param", [
    (b"{not json", None),
    (b"[1, 2]", None),
    (b"{}", "messages"),
    (json.dumps({"messages": []}).encode(), "messages"),
    (json.dumps({"messages": [{"role": "tool", "content": "x"}]}).encode(), "messages"),
    (json.dumps({"messages": [*MESSAGES, {"role": "assistant", "content": "x", "strategy": 3}]}).encode(),
     "messages"),
    (json.dumps({"messages": MESSAGES, "tools": [{"type": "function"}]}).encode(), "tools"),
    (json.dumps({"messages": MESSAGES, "temperature": 7}).encode(), "temperature"),
    (json.dumps({"messages": MESSAGES, "n": 2, "stream": True}).encode(), "n"),
    (json.dumps({"messages": MESSAGES, "ppdpp": {"case": {"fields": {"emotion_type": "anxiety"}}}}).encode(),
     "ppdpp.case"),
])
def test_malformed_requests_get_openai_style_400s(proxy, body, param, received):
    response = raw(proxy, "POST", "/v1/chat/completions", content=body,
                   headers={"Content-Type": "application/json"})
    assert_openai_error(response, 400, param)
    assert received == [], "a refused request never reaches the upstream"


def test_unknown_routes_and_methods(proxy):
    assert_openai_error(raw(proxy, "GET", "/v1/nothing-here"), 404)
    error = raw(proxy, "GET", "/v1/chat/completions")
    assert_openai_error(error, 405)
    assert "POST" in error.headers["Allow"]


def test_a_failing_upstream_gives_502_and_the_next_request_succeeds(client, upstream):
    upstream.stop()
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="m", messages=MESSAGES)
        assert caught.value.status_code == 502, caught.value
        assert "openai/smollm2" in caught.value.message and "failed" in caught.value.message, caught.value.message
    finally:
        upstream.restart()
    response = client.chat.completions.create(model="m", messages=MESSAGES)
    assert response.choices[0].message.content.strip() and response.model_extra["ppdpp"]["strategy"]


# ---- hooks ----------------------------------------------------------------------------------------------------
def test_a_hook_plugin_changes_the_prompt_the_upstream_receives(client, received):
    class PirateVoice:
        @hookimpl
        def strategy_prompt(self, conversation, plan, system_prompt):
            return [{"role": "system", "content": f"{system_prompt} Talk like a pirate. [{plan.strategy}]"},
                    *({"role": "assistant" if t.speaker == "agent" else "user", "content": t.text}
                      for t in conversation)]

    register_plugin(PirateVoice(), name="pirate-voice")
    try:
        response = client.chat.completions.create(model="m", messages=MESSAGES)
    finally:
        unregister_plugin("pirate-voice")
    strategy = response.model_extra["ppdpp"]["strategy"]
    assert received == [[
        {"role": "system", "content": f"You are a kind listener. Talk like a pirate. [{strategy}]"},
        {"role": "user", "content": "I failed my exam and my parents are angry."},
    ]], received


def test_dialogue_end_reaches_the_tracking_hooks(client, tmp_path):
    log = JsonlDialogueLog(tmp_path / "ended.jsonl")
    register_plugin(log, name="ended-log")
    try:
        answer = client.post("/ppdpp/dialogue_end", cast_to=object, body={
            "messages": [*MESSAGES, {"role": "assistant", "content": "I'm sorry."}],
            "outcome": {"success": True, "rating": 5}, "dialogue_id": "d-42"})
    finally:
        unregister_plugin("ended-log")
    assert answer == {"ok": True}
    (row,) = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert row["outcome"] == {"success": True, "rating": 5}, row
    assert row["context"] == {"source": "proxy", "dialogue_id": "d-42"}, row
    assert [t["speaker"] for t in row["conversation"]] == ["user", "agent"], row


# ---- the CLI ----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_ppdpp_serve_command(planner_dir, upstream, esc):
    env = {**os.environ, "PPDPP_PROXY_TOKEN": TOKEN, "UPSTREAM_KEY": "unused", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-c", "from ppdpp.planner.cli import main; main()", "serve",
               "--planner", str(planner_dir),
               "--upstream", "openai/smollm2", "--api-base", upstream.url, "--upstream-key-env", "UPSTREAM_KEY",
               "--port", "0", "--upstream-retries", "0",
               "--max-tokens", "8", "--threads", "1", "--log-format", "json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line, output = "", []
        deadline = time.monotonic() + 240
        while "ppdpp serve:" not in line and time.monotonic() < deadline and process.poll() is None:
            if select.select([process.stdout], [], [], 1)[0]:
                line = process.stdout.readline()
                output.append(line)
        assert "ppdpp serve:" in line, f"the server did not start:\n{''.join(output)}"
        assert "bearer token required" in line and TOKEN not in line, line
        base_url = line.split(" at ")[1].split()[0]
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1"), line
        client = OpenAI(base_url=base_url, api_key=TOKEN, max_retries=0, timeout=300)
        response = client.chat.completions.create(model="m", messages=MESSAGES)
        assert response.model_extra["ppdpp"]["strategy"] in esc.strategy_names, response
        with pytest.raises(openai.AuthenticationError):
            OpenAI(base_url=base_url, api_key="nope", max_retries=0).models.list()
        chatbot = subprocess.run(  # the example chatbot: an ordinary SDK loop, only its base URL points here
            [sys.executable, str(REPO / "examples" / "openai_chatbot.py"), "--base-url", base_url,
             "--say", "I lost my job today.", "--max-tokens", "8"], capture_output=True, text=True, env=env,
            timeout=300)
        assert chatbot.returncode == 0, chatbot.stderr
        (line,) = chatbot.stdout.splitlines()
        strategy = re.search(r"^bot> .+ \[(.+) \(p=\d\.\d\d\)\]$", line)
        assert strategy and strategy.group(1) in esc.strategy_names, line
    finally:
        process.terminate()
        rest, _ = process.communicate(timeout=60)
    assert TOKEN not in "".join(output) + rest, "the token must never be logged"
    logged = [json.loads(line) for line in (''.join(output) + rest).splitlines() if line.startswith("{")]
    planned = [entry for entry in logged if entry["logger"] == "ppdpp.proxy" and entry["message"].startswith("planned")]
    assert planned and {"time", "level"} <= planned[0].keys(), f"--log-format json: no JSON log line in {logged}"


# ---- metrics ------------------------------------------------------------------------------------------------
def test_metrics_of_both_servers_move_with_real_requests(client, proxy, upstream, esc):
    proxy_before = scrape(proxy.url, TOKEN)
    upstream_root = upstream.url.removesuffix("/v1")
    upstream_before = scrape(upstream_root)
    response = client.chat.completions.create(model="m", messages=MESSAGES)
    strategy = response.model_extra["ppdpp"]["strategy"]
    assert_openai_error(raw(proxy, "POST", "/v1/chat/completions", content=b"["), 400)
    raw(proxy, "GET", "/no/such/route/42")
    after, upstream_after = scrape(proxy.url, TOKEN), scrape(upstream_root)

    def moved(name: str, before=proxy_before, now=after, **labels: str) -> float:
        return now(name, **labels) - before(name, **labels)

    chat = {"server": "serve", "route": "/v1/chat/completions", "method": "POST"}
    assert moved("ppdpp_http_requests_total", **chat, status="200") == 1
    assert moved("ppdpp_http_requests_total", **chat, status="400") == 1
    assert moved("ppdpp_http_requests_total", route="unmatched", status="404") == 1, "raw paths never become labels"
    assert moved("ppdpp_http_request_duration_seconds_count", route="/v1/chat/completions") == 2
    assert moved("ppdpp_planner_decisions_total", strategy=strategy) == 1
    assert moved("ppdpp_planner_decisions_total") == 1
    assert moved("ppdpp_planning_duration_seconds_count") == 1 and moved("ppdpp_upstream_duration_seconds_count") == 1
    assert moved("ppdpp_prompt_tokens_total") == response.usage.prompt_tokens > 0
    assert moved("ppdpp_completion_tokens_total") == response.usage.completion_tokens > 0
    upstream_chat = {"server": "serve-llm", "route": "/v1/chat/completions", "status": "200"}
    assert moved("ppdpp_http_requests_total", upstream_before, upstream_after, **upstream_chat) == 1
    assert moved("ppdpp_prompt_tokens_total", upstream_before, upstream_after) == response.usage.prompt_tokens
    assert httpx.get(f"{proxy.url}/metrics", timeout=60).status_code == 401, "/metrics is behind the token"
