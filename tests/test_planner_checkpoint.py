"""A saved planner is a standard transformers sequence-classification checkpoint (issue #30): transformers'
pipeline reads the folder and agrees with ``PolicyPlanner.plan`` on real dialogues of every domain; format-1
folders still load and ``ppdpp planner upgrade`` rewrites them; the model card; the Hugging Face Hub round trip
through huggingface_hub against a local stand-in for the Hub (the only fake: the Hub cannot be reached here); and
``ppdpp planner export onnx`` with ONNX Runtime's argmax equal to the planner's on ESConv test turns."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import yaml
from aiohttp import web
from safetensors.torch import save_file
from typer.testing import CliRunner

from ppdpp.planner.cli import app
from ppdpp.planner.core.atomic import write_json
from ppdpp.planner.core.domain import Turn
from ppdpp.planner.policy.model_card import update_card
from ppdpp.planner.policy.policy_planner import CONFIG_FILE, PlannerConfig, PolicyPlanner
from ppdpp.planner.registry.manager import get_domain

DOMAINS = ["negotiation", "emotional_support", "tutoring", "roleplay"]
HUB_TOKEN = "hf_test_token_4c2e"


def conversations(domain, data_dir, count: int = 4) -> list[tuple[list[Turn], object]]:
    """Prefixes of real test dialogues (their first 2 and 5 turns)."""
    split = "valid" if domain.name == "roleplay" else "test"
    out = []
    for case in domain.load_cases(split, data_dir)[:count]:
        opening = list(domain.opening(case))
        dialogue = list(case.dialogue) or opening
        for k in (2, 5):
            out.append((dialogue[:k] or opening, case))
    return out


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A fresh planner per domain (seeded head), saved."""
    folders = {}
    for name in DOMAINS:
        torch.manual_seed(0)
        planner = PolicyPlanner(get_domain(name), PlannerConfig(max_length=256), inference_dtype="float32")
        with torch.no_grad():
            planner.head.weight.mul_(20)  # a peaked distribution, so that the comparison means something
        folders[name] = planner.save_pretrained(tmp_path_factory.mktemp(name) / "planner")
    return folders


@pytest.mark.slow
@pytest.mark.parametrize("name", DOMAINS)
def test_transformers_pipeline_reads_the_folder_and_agrees_with_plan(saved, name, data_dir):
    from transformers import pipeline

    domain = get_domain(name)
    planner = PolicyPlanner.from_pretrained(saved[name], inference_dtype="float32")
    config = json.loads((saved[name] / "config.json").read_text())
    assert config["id2label"] == {str(i): s for i, s in enumerate(domain.strategy_names)}, config["id2label"]
    assert config["auto_map"]["AutoModelForSequenceClassification"].startswith("modeling_ppdpp.")
    classify = pipeline("text-classification", model=str(saved[name]), trust_remote_code=True, top_k=None,
                        device="cpu")
    for conversation, case in conversations(domain, data_dir):
        text = planner.input_text(conversation, case)
        assert planner.tokenizer(text)["input_ids"] == planner.encode(conversation, case), \
            f"the input text does not tokenize back to the planner's input: {text!r}"
        scores = {row["label"]: row["score"] for row in classify([text])[0]}
        plan = planner.plan(conversation, case)
        assert max(scores, key=scores.get) == plan.strategy, (scores, plan)
        for strategy, p in plan.distribution.items():
            assert scores[strategy] == pytest.approx(p, abs=1e-4), (strategy, scores[strategy], p)


def test_the_model_card_describes_the_planner_without_machine_paths(saved):
    card = (saved["negotiation"] / "README.md").read_text()
    header = card.split("---")[1]
    assert "pipeline_tag: text-classification" in header and "base_model: sentence-transformers/all-MiniLM-L6-v2" \
        in header, header
    for strategy in get_domain("negotiation").strategy_names:
        assert f"| {strategy} |" in card, strategy
    assert "site-packages" not in card and "Intended use and limits" in card
    update_card(saved["negotiation"], "Evaluation", "| policy | SL |\n|---|---|\n| planner | 0.40 |")
    update_card(saved["negotiation"], "Evaluation", "| policy | SL |\n|---|---|\n| planner | 0.43 |")
    again = (saved["negotiation"] / "README.md").read_text()
    assert again.count("## Evaluation") == 1 and "0.43" in again and "0.40" not in again


def write_format_1(planner: PolicyPlanner, folder: Path) -> Path:
    """A folder as ppdpp 0.1 (format 1) wrote it: encoder/, tokenizer/, head.safetensors, planner.json."""
    from dataclasses import asdict

    folder.mkdir(parents=True)
    planner.encoder.save_pretrained(folder / "encoder")
    planner.tokenizer.save_pretrained(folder / "tokenizer")
    save_file({k: v.contiguous() for k, v in planner.head.state_dict().items()}, str(folder / "head.safetensors"))
    space = planner.space
    write_json(folder / CONFIG_FILE, {"format_version": 1, "domain": space.domain, "strategies": space.strategies,
                                      "agent_role": space.agent_role, "user_role": space.user_role,
                                      "planner": asdict(planner.config)})
    return folder


