"""The web playground behind ``ppdpp ui``: chat with planned agents and read evaluation transcripts side by side.

One static page (``static/playground.html``, ``.js``, ``.css``: plain DOM code, no framework, nothing from the
network) and a few JSON routes:

- ``GET /api/planners``: ``{"planners": [{"id", "domain", "strategies", "planned"}], "transcripts": bool}``,
  the loaded planners and ``"no planner"`` (plain prompting).
- ``POST /api/chat``: ``{"planner": id, "messages": [OpenAI-style messages], "system": optional str}`` ->
  ``{"planner", "domain", "reply", "strategy", "instruction", "probability", "distribution"}``. Assistant
  messages may carry the ``"strategy"`` they were written with (as for the proxy).
- ``GET /api/transcripts``: the ``*.jsonl`` files of the transcript folder, with their policy and case ids.
- ``GET /api/transcripts/{name}``: one file's episodes, in a short form (case id, success, reward, turns).
- ``GET /api/cases/{case_id}``: every episode of that case, across all files (one column per policy).

Only ``*.jsonl`` names that are plain files directly in the transcript folder can be opened (no other path, no
symbolic link out of it). POST bodies must be ``application/json`` (a page on another site cannot send that
without a CORS preflight, which this server never grants), and on loopback only requests whose ``Host`` is a
loopback name are served (no DNS rebinding). File reads run in worker threads.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Sequence

from aiohttp import web

from ppdpp.planner.core.domain import DomainError
from ppdpp.planner.policy.baselines import NoPlannerPolicy
from ppdpp.planner.registry.manager import get_domain
from ppdpp.planner.llm.base import ChatBackend
from ppdpp.planner.serving.agent import ConversationError, PlannedAgent
from ppdpp.planner.serving.openai_protocol import (
    APIError, ServerLimits, backend_error, openai_app, read_json, server_metrics,
)

NO_PLANNER = "no planner"
STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": "playground.html", "/playground.js": "playground.js", "/playground.css": "playground.css"}
SECURITY_HEADERS = {"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
                    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
log = logging.getLogger("ppdpp.playground")


def playground_agents(planner_dirs: Sequence[Path], llm: ChatBackend, *, domain: str | None = None,
                      **agent_options: Any) -> dict[str, PlannedAgent]:
    """One :class:`PlannedAgent` per saved planner (named by its path as given; a repeated path gets ``#2``),
    plus ``"no planner"`` (plain prompting) for ``domain`` or the first planner's. All share ``llm``."""
    agents: dict[str, PlannedAgent] = {}
    for directory in planner_dirs:
        name, k = str(directory), 2
        while name in agents:
            name, k = f"{directory}#{k}", k + 1
        agents[name] = PlannedAgent.from_pretrained(directory, llm, domain=domain, **agent_options)
    if domain is None and not agents:
        raise ValueError("the playground needs a domain for 'no planner': give --domain or at least one --planner")
    plain = get_domain(domain) if domain is not None else next(iter(agents.values())).domain
    agents[NO_PLANNER] = PlannedAgent(plain, NoPlannerPolicy(), llm, **agent_options)
    return agents


def transcript_folder(path: Path) -> Path:
    """The folder of transcript files: ``path/transcripts`` for an evaluation's output folder, else ``path``."""
    inner = path / "transcripts"
    return inner if inner.is_dir() else path


# ---- reading transcripts (called in worker threads) ----------------------------------------------------
def read_episodes(path: Path) -> list[dict[str, Any]]:
    """The episodes of one transcript file. A bad line is an error naming the file and line, except an
    unfinished last line (no newline yet: an evaluation still writing it), which is left out."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    episodes = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            if lineno == len(lines):  # the last line, without its newline: still being written
                break
            raise DomainError(f"{path.name}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("case_id"), str):
            raise DomainError(f"{path.name}:{lineno}: not a transcript line (an object with a string 'case_id')")
        obj.setdefault("policy", path.stem)
        episodes.append(obj)
    return episodes


def summary(episode: Mapping[str, Any]) -> dict[str, Any]:
    """The short form of an episode that the file view lists."""
    return {key: episode.get(key) for key in ("episode_id", "case_id", "policy", "success", "total_reward", "turns")}


@dataclass
class TranscriptFolder:
    """The transcript files of one folder; ``meta`` is what the evaluation's report.json/config.json tell
    (critic mode, models), when they are next to it."""

    path: Path

    def files(self) -> list[Path]:
        return sorted(p for p in self.path.glob("*.jsonl") if p.is_file() and self._inside(p))

    def _inside(self, path: Path) -> bool:
        return path.resolve().parent == self.path.resolve()

    def file(self, name: str) -> Path:
        """The file ``name`` in the folder; anything else (another folder, a link out of it) is refused."""
        if not name.endswith(".jsonl") or "/" in name or "\\" in name or name.startswith("."):
            raise APIError(400, f"{name!r} is not the name of a .jsonl file in the transcript folder", param="name")
        path = self.path / name
        if not path.is_file():
            raise APIError(404, f"no transcript file {name!r} in {self.path}", type_="not_found")
        if not self._inside(path):
            raise APIError(403, f"{name!r} points outside the transcript folder", type_="forbidden")
        return path

    def meta(self) -> dict[str, Any]:
        for folder in (self.path, self.path.parent):
            report = folder / "report.json"
            if report.is_file():
                try:
                    data = json.loads(report.read_text(encoding="utf-8"))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    return {}
                return {k: data.get(k) for k in ("domain", "split", "critic_mode", "models", "max_turns")}
        return {}

    def listing(self) -> dict[str, Any]:
        files = []
        for path in self.files():
            episodes = read_episodes(path)
            files.append({"name": path.name, "policy": episodes[0]["policy"] if episodes else path.stem,
                          "episodes": len(episodes), "cases": sorted({e["case_id"] for e in episodes})})
        return {"dir": str(self.path), "files": files, **self.meta()}

    def open(self, name: str) -> dict[str, Any]:
        path = self.file(name)
        episodes = read_episodes(path)
        return {"name": name, "policy": episodes[0]["policy"] if episodes else path.stem,
                "episodes": [summary(e) for e in episodes]}

    def case(self, case_id: str) -> dict[str, Any]:
        """Every episode of ``case_id``, file by file (the columns of the side-by-side view)."""
        columns = []
        for path in self.files():
            episodes = [e for e in read_episodes(path) if e["case_id"] == case_id]
            if episodes:
                columns.append({"name": path.name, "policy": episodes[0]["policy"], "episodes": episodes})
        if not columns:
            raise APIError(404, f"no transcript in {self.path} has case {case_id!r}", type_="not_found")
        return {"case_id": case_id, "columns": columns, **self.meta()}


# ---- the application -----------------------------------------------------------------------------------
def _host_check(allowed: Sequence[str] | None) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def check(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        """Refuse a ``Host`` this server was not bound as (a rebinding attack names the attacker's domain)."""
        if allowed is not None and (request.url.host or "").strip("[]") not in allowed:
            raise APIError(403, f"Host {request.host!r} is not served here (use http://127.0.0.1:<port>)",
                           type_="forbidden")
        response = await handler(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    return check


class PlaygroundHandlers:
    """The routes of :func:`create_playground_app` (see the module docstring)."""

    def __init__(self, agents: Mapping[str, PlannedAgent], transcripts: TranscriptFolder | None,
                 upstream_timeout: float | None) -> None:
        self.agents, self.transcripts, self.upstream_timeout = dict(agents), transcripts, upstream_timeout

    async def page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / PAGES[request.path])

    async def no_icon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def planners(self, request: web.Request) -> web.Response:
        return web.json_response({
            "planners": [{"id": name, "domain": agent.domain.name, "strategies": agent.domain.strategy_names,
                          "planned": name != NO_PLANNER} for name, agent in self.agents.items()],
            "transcripts": self.transcripts is not None})

    async def chat(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            raise APIError(415, "send the chat turn as Content-Type: application/json")
        body = await read_json(request)
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object")
        name = body.get("planner", NO_PLANNER)
        if name not in self.agents:
            raise APIError(400, f"planner {name!r} is not loaded (loaded: {', '.join(map(repr, self.agents))})",
                           param="planner")
        messages, system = body.get("messages"), body.get("system")
        if not isinstance(messages, list) or not messages:
            raise APIError(400, "messages must be a non-empty list of chat messages", param="messages")
        if system is not None and not isinstance(system, str):
            raise APIError(400, f"system must be a string, got {type(system).__name__}", param="system")
        conversation = ([{"role": "system", "content": system}] if system and system.strip() else []) + messages
        agent, metrics = self.agents[name], server_metrics(request)
        try:
            with metrics.planning_timer():
                prepared = await agent.prepare(conversation)
        except (ConversationError, DomainError) as exc:
            raise APIError(400, str(exc), param="messages") from None
        metrics.decision(prepared.plan.strategy)
        if prepared.plan.vetoed is not None:
            metrics.veto(prepared.plan.vetoed, prepared.plan.strategy)
        try:
            with metrics.upstream_timer():
                completion = await asyncio.wait_for(
                    agent.llm.complete(prepared.messages, n=1, **agent.call_options()), self.upstream_timeout)
        except Exception as exc:  # noqa: BLE001 - 502/504 upstream, 500 a bug; never a crash
            raise backend_error(exc, agent.model, log) from None
        metrics.usage(completion.usage)
        reply = agent.finish(prepared, list(completion.texts), completion.usage)
        plan = reply.plan
        return web.json_response({"planner": name, "domain": agent.domain.name, "reply": reply.text,
                                  "strategy": plan.strategy, "instruction": plan.instruction,
                                  "probability": plan.probability, "distribution": plan.distribution,
                                  "vetoed": plan.vetoed, "veto_reason": plan.veto_reason or None})

    def _folder(self) -> TranscriptFolder:
        if self.transcripts is None:
            raise APIError(404, "no transcript folder was given (ppdpp ui --transcripts DIR)", type_="not_found")
        return self.transcripts

    async def _read(self, method: Callable[..., dict[str, Any]], *args: str) -> web.Response:
        try:
            return web.json_response(await asyncio.to_thread(method, *args))
        except DomainError as exc:
            raise APIError(422, str(exc)) from None

    async def listing(self, request: web.Request) -> web.Response:
        return await self._read(self._folder().listing)

    async def open_file(self, request: web.Request) -> web.Response:
        return await self._read(self._folder().open, request.match_info["name"])

    async def case(self, request: web.Request) -> web.Response:
        return await self._read(self._folder().case, request.match_info["case_id"])


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def create_playground_app(agents: Mapping[str, PlannedAgent], *, transcripts: Path | None = None,
                          host: str = "127.0.0.1", upstream_timeout: float | None = 120.0) -> web.Application:
    """The playground as an aiohttp application. ``agents``: see :func:`playground_agents`; ``transcripts``:
    an evaluation's output folder or a folder of transcript files; ``host``: the interface it will be bound
    to (on loopback, requests must name a loopback ``Host``); ``upstream_timeout``: seconds per LLM call."""
    if not agents:
        raise ValueError("the playground needs at least one agent")
    folder = None
    if transcripts is not None:
        if not Path(transcripts).is_dir():
            raise ValueError(f"{transcripts}: not a folder (give an evaluation's --out folder)")
        folder = TranscriptFolder(transcript_folder(Path(transcripts)))
    handlers = PlaygroundHandlers(agents, folder, upstream_timeout)
    app = openai_app(limits=ServerLimits(), token=None, log=log, server="the ppdpp playground", metrics_name="ui")
    app.middlewares.append(_host_check(LOOPBACK_NAMES if is_loopback(host) else None))
    for path in PAGES:
        app.router.add_get(path, handlers.page)
    app.router.add_get("/favicon.ico", handlers.no_icon)
    app.router.add_get("/api/planners", handlers.planners)
    app.router.add_post("/api/chat", handlers.chat)
    app.router.add_get("/api/transcripts", handlers.listing)
    app.router.add_get("/api/transcripts/{name}", handlers.open_file)
    app.router.add_get("/api/cases/{case_id}", handlers.case)
    return app
