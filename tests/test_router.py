"""``router/<model_name>``: many deployments of one model behind litellm's Router (planner/llm/router.py).

The config checks run on files written here; the backend runs against real HTTP servers on 127.0.0.1 (stub
providers at the HTTP boundary for the quick tests; two real ``ppdpp serve-llm --model local/smollm2``
subprocesses, one SIGKILLed mid-evaluation, for the slow one).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from helpers import chat_reply, scripted_server
from ppdpp.planner.cli import main
from ppdpp.planner.llm import LLMError, open_chat
from ppdpp.planner.llm.router import RouterBackend, RouterConfigError, load_router_config, masked
from ppdpp.simulators.runner import load_transcripts
from test_upstream_faults import ServeLLM, free_port

SECRET = "sk-router-DO-NOT-LEAK-4242"
LOGGER = "ppdpp.llm.router"
HI = [{"role": "user", "content": "hi"}]


def deployment(url: str, **params: Any) -> dict[str, Any]:
    return {"model_name": "smol", "litellm_params": {"model": "openai/smollm2", "api_base": url, "api_key": SECRET,
                                                     **params}}


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data) if path.suffix == ".json" else yaml.safe_dump(data), encoding="utf-8")
    return path


# ---- the config file is checked before any call -------------------------------------------------------------
GOOD = deployment("http://127.0.0.1:9/v1")
BAD_CONFIGS = {
    "unknown top-level key": ({"model_list": [GOOD], "router_setings": {}}, "unknown key 'router_setings'"),
    "proxy section": ({"model_list": [GOOD], "general_settings": {}}, "'general_settings' is a litellm proxy"),
    "no model_list": ({"router_settings": {}}, "model_list: expected a non-empty list of deployments, got nothing"),
    "no model_name": ({"model_list": [GOOD, {"litellm_params": {"model": "openai/x"}}]},
                      'model_list[1]: missing "model_name"'),
    "no litellm_params.model": ({"model_list": [GOOD, {"model_name": "smol", "litellm_params": {"api_base": "x"}}]},
                                'model_list[1].litellm_params: missing "model"'),
    "unknown provider": ({"model_list": [{"model_name": "smol", "litellm_params": {"model": "banana"}}]},
                         "model_list[0].litellm_params.model: unknown model 'banana'"),
    "rpm not a number": ({"model_list": [deployment("http://127.0.0.1:9/v1", rpm="lots")]},
                         "model_list[0].litellm_params.rpm: Input should be a valid integer"),
    "unknown router setting": ({"model_list": [GOOD], "router_settings": {"num_retires": 3}},
                               "router_settings: unknown key 'num_retires'"),
    "setting of the wrong type": ({"model_list": [GOOD], "router_settings": {"num_retries": "3"}},
                                  "router_settings.num_retries: Input should be a valid integer (got '3')"),
    "unknown routing strategy": ({"model_list": [GOOD], "router_settings": {"routing_strategy": "fastest"}},
                                 "router_settings.routing_strategy: Input should be 'simple-shuffle'"),
    "fallback to an unknown group": ({"model_list": [GOOD], "router_settings": {"fallbacks": [{"smol": ["big"]}]}},
                                     "router_settings.fallbacks[0]: unknown model_name 'big'"),
}


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_a_bad_config_is_an_error_naming_the_file_and_the_field(tmp_path, case, suffix):
    data, expected = BAD_CONFIGS[case]
    path = write(tmp_path / f"router{suffix}", data)
    with pytest.raises(RouterConfigError) as caught:
        load_router_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and expected in message, message
    assert SECRET not in message and "\n" not in message


def test_a_good_config_loads_and_shows_no_key(tmp_path):
    path = write(tmp_path / "router.yaml", {
        "model_list": [GOOD, deployment("http://127.0.0.1:10/v1", rpm=600, tpm=100_000)],
        "router_settings": {"routing_strategy": "usage-based-routing-v2", "num_retries": 2, "allowed_fails": 1,
                            "cooldown_time": 30, "fallbacks": [{"smol": ["smol"]}]}})
    config = load_router_config(path)
    assert config.groups() == {"smol"} and len(config.deployments("smol")) == 2
    assert SECRET not in repr(config) and config.secrets() == [SECRET, SECRET]
    assert masked({"api_key": SECRET, "inner": [{"aws_secret_access_key": SECRET, "rpm": 1}]}) == \
        {"api_key": "***", "inner": [{"aws_secret_access_key": "***", "rpm": 1}]}
    backend = open_chat("router/smol", router_config=path, cache=False)
    assert SECRET not in repr(backend) and "2 deployments" in repr(backend)
    with pytest.raises(RouterConfigError, match=r"router.yaml: no model_name 'big' in model_list \(it has smol\)"):
        open_chat("router/big", router_config=path)
    with pytest.raises(RouterConfigError, match="router/smol: a router/ model needs a Router config"):
        open_chat("router/smol")


def test_building_the_router_leaves_an_unpriced_model_unpriced(tmp_path):
    """litellm's Router registers each deployment's model in litellm's process-wide price map with no price; that
    made every later call to the model in the process (through the Router or not) cost $0 instead of unknown
    (planner/llm/api.py reads such an entry as no price)."""
    from ppdpp.planner.llm.spend import known_price

    model = "openai/ppdpp-test-unpriced"
    assert known_price(model) is None
    path = write(tmp_path / "router.yaml", {"model_list": [
        {"model_name": "x", "litellm_params": {"model": model, "api_base": "http://127.0.0.1:9/v1", "api_key": SECRET}}]})
    load_router_config(path).router()
    assert known_price(model) is None, "building a Router priced a self-hosted model at $0"


def test_evaluate_with_a_bad_router_config_exits_2_naming_the_field(tmp_path, capsys):
    path = write(tmp_path / "router.yaml", {"model_list": [GOOD, {"model_name": "smol", "litellm_params": {}}]})
    with pytest.raises(SystemExit) as exited:
        main(["evaluate", "-d", "negotiation", "--agent", "router/smol", "--user", "rule-based", "--critic",
              "oracle", "--router-config", str(path), "--cases", "1", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert exited.value.code == 2, out
    assert f'error: {path}: model_list[1].litellm_params: missing "model"' in " ".join(out.split()), out


# ---- the backend over real HTTP: spread, failover, cache, no key in errors ----------------------------------
def test_requests_spread_over_deployments_and_survive_one_going_down(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there

    async def run() -> tuple[RouterBackend, list[str], list, list]:
        async def handle(i: int, body: dict, request: web.Request) -> web.Response:
            assert request.headers["Authorization"] == f"Bearer {SECRET}"
            return chat_reply(body, f"reply {i}")

        async with scripted_server(handle) as (one, seen_one), scripted_server(handle) as (two, seen_two):
            path = write(tmp_path / "router.yaml", {
                "model_list": [deployment(one), deployment(two), deployment(dead)],
                "router_settings": {"routing_strategy": "usage-based-routing-v2", "num_retries": 3,
                                    "allowed_fails": 0, "cooldown_time": 60}})
            backend = open_chat("router/smol", router_config=path, cache=False)
            texts = [(await backend.complete(HI, max_tokens=4)).text for _ in range(8)]
            await backend.aclose()
            return backend, texts, seen_one, seen_two

    backend, texts, seen_one, seen_two = asyncio.run(run())
    assert len(texts) == 8 and all(t.startswith("reply ") for t in texts)
    assert seen_one and seen_two, "both live deployments served"
    assert len(seen_one) + len(seen_two) == 8 and all(b["max_tokens"] == 4 for b in seen_one + seen_two)
    assert sum(backend.served.values()) == 8 and dead not in backend.served
    served_lines = [r.getMessage() for r in caplog.records if r.name == LOGGER and "served by" in r.getMessage()]
    assert len(served_lines) == 8
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_an_unanswered_request_is_one_llm_error_without_the_key(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)

    async def run() -> str:
        async def handle(i: int, body: dict, request: web.Request) -> web.Response:
            message = f"bad key {request.headers.get('Authorization')}"
            return web.json_response({"error": {"message": message, "type": "invalid_request_error"}}, status=401)

        async with scripted_server(handle) as (url, _):
            path = write(tmp_path / "router.yaml", {"model_list": [deployment(url)],
                                                    "router_settings": {"num_retries": 1}})
            backend = open_chat("router/smol", router_config=path, cache=False)
            with pytest.raises(LLMError) as caught:
                await backend.complete(HI)
            return str(caught.value)

    message = asyncio.run(run())
    assert message.startswith("router/smol: no deployment of ") and "401" in message, message
    assert SECRET not in message
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_the_response_cache_and_usage_work_as_for_api_models(tmp_path):
    async def run() -> tuple[list, list]:
        async def handle(i: int, body: dict, request: web.Request) -> web.Response:
            return chat_reply(body, "cached reply")

        async with scripted_server(handle) as (url, seen):
            path = write(tmp_path / "router.yaml", {"model_list": [deployment(url)]})
            backend = open_chat("router/smol", router_config=path, cache_dir=tmp_path / "cache")
            first = await backend.complete(HI)
            again = await backend.complete(HI)
            return [first, again], seen

    (first, again), seen = asyncio.run(run())
    assert len(seen) == 1 and first.text == again.text == "cached reply"
    assert (first.usage.prompt_tokens, first.usage.completion_tokens, first.usage.cached) == (10, 5, False)
    assert again.usage.cached and first.model == "router/smol"


# ---- two real serve-llm replicas behind a Router config serve `ppdpp evaluate`; one is killed ----------------
CASES = 3


@pytest.mark.slow  # two SmolLM2 servers in subprocesses, an evaluation over them
def test_evaluate_over_two_replicas_finishes_when_one_is_killed(smollm2_gguf, data_dir, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    replicas = [ServeLLM(free_port(), tmp_path / name) for name in ("a", "b")]
    for replica in replicas:
        replica.logs.mkdir()
    config = write(tmp_path / "router.yaml", {
        "model_list": [deployment(r.url, rpm=10_000, tpm=10_000_000) for r in replicas],
        # usage-based routing sends a request to the less used replica, so both serve from the start
        "router_settings": {"routing_strategy": "usage-based-routing-v2", "num_retries": 3, "allowed_fails": 0,
                            "cooldown_time": 300, "timeout": 120}})
    out = tmp_path / "eval"
    transcript = out / "transcripts" / "no-planner.jsonl"
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(ServeLLM.start, replicas))

    def served() -> dict[str, int]:
        counts = {r.url: 0 for r in replicas}
        for record in caplog.records:
            if record.name == LOGGER and "served by " in record.getMessage():
                counts[record.getMessage().rsplit("served by ", 1)[1]] += 1
        return counts

    exit_code: list[Any] = []

    def evaluate() -> None:
        try:
            main(["evaluate", "-d", "negotiation", "--agent", "router/smol", "--user", "rule-based", "--critic",
                  "oracle", "--router-config", str(config), "--baselines", "no-planner", "--cases", str(CASES),
                  "--max-turns", "2", "--max-tokens", "8", "--concurrency", "1", "--out", str(out),
                  "--data-dir", str(data_dir)])
        except SystemExit as exc:
            exit_code.append(exc.code)

    worker = threading.Thread(target=evaluate)
    try:
        worker.start()
        done = 0
        while worker.is_alive():  # kill replica b once a dialogue is finished and both replicas have served
            done = transcript.read_text().count("\n") if transcript.exists() else 0
            if done and min(served().values()) > 0:
                break
            time.sleep(0.1)
        before_kill = served()
        replicas[1].kill()
        worker.join(timeout=600)
    finally:
        for replica in replicas:
            replica.kill()
    assert exit_code == [0], exit_code
    assert 0 < done < CASES, f"not killed mid-evaluation: {done} of {CASES} dialogues done"
    assert min(before_kill.values()) > 0, f"requests did not spread over both replicas: {before_kill}"
    after = served()
    assert after[replicas[0].url] > before_kill[replicas[0].url], (before_kill, after)
    report = json.loads((out / "report.json").read_text())
    played = [row["case_id"] for row in load_transcripts(transcript)]
    assert len(played) == CASES and sorted(played) == sorted(set(played)), f"each case once: {played}"
    assert json.dumps(report).count('"no-planner"') >= 1
    assert all(SECRET not in r.getMessage() for r in caplog.records)
