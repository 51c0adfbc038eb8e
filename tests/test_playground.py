"""The playground's JSON routes over real HTTP (``ppdpp ui``; the page itself: test_playground_browser.py).

The app runs in a background thread on 127.0.0.1 with a real PolicyPlanner (the real all-MiniLM-L6-v2, a fresh
seeded head) and "no planner", both in front of SmolLM2-135M; the transcripts are a real evaluation's output
(``ppdpp evaluate`` with the template agent, the rule-based seller and the oracle critic: no LLM, seconds).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import torch
from typer.testing import CliRunner

from ppdpp.planner.cli import app
from ppdpp.planner.llm import open_chat
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
from ppdpp.planner.registry.manager import get_domain
from ppdpp.planner.serving.playground import NO_PLANNER, create_playground_app, playground_agents, read_episodes
from ppdpp.planner.serving.proxy import BackgroundServer

from helpers import scrape

EVALUATE = ["evaluate", "-d", "negotiation", "--agent", "template", "--user", "rule-based", "--critic", "oracle",
            "--cases", "2", "--baselines", "no-planner,random"]


def run_evaluation(out: Path) -> Path:
    """A real evaluation's output folder: transcripts/no-planner.jsonl and transcripts/random.jsonl."""
    result = CliRunner().invoke(app, [*EVALUATE, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def esc():
    return get_domain("emotional_support")


@pytest.fixture(scope="module")
def planner_dir(esc, tmp_path_factory):
    torch.manual_seed(0)
    return PolicyPlanner(esc, PlannerConfig(max_length=96)).save_pretrained(tmp_path_factory.mktemp("p") / "planner")


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    return run_evaluation(tmp_path_factory.mktemp("eval") / "out")


@pytest.fixture(scope="module")
def server(planner_dir, evaluation, smollm2_gguf):
    llm = open_chat("local/smollm2", cache=False)
    agents = playground_agents([planner_dir], llm, max_tokens=8)
    with BackgroundServer(create_playground_app(agents, transcripts=evaluation)) as running:
        yield running
    asyncio.run(llm.aclose())


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=300) as client:
        yield client


def chat(http: httpx.Client, planner: str, messages: list[dict], **extra) -> httpx.Response:
    return http.post("/api/chat", json={"planner": planner, "messages": messages, **extra})


def test_the_page_and_its_assets_are_served_with_a_strict_policy(http):
    page = http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/playground.js"' in page.text and 'id="send-button"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]  # no inline script, no CDN
    for asset, kind in (("/playground.js", "javascript"), ("/playground.css", "text/css")):
        response = http.get(asset)
        assert response.status_code == 200 and kind in response.headers["content-type"], asset
    assert "fetch(" in http.get("/playground.js").text


def test_planners_lists_each_loaded_planner_and_no_planner(http, planner_dir, esc):
    body = http.get("/api/planners").json()
    assert body["transcripts"] is True
    assert [p["id"] for p in body["planners"]] == [str(planner_dir), NO_PLANNER]
    assert [p["planned"] for p in body["planners"]] == [True, False]
    assert all(p["domain"] == "emotional_support" and p["strategies"] == esc.strategy_names for p in body["planners"])


def test_a_chat_turn_returns_the_reply_the_strategy_and_the_distribution(http, planner_dir, esc):
    first = [{"role": "user", "content": "I failed my exam and my parents are angry."}]
    response = chat(http, str(planner_dir), first, system="You are a kind listener.")
    assert response.status_code == 200, response.text
    turn = response.json()
    assert isinstance(turn["reply"], str) and turn["reply"].strip()
    assert turn["strategy"] in esc.strategy_names and turn["instruction"] == esc.instruction(turn["strategy"])
    assert list(turn["distribution"]) == esc.strategy_names
    assert sum(turn["distribution"].values()) == pytest.approx(1.0, abs=1e-4)
    assert turn["probability"] == pytest.approx(turn["distribution"][turn["strategy"]])
    assert turn["strategy"] == max(turn["distribution"], key=turn["distribution"].get)  # the planner is greedy
    follow_up = [*first, {"role": "assistant", "content": turn["reply"], "strategy": turn["strategy"]},
                 {"role": "user", "content": "I do not know what to tell them."}]
    again = chat(http, str(planner_dir), follow_up)
    assert again.status_code == 200 and again.json()["strategy"] in esc.strategy_names, again.text


def test_metrics_count_the_playgrounds_chat_turns_and_decisions(http, server, planner_dir):
    before = scrape(server.url)
    turn = chat(http, str(planner_dir), [{"role": "user", "content": "I lost my keys again."}]).json()
    after = scrape(server.url)
    chat_route = {"server": "ui", "route": "/api/chat", "status": "200"}
    assert after("ppdpp_http_requests_total", **chat_route) - before("ppdpp_http_requests_total", **chat_route) == 1
    decided = {"strategy": turn["strategy"]}
    assert after("ppdpp_planner_decisions_total", **decided) - before("ppdpp_planner_decisions_total", **decided) == 1
    assert after("ppdpp_completion_tokens_total") > before("ppdpp_completion_tokens_total")


def test_no_planner_replies_without_a_strategy(http):
    response = chat(http, NO_PLANNER, [{"role": "user", "content": "Hello there."}])
    assert response.status_code == 200, response.text
    turn = response.json()
    assert turn["strategy"] is None and turn["distribution"] == {} and turn["instruction"] == ""
    assert turn["planner"] == NO_PLANNER and turn["reply"].strip()


@pytest.mark.parametrize("body, status, words", [
    ({"planner": "nope", "messages": [{"role": "user", "content": "hi"}]}, 400, ["'nope'", "no planner"]),
    ({"planner": NO_PLANNER, "messages": []}, 400, ["messages"]),
    ({"planner": NO_PLANNER, "messages": [{"role": "tool", "content": "x"}]}, 400, ["messages[0].role"]),
    ({"planner": NO_PLANNER, "messages": [{"role": "user", "content": "x"}], "system": 3}, 400, ["system"]),
    ([1, 2], 400, ["JSON object"]),
])
def test_a_bad_chat_request_is_refused_with_the_field_named(http, body, status, words):
    response = http.post("/api/chat", json=body)
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert all(word in message for word in words), message


def test_a_chat_turn_must_be_sent_as_json(http):
    """A form post from another site (text/plain needs no CORS preflight) is refused."""
    response = http.post("/api/chat", content=json.dumps({"planner": NO_PLANNER, "messages": []}),
                         headers={"Content-Type": "text/plain"})
    assert response.status_code == 415 and "application/json" in response.json()["error"]["message"]


def test_another_host_name_is_refused_on_loopback(http):
    response = http.get("/api/planners", headers={"Host": "attacker.example"})
    assert response.status_code == 403 and "attacker.example" in response.json()["error"]["message"]
    assert http.get("/api/planners", headers={"Host": "localhost"}).status_code == 200


def test_the_transcript_folder_is_listed_with_policies_and_cases(http, evaluation):
    body = http.get("/api/transcripts").json()
    assert body["dir"] == str(evaluation / "transcripts") and body["critic_mode"] == "oracle"
    assert [(f["name"], f["policy"], f["episodes"]) for f in body["files"]] == [
        ("no-planner.jsonl", "no-planner", 2), ("random.jsonl", "random", 2)]
    cases = json.loads((evaluation / "report.json").read_text())["cases"]
    assert all(f["cases"] == sorted(cases) for f in body["files"])


def test_opening_a_file_lists_its_episodes(http, evaluation):
    body = http.get("/api/transcripts/random.jsonl").json()
    rows = [json.loads(line) for line in (evaluation / "transcripts" / "random.jsonl").read_text().splitlines()]
    assert body["policy"] == "random"
    assert body["episodes"] == [{k: r[k] for k in ("episode_id", "case_id", "policy", "success", "total_reward",
                                                   "turns")} for r in rows]


def test_a_case_is_shown_across_policies_with_rewards_and_critic_samples(http, evaluation):
    case_id = json.loads((evaluation / "report.json").read_text())["cases"][0]
    body = http.get(f"/api/cases/{case_id}").json()
    assert body["case_id"] == case_id and body["critic_mode"] == "oracle"
    assert [c["policy"] for c in body["columns"]] == ["no-planner", "random"]
    for column in body["columns"]:
        rows = read_episodes(evaluation / "transcripts" / column["name"])
        assert column["episodes"] == [r for r in rows if r["case_id"] == case_id]
        (episode,) = column["episodes"]
        assert episode["steps"] and all(step["critic_samples"] for step in episode["steps"])
        assert episode["total_reward"] == pytest.approx(sum(step["reward"] for step in episode["steps"]))
    assert http.get("/api/cases/no-such-case").status_code == 404


@pytest.mark.parametrize("name, status", [
    ("..%2Freport.json", 400), ("%2E%2E%2Fconfig.jsonl", 400), (".hidden.jsonl", 400), ("report.json", 400),
    ("missing.jsonl", 404), ("outside.jsonl", 403),
])
def test_only_transcript_files_inside_the_folder_can_be_opened(http, evaluation, tmp_path_factory, name, status):
    link = evaluation / "transcripts" / "outside.jsonl"
    if not link.is_symlink():  # a link out of the folder, to a real transcript file elsewhere
        elsewhere = tmp_path_factory.mktemp("elsewhere") / "secret.jsonl"
        elsewhere.write_text((evaluation / "transcripts" / "random.jsonl").read_text())
        link.symlink_to(elsewhere)
    response = http.get(f"/api/transcripts/{name}")
    assert response.status_code == status, response.text
    assert "outside.jsonl" not in [f["name"] for f in http.get("/api/transcripts").json()["files"]]


def test_an_unfinished_last_line_is_left_out_and_a_bad_line_is_named(tmp_path):
    out = run_evaluation(tmp_path / "out")
    path = out / "transcripts" / "random.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines) + lines[0][:40])  # an evaluation still writing its next line
    assert len(read_episodes(path)) == len(lines)
    path.write_text(lines[0] + "{not json\n" + lines[1])
    agents = playground_agents([], open_chat("local/smollm2", cache=False), domain="negotiation")
    with BackgroundServer(create_playground_app(agents, transcripts=out)) as server:
        response = httpx.get(f"{server.url}/api/transcripts/random.jsonl")
        assert response.status_code == 422 and "random.jsonl:2: not valid JSON" in response.json()["error"]["message"]
        no_folder = create_playground_app(agents)
    with BackgroundServer(no_folder) as bare:
        response = httpx.get(f"{bare.url}/api/transcripts")
        assert response.status_code == 404 and "--transcripts" in response.json()["error"]["message"]


def test_an_upstream_that_fails_is_a_502_naming_the_model():
    """The upstream is an OpenAI-compatible address where nothing listens: the page gets the error, not a hang."""
    llm = open_chat("openai/absent", api_base="http://127.0.0.1:9/v1", api_key="unused", max_retries=0, cache=False)
    agents = playground_agents([], llm, domain="emotional_support")
    with BackgroundServer(create_playground_app(agents)) as server:
        response = httpx.post(f"{server.url}/api/chat", timeout=120,
                              json={"planner": NO_PLANNER, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 502, response.text
    assert "openai/absent" in response.json()["error"]["message"]


def test_ppdpp_ui_needs_a_domain_without_planners(tmp_path):
    result = CliRunner().invoke(app, ["ui", "--upstream", "local/smollm2", "--port", "0"])
    assert result.exit_code == 2 and "--domain" in result.output, result.output
    missing = CliRunner().invoke(app, ["ui", "--upstream", "local/smollm2", "--domain", "negotiation",
                                       "--transcripts", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "nope" in missing.output, missing.output
