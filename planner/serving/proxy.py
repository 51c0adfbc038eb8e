"""The planning proxy behind ``ppdpp serve``: an OpenAI-compatible chat server in front of an upstream LLM.

A chatbot that points its OpenAI base URL here gets the upstream model's replies, each planned by a
:class:`~ppdpp.planner.agent.PlannedAgent`. See docs/serving.md for the protocol; in short:

- ``POST /v1/chat/completions``: the OpenAI request (``messages``, ``temperature``, ``max_tokens`` or
  ``max_completion_tokens``, ``stop``, ``seed``, ``n``, ``stream``, ``stream_options.include_usage``; other
  sampling fields are ignored; ``tools``, ``functions`` and non-text ``response_format`` are refused) plus an
  optional ``"ppdpp": {"case": {"id": ..., "fields": {...}}, "dialogue_id": ...}``. The response is the
  OpenAI one plus ``"ppdpp": {"domain", "strategy", "instruction", "probability", "distribution"}`` (in the
  first chunk when streaming) and the headers ``X-PPDPP-Strategy`` / ``X-PPDPP-Probability``.
- ``POST /v1/ppdpp/dialogue_end``: ``{"messages", "outcome", "dialogue_id", "case"}`` runs the
  ``dialogue_end`` hooks. ``GET /v1/models`` lists the one model served. ``GET /health`` needs no token.

Errors are OpenAI-style JSON (``{"error": {"message", "type", "param", "code"}}``): 400 for bad requests,
401 without the bearer token (compared in constant time, never logged), 404/405 for unknown routes and
methods, 502 when the upstream fails (504 when it times out); the server keeps serving.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import quote

from aiohttp import web

from ppdpp.planner.core.types import AgentReply
from ppdpp.planner.serving.agent import ConversationError, PlannedAgent, PreparedTurn, split_conversation
from ppdpp.planner.core.domain import Case, DomainError
from ppdpp.planner.core.plan import Plan

TOKEN_ENV = "PPDPP_PROXY_TOKEN"
MAX_N = 16
UNSUPPORTED_FIELDS = ("tools", "tool_choice", "functions", "function_call", "audio", "modalities")
log = logging.getLogger("ppdpp.proxy")


class ProxyError(Exception):
    """A request the proxy refuses, with the HTTP status and OpenAI-style error fields."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code


def error_response(error: ProxyError, headers: Mapping[str, str] | None = None) -> web.Response:
    body = {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}
    return web.json_response(body, status=error.status, headers=headers)


# ---- reading a request ---------------------------------------------------------------------------------
@dataclass
class ChatRequest:
    """A validated ``/v1/chat/completions`` request."""

    messages: list[Any]
    n: int = 1
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False
    case: Case | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, "stop": self.stop, "seed": self.seed}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(body: Mapping[str, Any], key: str, low: float, high: float | None) -> Any:
    value = body.get(key)
    if value is None:
        return None
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or value < low or (high is not None and value > high):
        raise ProxyError(400, f"{key} must be a number between {low} and {high}" if high is not None
                         else f"{key} must be a number of at least {low}", param=key)
    return value