def test_a_format_1_folder_loads_and_ppdpp_planner_upgrade_rewrites_it(saved, tmp_path, data_dir):
    domain = get_domain("emotional_support")
    planner = PolicyPlanner.from_pretrained(saved["emotional_support"], inference_dtype="float32")
    old = write_format_1(planner, tmp_path / "old")
    probes = conversations(domain, data_dir, count=2)
    want = [planner.plan(c, k).distribution for c, k in probes]
    loaded = PolicyPlanner.from_pretrained(old, inference_dtype="float32")
    assert [loaded.plan(c, k).distribution for c, k in probes] == want
    result = CliRunner().invoke(app, ["planner", "upgrade", str(old)])
    assert result.exit_code == 0 and "format 1 -> 2" in result.output, result.output
    assert json.loads((old / CONFIG_FILE).read_text())["format_version"] == 2
    assert not (old / "head.safetensors").exists() and (old / "model.safetensors").is_file()
    upgraded = PolicyPlanner.from_pretrained(old, inference_dtype="float32")
    for (c, k), distribution in zip(probes, want):
        assert upgraded.plan(c, k).distribution == pytest.approx(distribution, abs=1e-6)
    again = CliRunner().invoke(app, ["planner", "upgrade", str(old)])
    assert again.exit_code == 0 and "nothing to do" in again.output


# ---- the Hub ------------------------------------------------------------------------------------------------
class HubStandIn:
    """The Hub's HTTP API as huggingface_hub uses it to create a repository, commit files (preupload answered
    'regular': contents travel base64 in the commit) and download a snapshot. Records every request's token."""

    SHA = "c0ffee" * 6 + "beef"

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], bytes] = {}
        self.tokens: set[str] = set()
        self.card_metadata: dict | None = None
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None

    def __enter__(self) -> "HubStandIn":
        app = web.Application(client_max_size=1 << 30, middlewares=[self._token])
        app.router.add_post("/api/repos/create", self.create)
        app.router.add_post("/api/validate-yaml", self.validate_yaml)
        app.router.add_post("/api/models/{org}/{name}/preupload/{rev}", self.preupload)
        app.router.add_post("/api/models/{org}/{name}/commit/{rev}", self.commit)
        app.router.add_get("/api/models/{org}/{name}/revision/{rev}", self.info)
        app.router.add_get("/api/models/{org}/{name}/tree/{rev}", self.tree)
        app.router.add_get("/{org}/{name}/resolve/{rev}/{path:.+}", self.resolve)
        self.runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", 0).start())
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)

    @web.middleware
    async def _token(self, request, handler):
        self.tokens.add(request.headers.get("Authorization", ""))
        return await handler(request)

    def _repo(self, request) -> str:
        return f"{request.match_info['org']}/{request.match_info['name']}"

    async def create(self, request):
        body = await request.json()
        return web.json_response({"url": f"{self.url}/{body.get('organization')}/{body['name']}"})

    async def validate_yaml(self, request):
        """The card's metadata header must be YAML (the Hub refuses the upload otherwise)."""
        content = (await request.json())["content"]
        try:
            self.card_metadata = yaml.safe_load(content.split("---")[1])
        except (yaml.YAMLError, IndexError) as exc:
            return web.json_response({"errors": [{"message": str(exc)}]}, status=400)
        return web.json_response({"errors": [], "warnings": []})

    async def preupload(self, request):
        files = (await request.json())["files"]
        return web.json_response({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                            for f in files], "commitOid": self.SHA})

    async def commit(self, request):
        repo = self._repo(request)
        for line in (await request.read()).decode().splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                self.files[(repo, item["value"]["path"])] = base64.b64decode(item["value"]["content"])
        return web.json_response({"commitUrl": f"{self.url}/{repo}/commit/{self.SHA}", "commitOid": self.SHA,
                                  "pullRequestUrl": None})

    async def info(self, request):
        names = [path for repo, path in self.files if repo == self._repo(request)]
        if not names:
            return web.json_response({"error": "Repository not found"}, status=404,
                                     headers={"X-Error-Code": "RepoNotFound"})
        return web.json_response({"id": self._repo(request), "sha": self.SHA,
                                  "siblings": [{"rfilename": name} for name in names]})

    async def tree(self, request):
        return web.json_response([{"type": "file", "path": path, "size": len(data),
                                   "oid": hashlib.sha1(data).hexdigest()}
                                  for (repo, path), data in self.files.items() if repo == self._repo(request)])

    async def resolve(self, request):
        data = self.files.get((self._repo(request), request.match_info["path"]))
        if data is None:
            return web.json_response({"error": "Entry not found"}, status=404, headers={"X-Error-Code": "EntryNotFound"})
        headers = {"X-Repo-Commit": self.SHA, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                   "Content-Length": str(len(data))}
        return web.Response(headers=headers) if request.method == "HEAD" else web.Response(body=data, headers=headers)


