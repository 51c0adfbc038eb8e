"""The planning proxy behind ``ppdpp serve``: an OpenAI-compatible chat server in front of an upstream LLM.

A chatbot that points its OpenAI base URL here gets the upstream model's replies, each planned by a
:class:`~ppdpp.planner.serving.agent.PlannedAgent`. See docs/serving.md for the protocol; in short:

- ``POST /v1/chat/completions``: the OpenAI request, read by :mod:`.openai_protocol` (the same parser, limits
  and error format as ``ppdpp serve-llm``), plus an optional ``"ppdpp": {"case": {"id": ..., "fields":
  {...}}, "dialogue_id": ...}``. The response is the OpenAI one plus ``"ppdpp": {"domain", "strategy",
  "instruction", "probability", "distribution"}`` (in the first chunk when streaming) and the headers
  ``X-PPDPP-Strategy`` / ``X-PPDPP-Probability``; ``"vetoed"`` / ``"veto_reason"`` name the strategy the
  planner chose when a guardrail or a ``veto_strategy`` hook replaced it (else ``null``). Streamed replies pass the upstream's pieces on as they come.
- ``POST /v1/ppdpp/dialogue_end``: ``{"messages", "outcome", "dialogue_id", "case"}`` runs the
  ``dialogue_end`` hooks. ``GET /v1/models`` lists the one model served. ``GET /health`` needs no token.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Callable, Mapping
from urllib.parse import quote

from aiohttp import web

from ppdpp.planner.core.domain import Case, DomainError
from ppdpp.planner.core.plan import Plan
from ppdpp.planner.serving.agent import ConversationError, PlannedAgent, PreparedTurn, split_conversation
from ppdpp.planner.serving.openai_protocol import (
    APIError, ChatRequest, ServerLimits, backend_error, check_prompt_tokens, completion_json, models_json,
    openai_app, parse_chat_request, read_json, server_metrics, stream_response,
)

TOKEN_ENV = "PPDPP_PROXY_TOKEN"
ROLES = ("system", "developer", "user", "assistant")
log = logging.getLogger("ppdpp.proxy")


# ---- the ppdpp extension -------------------------------------------------------------------------------
def _case(extension: Mapping[str, Any]) -> Case | None:
    raw = extension.get("case")
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not isinstance(raw.get("fields"), Mapping):
        raise APIError(400, 'ppdpp.case must be an object {"id": ..., "fields": {...}}', param="ppdpp.case")
    return Case(str(raw.get("id", "client")), dict(raw["fields"]))


def _case_and_context(extension: Any, user: Any = None) -> tuple[Case | None, dict[str, Any]]:
    """The case and the hook context from a request's ``ppdpp`` object (and OpenAI's ``user`` field)."""
    extension = extension or {}
    if not isinstance(extension, Mapping):
        raise APIError(400, "ppdpp must be an object", param="ppdpp")
    context: dict[str, Any] = {"source": "proxy"}
    if extension.get("dialogue_id") is not None:
        context["dialogue_id"] = str(extension["dialogue_id"])
    if isinstance(user, str):
        context["user"] = user
    return _case(extension), context


def _conversation(messages: list[Any]) -> list[Any]:
    """``messages`` once the agent can read them (e.g. an echoed ``strategy`` must be a string)."""
    try:
        split_conversation(messages)
    except ConversationError as exc:
        raise APIError(400, str(exc), param="messages") from None
    return messages


def plan_json(domain: str, plan: Plan) -> dict[str, Any]:
    """The ``ppdpp`` field of a response."""
    return {"domain": domain, "strategy": plan.strategy, "instruction": plan.instruction,
            "probability": plan.probability, "distribution": plan.distribution,
            "vetoed": plan.vetoed, "veto_reason": plan.veto_reason or None}


def plan_headers(plan: Plan) -> dict[str, str]:
    """``X-PPDPP-Strategy`` (percent-encoded where not plain ASCII) and ``X-PPDPP-Probability``."""
    strategy = "" if plan.strategy is None else quote(plan.strategy, safe=" !#$&'()*+,-./:;=?@[]^_`{|}~")
    return {"X-PPDPP-Strategy": strategy, "X-PPDPP-Probability": f"{plan.probability:.6f}"}


# ---- the application -----------------------------------------------------------------------------------
class ProxyHandlers:
    """The route handlers, around one agent."""

    def __init__(self, agent: PlannedAgent, model_name: str, upstream_timeout: float | None,
                 limits: ServerLimits) -> None:
        self.agent = agent
        self.model_name = model_name
        self.upstream_timeout = upstream_timeout
        self.limits = limits
        self.created = int(time.time())

    def _upstream_error(self, exc: BaseException) -> APIError:
        return backend_error(exc, self.agent.model, log)

    async def _prepare(self, req: ChatRequest, case: Case | None, context: dict[str, Any]) -> PreparedTurn:
        try:
            return await self.agent.prepare(req.messages, case, context=context)
        except (ConversationError, DomainError) as exc:
            raise APIError(400, str(exc), param="messages") from None
        except KeyError as exc:
            if case is None:
                raise
            raise APIError(400, f"ppdpp.case.fields lacks {exc.args[0]!r}, which domain "
                           f"{self.agent.domain.name!r} needs", param="ppdpp.case") from None

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "domain": self.agent.domain.name, "model": self.model_name})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(models_json(self.model_name, self.created))

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        req = parse_chat_request(body, self.limits, ROLES)
        case, context = _case_and_context(body.get("ppdpp"), body.get("user"))
        await check_prompt_tokens(self.agent.llm, req.texts(), self.limits)
        metrics = server_metrics(request)
        with metrics.planning_timer():
            prepared = await self._prepare(req, case, context)
        metrics.decision(prepared.plan.strategy)
        if prepared.plan.vetoed is not None:
            metrics.veto(prepared.plan.vetoed, prepared.plan.strategy)
        options = self.agent.call_options(**req.options())
        if req.stream:
            def done(completion: Any) -> None:
                metrics.usage(completion.usage)
                self.agent.finish(prepared, list(completion.texts), completion.usage)

            return await stream_response(
                request, self.agent.pieces(prepared.messages, options), model=self.model_name,
                include_usage=req.include_usage, fail=self._upstream_error, timeout=self.upstream_timeout,
                headers=plan_headers(prepared.plan), first={"ppdpp": plan_json(self.agent.domain.name, prepared.plan)},
                done=done)
        try:
            with metrics.upstream_timer():
                completion = await asyncio.wait_for(self.agent.llm.complete(prepared.messages, n=req.n, **options),
                                                    self.upstream_timeout)
        except Exception as exc:  # noqa: BLE001 - 502/504 upstream, 500 a bug; never a crash
            raise self._upstream_error(exc) from None
        metrics.usage(completion.usage)
        reply = self.agent.finish(prepared, list(completion.texts), completion.usage)
        log.info("planned %s (p=%.3f) for a %d-turn conversation", reply.strategy, reply.probability,
                 len(prepared.conversation))
        return web.json_response({**completion_json(self.model_name, completion, reply.texts),
                                  "ppdpp": plan_json(self.agent.domain.name, reply.plan)},
                                 headers=plan_headers(reply.plan))

    async def dialogue_end(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise APIError(400, "messages must be a non-empty list of chat messages", param="messages")
        outcome = body.get("outcome") or {}
        if not isinstance(outcome, Mapping):
            raise APIError(400, "outcome must be an object", param="outcome")
        case, context = _case_and_context(body)
        await self.agent.aend_dialogue(_conversation(messages), case, dict(outcome), context)
        return web.json_response({"ok": True})


def create_app(agent: PlannedAgent, *, token: str | None = None, model_name: str | None = None,
               upstream_timeout: float | None = 120.0, limits: ServerLimits | None = None) -> web.Application:
    """The proxy as an aiohttp application. ``model_name`` is the id clients see (default: the upstream's);
    ``token`` turns on bearer-token checks; ``upstream_timeout`` (seconds, ``None`` = none) bounds each
    upstream call (and each streamed piece); ``limits`` caps the body, ``n``, ``max_tokens``, the prompt's
    tokens (the client's messages, counted by the upstream's tokenizer where it is local), the requests admitted
    at once and each request's time."""
    limits = limits or ServerLimits()
    if agent.max_tokens > limits.max_tokens:
        raise ValueError(f"the agent's default max_tokens {agent.max_tokens} is over the limit {limits.max_tokens}")
    handlers = ProxyHandlers(agent, model_name or agent.model or "ppdpp", upstream_timeout, limits)
    app = openai_app(limits=limits, token=token, log=log, server="the ppdpp proxy", metrics_name="serve")
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/v1/models", handlers.models)
    app.router.add_post("/v1/chat/completions", handlers.chat)
    app.router.add_post("/v1/ppdpp/dialogue_end", handlers.dialogue_end)
    return app


# ---- running it ----------------------------------------------------------------------------------------
class BackgroundServer:
    """An aiohttp application served from a background thread with its own event loop (tests, notebooks).
    ``port=0`` picks a free port; ``url`` is ``http://host:port``."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app, self.host, self.port = app, host, port
        self.loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ppdpp-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self._runner = web.AppRunner(self.app, access_log=None)
            self.loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port)
            self.loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self._runner.cleanup())
        self.loop.close()

    def start(self, timeout: float = 60.0) -> "BackgroundServer":
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the server on {self.host}:{self.port} did not start in {timeout} s")
        if self._error is not None:
            raise RuntimeError(f"the server on {self.host}:{self.port} failed to start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=30)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


async def serve_forever(app: web.Application, host: str, port: int,
                        on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``app`` until cancelled (Ctrl-C); ``on_ready`` gets the base URL once the port is bound."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound = runner.addresses[0]
        if on_ready is not None:
            on_ready(f"http://{host}:{bound[1]}")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