def _integer(body: Mapping[str, Any], key: str, low: int, high: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not _is_int(value) or value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"of at least {low}"
        raise ProxyError(400, f"{key} must be an integer {bounds}", param=key)
    return value


def _case(extension: Mapping[str, Any]) -> Case | None:
    raw = extension.get("case")
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not isinstance(raw.get("fields"), Mapping):
        raise ProxyError(400, 'ppdpp.case must be an object {"id": ..., "fields": {...}}', param="ppdpp.case")
    return Case(str(raw.get("id", "client")), dict(raw["fields"]))


def _case_and_context(extension: Any, user: Any = None) -> tuple[Case | None, dict[str, Any]]:
    """The case and the hook context from a request's ``ppdpp`` object (and OpenAI's ``user`` field)."""
    extension = extension or {}
    if not isinstance(extension, Mapping):
        raise ProxyError(400, "ppdpp must be an object", param="ppdpp")
    context: dict[str, Any] = {"source": "proxy"}
    if extension.get("dialogue_id") is not None:
        context["dialogue_id"] = str(extension["dialogue_id"])
    if isinstance(user, str):
        context["user"] = user
    return _case(extension), context


def _messages(body: Mapping[str, Any]) -> list[Any]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ProxyError(400, "messages must be a non-empty list of chat messages", param="messages")
    try:
        split_conversation(messages)
    except ConversationError as exc:
        raise ProxyError(400, str(exc), param="messages") from None
    return messages


def parse_chat_request(body: Any) -> ChatRequest:
    """Validate a chat-completions body; a :class:`ProxyError` (400) names the offending field."""
    if not isinstance(body, dict):
        raise ProxyError(400, "the request body must be a JSON object")
    for key in UNSUPPORTED_FIELDS:
        if body.get(key):
            raise ProxyError(400, f"{key} is not supported by the ppdpp planning proxy", param=key)
    response_format = body.get("response_format")
    if response_format is not None and (not isinstance(response_format, Mapping)
                                        or response_format.get("type") != "text"):
        raise ProxyError(400, "only response_format {\"type\": \"text\"} is supported", param="response_format")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 4):
        raise ProxyError(400, "stop must be a string or a list of at most 4 strings", param="stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ProxyError(400, "stream must be true or false", param="stream")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, Mapping):
        raise ProxyError(400, "stream_options must be an object", param="stream_options")
    n = _integer(body, "n", 1, MAX_N) or 1
    if stream and n > 1:
        raise ProxyError(400, "n > 1 is not supported with stream", param="n")
    max_tokens = _integer(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1)
    case, context = _case_and_context(body.get("ppdpp"), body.get("user"))
    return ChatRequest(
        messages=_messages(body), n=n, temperature=_number(body, "temperature", 0.0, 2.0), max_tokens=max_tokens,
        stop=stop, seed=_integer(body, "seed", -(2**63)), stream=stream,
        include_usage=bool(stream_options.get("include_usage")), case=case, context=context,
    )


async def _json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProxyError(400, f"the request body is not valid JSON ({exc})") from None


# ---- writing a response --------------------------------------------------------------------------------
def plan_json(domain: str, plan: Plan) -> dict[str, Any]:
    """The ``ppdpp`` field of a response."""
    return {"domain": domain, "strategy": plan.strategy, "instruction": plan.instruction,
            "probability": plan.probability, "distribution": plan.distribution}


def plan_headers(plan: Plan) -> dict[str, str]:
    """``X-PPDPP-Strategy`` (percent-encoded where not plain ASCII) and ``X-PPDPP-Probability``."""
    strategy = "" if plan.strategy is None else quote(plan.strategy, safe=" !#$&'()*+,-./:;=?@[]^_`{|}~")
    return {"X-PPDPP-Strategy": strategy, "X-PPDPP-Probability": f"{plan.probability:.6f}"}


def _usage_json(reply: AgentReply) -> dict[str, int]:
    u = reply.usage
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens}


