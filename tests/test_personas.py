"""User personas after TRIP (simulators/personas.py): the sets are deterministic and balanced, each dialogue gets
its persona from its seed and case, the persona reaches the user LLM's prompt in every built-in domain (checked
on the requests a real OpenAI-compatible HTTP server receives), transcripts and report.json record it, and the
CLI option comes from EnvConfig for both ``ppdpp rl`` and ``ppdpp evaluate``."""

from __future__ import annotations

import asyncio
import collections
import json
import subprocess
import sys

import pytest
from aiohttp import web
from typer.testing import CliRunner

from ppdpp.planner.cli.app import app
from ppdpp.planner.llm import open_chat
from ppdpp.planner.registry.manager import get_domain
from ppdpp.simulators.critic import Critic
from ppdpp.simulators.env import EnvConfig, SelfPlayEnv
from helpers import chat_reply, scripted_server
from ppdpp.simulators.personas import BIG_FIVE, DECISION_STYLES, persona_for, persona_set

DOMAINS = ("negotiation", "emotional_support", "tutoring", "roleplay")


def test_sets_are_trips_sizes_balanced_disjoint_and_the_same_in_another_process():
    train, test = persona_set("train"), persona_set("test")
    assert (len(train), len(test), len(persona_set("all")), persona_set("none")) == (40, 300, 340, ())
    assert not {p.id for p in train} & {p.id for p in test}, "no test persona is seen in training"
    assert len({p.text for p in train + test}) == 340, "every persona's text differs"
    for personas, per_trait, per_style in ((train, 8, 10), (test, 60, 75)):
        assert collections.Counter(p.trait for p in personas) == {t: per_trait for t in BIG_FIVE}
        assert collections.Counter(p.style for p in personas) == {s: per_style for s in DECISION_STYLES}
    code = ("import json; from ppdpp.simulators.personas import persona_set; "
            "print(json.dumps([p.to_json() for p in persona_set('test')]))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(other.stdout) == [p.to_json() for p in test], "the set differs in another process"


def test_each_dialogue_gets_its_persona_from_seed_and_case(tmp_path):
    test = persona_set("test")
    assert persona_for(test, 7, "case-1") == persona_for(test, 7, "case-1")
    assert persona_for((), 7, "case-1") is None
    picked = {persona_for(test, seed, f"case-{i}").id for seed in range(3) for i in range(20)}
    assert len(picked) > 40, "seeds and cases spread over the set"
    own = tmp_path / "personas.jsonl"
    own.write_text('{"id": "p1", "trait": "stubborn", "style": "-", "text": "You never give in."}\n')
    assert [p.text for p in EnvConfig(user_personas=str(own)).personas] == ["You never give in."]
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": "x"}]')
    with pytest.raises(ValueError, match=r"bad.json: entry 1: field 'text'"):
        EnvConfig(user_personas=str(bad))
    with pytest.raises(ValueError, match="none, train, test, all"):
        EnvConfig(user_personas="trian")


def recording_server(reply: str):
    """A real OpenAI-compatible chat server on a free local port that answers ``reply`` and keeps every body."""
    async def handle(_: int, body: dict, __: web.Request) -> web.Response:
        return chat_reply(body, reply)
    return scripted_server(handle)


def test_the_persona_reaches_the_user_prompt_of_every_built_in_domain():
    async def run():
        out = {}
        async with recording_server("Could you tell me more about it?") as (url, seen):
            llm = open_chat("openai/persona-check", cache=False, api_base=url, api_key="sk-dummy")
            try:
                for name in DOMAINS:
                    domain = get_domain(name)
                    case = domain.load_cases("test", None)[0]
                    env = SelfPlayEnv(domain, llm, llm, Critic(llm, "greedy"),
                                      EnvConfig(max_turns=1, max_tokens=16, user_personas="test"))
                    history = await env.reset(case, seed=5)
                    before = len(seen)
                    await env.step(None)
                    user_prompt = domain.user_messages(case, [*history, env.history[len(history)]])
                    out[name] = (env.persona_record, user_prompt, seen[before:])
            finally:
                await llm.aclose()
        return out

    for name, (record, user_prompt, requests) in asyncio.run(run()).items():
        persona = persona_for(persona_set("test"), 5, get_domain(name).load_cases("test", None)[0].id)
        assert record == {**persona.to_json(), "applied": True}, name
        carrying = [r for r in requests if any(persona.text in m["content"] for m in r["messages"])]
        assert len(requests) == 3 and len(carrying) == 1, f"{name}: only the user's request carries the persona"
        sent = carrying[0]["messages"]
        assert sent[0]["role"] == "system" and sent[0]["content"] == f"{user_prompt[0]['content']}\n\n{persona.text}"
        assert sent[1:] == user_prompt[1:], f"{name}: the rest of the user's prompt is the domain's own"


GROUNDED = ["evaluate", "-d", "negotiation", "--agent", "template", "--user", "rule-based", "--critic", "oracle",
            "--cases", "8", "--baselines", "no-planner,random", "--max-turns", "4"]


def test_grounded_evaluation_records_personas_and_breaks_the_report_down(tmp_path):
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, [*GROUNDED, "--user-personas", "test", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "per user persona" in result.output and "ignores personas" in result.output
    assert json.loads((out / "config.json").read_text())["user_personas"] == "test"
    report = json.loads((out / "report.json").read_text())
    assert report["personas"]["applied"] is False and report["personas"]["count"] == 300
    rows = {p["policy"]: p for p in report["policies"]}
    for name in ("no-planner", "random"):
        lines = [json.loads(line) for line in (out / "transcripts" / f"{name}.jsonl").read_text().splitlines()]
        assert all(line["user_persona"]["applied"] is False for line in lines), "programmatic user: not applied"
        for key in ("trait", "style"):
            counts = collections.Counter(line["user_persona"][key] for line in lines)
            wins = collections.Counter(line["user_persona"][key] for line in lines if line["success"])
            got = rows[name]["by_persona"][key]
            assert {k: v["episodes"] for k, v in got.items()} == dict(counts), (name, key)
            assert {k: v["successes"] for k, v in got.items() if v["successes"]} == dict(wins), (name, key)
            for group, row in got.items():  # each persona group's strategy use, from its own transcripts
                chosen = [step["strategy"] for line in lines if line["user_persona"][key] == group
                          for step in line["steps"] if step["strategy"] is not None]
                assert row["strategies"]["decisions"] == len(chosen), (name, key, group)
                if chosen:
                    top, count = collections.Counter(chosen).most_common(1)[0]
                    assert row["strategies"]["distribution"][top] == pytest.approx(count / len(chosen))
                    assert row["strategies"]["entropy_nats"] >= 0 and row["strategies"]["kl_from_human_nats"] is not None
                else:
                    assert row["strategies"]["entropy_nats"] is None
    first = {json.loads(line)["case_id"]: json.loads(line)["user_persona"]["id"]
             for line in (out / "transcripts" / "no-planner.jsonl").read_text().splitlines()}
    second = {json.loads(line)["case_id"]: json.loads(line)["user_persona"]["id"]
              for line in (out / "transcripts" / "random.jsonl").read_text().splitlines()}
    assert first == second, "every policy meets the same user on the same case"
    plain = CliRunner().invoke(app, [*GROUNDED, "--out", str(tmp_path / "plain")])
    assert plain.exit_code == 0 and "per user persona" not in plain.output
    assert json.loads((tmp_path / "plain" / "report.json").read_text())["personas"] is None


def test_rl_and_evaluate_both_take_the_option_from_envconfig():
    from ppdpp.planner.cli.selfplay import evaluate_parser, rl_parser

    for parser in (rl_parser(), evaluate_parser()):
        leaf = parser.leaves["user_personas"]
        assert leaf.owner is EnvConfig and leaf.default == "none"
    (_, config, *_) = rl_parser().parse(["-d", "negotiation", "--planner", "p", "--agent", "template",
                                    "--user-personas", "train"])
    assert config.env.user_personas == "train" and len(config.env.personas) == 40


@pytest.mark.slow
def test_llm_user_with_personas_smollm2(smollm2_gguf, tmp_path):
    out = tmp_path / "llm"
    result = CliRunner().invoke(app, [
        "evaluate", "-d", "negotiation", "--agent", "local/smollm2", "--cases", "2", "--max-turns", "2",
        "--max-tokens", "16", "--baselines", "no-planner", "--user-personas", "test", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["personas"] == {"set": "test", "count": 300, "applied": True}
    lines = [json.loads(line) for line in (out / "transcripts" / "no-planner.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(line["user_persona"]["applied"] for line in lines)
    breakdown = report["policies"][0]["by_persona"]
    assert sum(v["episodes"] for v in breakdown["trait"].values()) == 2
    assert sum(v["episodes"] for v in breakdown["style"].values()) == 2