LOAD = ("import sys; from ppdpp.planner.policy.policy_planner import PolicyPlanner; from ppdpp.planner import Turn; "
        "p = PolicyPlanner.from_pretrained('acme/negotiation-planner', inference_dtype='float32'); "
        "print(p.space.domain, p.plan([Turn('user', 'Hi, the bike is $300.')]).strategy)")


@pytest.mark.slow
def test_push_to_the_hub_and_load_by_repository_id_then_offline_from_the_cache(saved, tmp_path):
    planner = PolicyPlanner.from_pretrained(saved["negotiation"], inference_dtype="float32")
    want = planner.plan([Turn("user", "Hi, the bike is $300.")]).strategy
    with HubStandIn() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"),
               "HF_TOKEN": HUB_TOKEN, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1"}
        cli = [sys.executable, "-c", "from ppdpp.planner.cli import main; main()"]
        push = subprocess.run([*cli, "planner", "push", str(saved["negotiation"]), "acme/negotiation-planner"],
                              capture_output=True, text=True, env=env, timeout=300)
        assert push.returncode == 0, push.stdout + push.stderr
        assert HUB_TOKEN not in push.stdout + push.stderr, "the token must never be printed"
        assert f"Bearer {HUB_TOKEN}" in hub.tokens, "huggingface_hub's own token was sent"
        assert hub.card_metadata["pipeline_tag"] == "text-classification", hub.card_metadata
        pushed = {path for _, path in hub.files}
        assert {"config.json", "model.safetensors", "modeling_ppdpp.py", "planner.json", "README.md",
                "tokenizer.json"} <= pushed, pushed
        online = subprocess.run([sys.executable, "-c", LOAD], capture_output=True, text=True, env=env, timeout=300)
        assert online.returncode == 0, online.stderr
        assert online.stdout.split() == ["negotiation", want], online.stdout
    offline = subprocess.run([sys.executable, "-c", LOAD], capture_output=True, text=True, timeout=300,
                             env={**env, "HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 0 and offline.stdout.split() == ["negotiation", want], offline.stderr


@pytest.mark.slow
def test_an_unknown_repository_is_a_clear_error(tmp_path):
    run = subprocess.run([sys.executable, "-c", "from ppdpp.planner.policy.policy_planner import PolicyPlanner; "
                          "PolicyPlanner.from_pretrained('acme/nothing-here')"], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert run.returncode != 0 and "acme/nothing-here: no such planner folder" in run.stderr, run.stderr[-500:]


# ---- ONNX ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ppdpp_planner_export_onnx_gives_the_planners_argmax_on_test_turns(saved, data_dir):
    from ppdpp.planner.policy.planner_onnx import onnx_forward

    folder = saved["emotional_support"]
    result = CliRunner().invoke(app, ["planner", "export", "onnx", str(folder)])
    assert result.exit_code == 0, result.output
    planner = PolicyPlanner.from_pretrained(folder, inference_dtype="float32")
    domain = get_domain("emotional_support")
    examples = domain.sft_examples("test", data_dir)[:48]
    inputs = [planner.encode(ex.history, ex.case) for ex in examples]
    forward = onnx_forward(folder / "model.onnx", threads=1)
    logits = torch.cat([forward(*planner.collate(inputs[i: i + 16])) for i in range(0, len(inputs), 16)])
    want = planner.probabilities(inputs)
    assert logits.shape == want.shape
    assert torch.equal(logits.argmax(-1), want.argmax(-1)), "ONNX Runtime and the planner disagree"
    assert torch.allclose(torch.softmax(logits, -1), want, atol=1e-4)


def test_an_evaluation_writes_its_table_into_the_planners_card(saved, tmp_path):
    folder = saved["negotiation"]
    result = CliRunner().invoke(app, [
        "evaluate", "-d", "negotiation", "--planner", str(folder), "--agent", "template", "--user", "rule-based",
        "--critic", "oracle", "--baselines", "random", "--cases", "2", "--max-turns", "2", "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    card = (folder / "README.md").read_text()
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    planner_row = next(p for p in report["policies"] if p["policy"] != "random")
    section = card.split("## Evaluation (ppdpp evaluate)")[1]
    assert f"| **{planner_row['policy']}** | {planner_row['sr']['mean']:.3f}" in section, section
    assert "| random |" in section and "agent: `template`" in section and "| SL |" in section, section