# ---- the application -----------------------------------------------------------------------------------
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes an OpenAI-style JSON error; the server keeps running."""
    try:
        return await handler(request)
    except ProxyError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        kind = "not_found" if exc.status == 404 else "invalid_request_error"
        message = f"{request.method} {request.path}: {exc.reason}"
        return error_response(ProxyError(exc.status, message, type_=kind), headers)
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response(ProxyError(500, "internal error in the ppdpp proxy (see its log)", type_="server_error"))


def _auth(token: str | None) -> Callable[..., Awaitable[web.StreamResponse]]:
    expected = token.encode("utf-8") if token else None

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is None or request.path == "/health":
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("utf-8"), expected):
            raise ProxyError(401, "missing or invalid bearer token (Authorization: Bearer <token>)",
                             type_="authentication_error", code="invalid_api_key")
        return await handler(request)

    return check


class ProxyHandlers:
    """The route handlers, around one agent."""

    def __init__(self, agent: PlannedAgent, model_name: str, upstream_timeout: float | None) -> None:
        self.agent = agent
        self.model_name = model_name
        self.upstream_timeout = upstream_timeout
        self.created = int(time.time())

    def _upstream_error(self, exc: BaseException) -> ProxyError:
        if isinstance(exc, asyncio.TimeoutError):
            log.warning("upstream %s timed out", self.agent.model)
            return ProxyError(504, f"the upstream model {self.agent.model!r} did not answer in time",
                              type_="upstream_error", code="upstream_timeout")
        log.warning("upstream %s failed: %s: %s", self.agent.model, type(exc).__name__, exc)
        return ProxyError(502, f"the upstream model {self.agent.model!r} failed: {type(exc).__name__}: {exc}",
                          type_="upstream_error", code="upstream_failed")

    async def _prepare(self, req: ChatRequest) -> PreparedTurn:
        try:
            return await self.agent.prepare(req.messages, req.case, context=req.context)
        except (ConversationError, DomainError) as exc:
            raise ProxyError(400, str(exc), param="messages") from None
        except KeyError as exc:
            if req.case is None:
                raise
            raise ProxyError(400, f"ppdpp.case.fields lacks {exc.args[0]!r}, which domain "
                             f"{self.agent.domain.name!r} needs", param="ppdpp.case") from None

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "domain": self.agent.domain.name, "model": self.model_name})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.model_name, "object": "model", "created": self.created, "owned_by": "ppdpp"}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        req = parse_chat_request(await _json_body(request))
        prepared = await self._prepare(req)
        if req.stream:
            return await self._stream(request, req, prepared)
        options = self.agent.call_options(**req.options())
        try:
            completion = await asyncio.wait_for(self.agent.llm.complete(prepared.messages, n=req.n, **options),
                                                self.upstream_timeout)
        except Exception as exc:  # any upstream failure: 502/504, never a crash
            raise self._upstream_error(exc) from None
        reply = self.agent.finish(prepared, list(completion.texts), completion.usage)
        body = {
            "id": f"chatcmpl-ppdpp-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model_name,
            "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": completion.finish_reason(i)} for i, text in enumerate(reply.texts)],
            "usage": _usage_json(reply),
            "ppdpp": plan_json(self.agent.domain.name, reply.plan),
        }
        log.info("planned %s (p=%.3f) for a %d-turn conversation", reply.strategy, reply.probability,
                 len(prepared.conversation))
        return web.json_response(body, headers=plan_headers(reply.plan))

    async def _stream(self, request: web.Request, req: ChatRequest, prepared: PreparedTurn) -> web.StreamResponse:
        chunk_id, created = f"chatcmpl-ppdpp-{uuid.uuid4().hex}", int(time.time())
        pieces = self.agent.pieces(prepared.messages, self.agent.call_options(**req.options())).__aiter__()
        try:  # the first piece before any byte is sent, so that a failing upstream still gets a 502
            first = await asyncio.wait_for(pieces.__anext__(), self.upstream_timeout)
        except StopAsyncIteration:
            first = ""
        except Exception as exc:
            raise self._upstream_error(exc) from None

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            body = {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": self.model_name,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode("utf-8")

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               **plan_headers(prepared.plan)})
        await response.prepare(request)
        await response.write(chunk({"role": "assistant", "content": ""},
                                   ppdpp=plan_json(self.agent.domain.name, prepared.plan)))
        parts = [first]
        if first:
            await response.write(chunk({"content": first}))
        try:
            while True:
                piece = await asyncio.wait_for(pieces.__anext__(), self.upstream_timeout)
                parts.append(piece)
                if piece:
                    await response.write(chunk({"content": piece}))
        except StopAsyncIteration:
            pass
        except Exception as exc:  # headers are gone: report in the stream, as OpenAI does, and end it
            error = self._upstream_error(exc)
            body = {"error": {"message": error.message, "type": error.type, "code": error.code}}
            await response.write(f"data: {json.dumps(body)}\n\n".encode("utf-8"))
            await response.write_eof()
            return response
        reply = self.agent.finish(prepared, ["".join(parts)])
        await response.write(chunk({}, "stop"))
        if req.include_usage:
            body = {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": self.model_name,
                    "choices": [], "usage": _usage_json(reply)}
            await response.write(f"data: {json.dumps(body)}\n\n".encode("utf-8"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def dialogue_end(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise ProxyError(400, "the request body must be a JSON object")
        messages = _messages(body)
        outcome = body.get("outcome") or {}
        if not isinstance(outcome, Mapping):
            raise ProxyError(400, "outcome must be an object", param="outcome")
        case, context = _case_and_context(body)
        self.agent.end_dialogue(messages, case, dict(outcome), context)
        return web.json_response({"ok": True})


def create_app(agent: PlannedAgent, *, token: str | None = None, model_name: str | None = None,
               upstream_timeout: float | None = 120.0) -> web.Application:
    """The proxy as an aiohttp application. ``model_name`` is the id clients see (default: the upstream's);
    ``token`` turns on bearer-token checks; ``upstream_timeout`` (seconds, ``None`` = none) bounds each
    upstream call (and each streamed piece)."""
    handlers = ProxyHandlers(agent, model_name or agent.model or "ppdpp", upstream_timeout)
    app = web.Application(middlewares=[_errors, _auth(token)])
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
