"""The OpenAI chat protocol both servers speak (``ppdpp serve`` and ``ppdpp serve-llm``): one request parser,
one error format, one set of limits, the bearer-token check, the JSON and server-sent-event bodies.

Errors are OpenAI-style JSON, ``{"error": {"message", "type", "param", "code"}}``, with ``param`` naming the
offending field: 400 for a bad request or one over the :class:`ServerLimits`, 401 without the bearer token,
404/405 for unknown routes and methods, 413 for a body over ``max_body_bytes``, 429 (with ``Retry-After``) while
``max_queue`` requests are already admitted, 502 when the upstream model fails, 504 when it or the whole request
times out, 500 for a bug (the traceback goes to the server's log).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Sequence

from aiohttp import web

from ppdpp.planner.core.bounds import check_fields
from ppdpp.planner.core.domain import Message
from ppdpp.planner.core.types import Usage
from ppdpp.planner.llm.base import ChatBackend, ChatStream, Completion, LLMError
from ppdpp.planner.serving.agent import ConversationError, message_text
from ppdpp.planner.serving.metrics import METRICS, ServerMetrics, attach_metrics

UNSUPPORTED_FIELDS = ("tools", "tool_choice", "functions", "function_call", "audio", "modalities")
MAX_STOP = 4
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ServerLimits:
    """What one request may ask for and how much work a server takes on at once; docs/serving.md#limits has the
    table and why each default suits a 2-core, 24 GB machine serving a small local model.

    - ``max_body_bytes``: a longer body gets 413.
    - ``max_n``, ``max_tokens``: a larger ``n`` / ``max_tokens`` gets 400 (``param`` names the field).
    - ``max_prompt_tokens``: a longer prompt gets 400 (``param: "messages"``, ``code: context_length_exceeded``)
      before any model work; counted by the backend's tokenizer where it has one (:func:`count_prompt_tokens`).
    - ``max_queue``: requests admitted at once (being answered or waiting for the model); while that many are,
      the next POST gets 429 at once, with ``Retry-After: retry_after_s``. ``/health`` is never refused.
    - ``request_timeout_s``: seconds one request may take (``None``: no limit); past it the model call is
      cancelled and the client gets 504 (``code: request_timeout``).
    """

    max_body_bytes: int = field(default=1024 * 1024, metadata={
        "min": 1, "option": "--limit-body-bytes", "help": "Largest request body in bytes (a larger one gets 413)."})
    max_n: int = field(default=16, metadata={
        "min": 1, "option": "--limit-n", "help": "Largest n a request may ask for (else 400)."})
    max_tokens: int = field(default=4096, metadata={
        "min": 1, "option": "--limit-max-tokens", "help": "Largest max_tokens a request may ask for (else 400)."})
    max_prompt_tokens: int = field(default=4096, metadata={
        "min": 1, "option": "--limit-prompt-tokens",
        "help": "Longest prompt in tokens, counted by a local model's tokenizer, else estimated (else 400, param "
                "messages)."})
    max_queue: int = field(default=64, metadata={
        "min": 1, "option": "--limit-queue",
        "help": "Requests admitted at once, answered or waiting (one more gets 429)."})
    retry_after_s: int = field(default=2, metadata={
        "min": 1, "option": "--retry-after", "help": "Seconds a refused (429) client is told to wait, in Retry-After."})
    request_timeout_s: float | None = field(default=180.0, metadata={
        "min": 0, "lt": float("inf"), "option": "--request-timeout",
        "help": "Seconds one request may take; past it the model call is cancelled and the client gets 504 "
                "(0 or none = no limit)."})

    def __post_init__(self) -> None:
        check_fields(self)
        if self.request_timeout_s == 0:
            object.__setattr__(self, "request_timeout_s", None)  # 0 = no limit, as None


LIMITS = web.AppKey("limits", ServerLimits)
_TIMEOUT = web.RequestKey("request_timeout", asyncio.Timeout)


class APIError(Exception):
    """A request refused or failed, with the HTTP status and the OpenAI-style error fields."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def error_response(error: APIError, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(error.body(), status=error.status, headers={**error.headers, **(headers or {})})


def request_timeout_error(limits: ServerLimits) -> APIError:
    """The 504 of a request that took longer than ``limits.request_timeout_s``."""
    return APIError(504, f"the request took longer than this server's limit of {limits.request_timeout_s:g} s "
                    "(--request-timeout); the model call was cancelled", type_="timeout_error",
                    code="request_timeout")


def backend_error(exc: BaseException, model: str, log: logging.Logger) -> APIError:
    """What a client hears when the model call failed: 504 for a timeout, 502 for an upstream failure
    (:class:`LLMError`, a dropped connection), 500 for anything else (a bug in the backend, e.g. a
    ``TypeError``: logged with its traceback)."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        log.warning("model %s timed out", model)
        return APIError(504, f"the model {model!r} did not answer in time", type_="upstream_error",
                        code="upstream_timeout")
    if isinstance(exc, (LLMError, ConnectionError)):
        log.warning("model %s failed: %s: %s", model, type(exc).__name__, exc)
        return APIError(502, f"the upstream model {model!r} failed: {type(exc).__name__}: {exc}",
                        type_="upstream_error", code="upstream_failed")
    log.error("bug in the backend of %s", model, exc_info=exc)
    return APIError(500, f"internal error in the backend of {model!r}: {type(exc).__name__}: {str(exc)[:300]}",
                    type_="server_error", code="backend_error")


# ---- reading a request ---------------------------------------------------------------------------------
@dataclass
class ChatRequest:
    """A validated ``/v1/chat/completions`` request. ``messages`` are the client's, as sent (each an object
    with a string ``role`` and text content); ``None`` fields were not set."""

    messages: list[dict[str, Any]]
    n: int = 1
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False

    def options(self) -> dict[str, Any]:
        """The sampling keyword arguments of a backend call (``None`` where the request set none)."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, "stop": self.stop, "seed": self.seed}

    def texts(self) -> list[dict[str, str]]:
        """The messages as ``{"role", "content"}`` with plain-text content, as backends take them."""
        return [{"role": m["role"], "content": message_text(m, i)} for i, m in enumerate(self.messages)]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(body: Mapping[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise APIError(400, f"{key} must be a number between {low} and {high}", param=key)
    return float(value)


def _integer(body: Mapping[str, Any], key: str, low: int, high: int | None = None, why: str = "") -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not _is_int(value) or value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"of at least {low}"
        raise APIError(400, f"{key} must be an integer {bounds}{why}, got {value!r}", param=key)
    return value


def _messages(body: Mapping[str, Any], roles: Sequence[str]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "messages must be a non-empty list of chat messages", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in roles:
            raise APIError(400, f"messages[{i}] must be an object with a role in {list(roles)}", param="messages")
        try:
            message_text(message, i)
        except ConversationError as exc:
            raise APIError(400, str(exc), param="messages") from None
    return messages


def _stop(body: Mapping[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)
                             or len(stop) > MAX_STOP):
        raise APIError(400, f"stop must be a string or a list of at most {MAX_STOP} strings", param="stop")
    return stop


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    for key in UNSUPPORTED_FIELDS:
        if body.get(key):
            raise APIError(400, f"{key} is not supported by this server", param=key)
    response_format = body.get("response_format")
    if response_format is not None and (not isinstance(response_format, Mapping)
                                        or response_format.get("type") != "text"):
        raise APIError(400, 'only response_format {"type": "text"} is supported', param="response_format")


def parse_chat_request(body: Any, limits: ServerLimits, roles: Sequence[str]) -> ChatRequest:
    """Validate a chat-completions body against ``limits``; an :class:`APIError` (400) names the field.
    ``roles`` are the message roles this server takes."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    _refuse_unsupported(body)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(400, "stream must be true or false", param="stream")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, Mapping):
        raise APIError(400, "stream_options must be an object", param="stream_options")
    n = _integer(body, "n", 1, limits.max_n, " (this server's limit)") or 1
    if stream and n > 1:
        raise APIError(400, "n > 1 is not supported with stream", param="n")
    max_tokens = None
    for key in ("max_completion_tokens", "max_tokens"):
        max_tokens = _integer(body, key, 1, limits.max_tokens, " (this server's limit)")
        if max_tokens is not None:
            break
    return ChatRequest(
        messages=_messages(body, roles), n=n, temperature=_number(body, "temperature", 0.0, 2.0),
        max_tokens=max_tokens, stop=_stop(body), seed=_integer(body, "seed", -(2**63), 2**63 - 1), stream=stream,
        include_usage=bool(stream_options.get("include_usage")),
    )


async def read_json(request: web.Request) -> Any:
    """The request body as JSON (a 413 past the server's body limit, a 400 when it is not JSON, is not UTF-8,
    nests too deep or holds an integer too long for Python to read)."""
    try:
        return json.loads(await request.text())
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise APIError(400, f"the request body is not valid JSON ({type(exc).__name__}: {str(exc)[:200]})") from None


# ---- prompt tokens -------------------------------------------------------------------------------------
ESTIMATE_BYTES_PER_TOKEN = 3  # ordinary text runs ~4 UTF-8 bytes a token (CJK ~3): this over-counts it
ESTIMATE_TOKENS_PER_MESSAGE = 4  # a chat template's role markers


def estimate_prompt_tokens(messages: Sequence[Mapping[str, str]]) -> int:
    """The prompt tokens of ``messages`` for a backend without a tokenizer here (an API): one token per
    ``ESTIMATE_BYTES_PER_TOKEN`` UTF-8 bytes of text, plus ``ESTIMATE_TOKENS_PER_MESSAGE`` a message. It
    over-counts ordinary prose; text that tokenizes densely (long digit strings, random characters) can be
    under-counted, by at most ``ESTIMATE_BYTES_PER_TOKEN`` times."""
    size = sum(len(m["content"].encode("utf-8")) for m in messages)
    return -(-size // ESTIMATE_BYTES_PER_TOKEN) + ESTIMATE_TOKENS_PER_MESSAGE * len(messages)


async def count_prompt_tokens(backend: ChatBackend, messages: Sequence[Message]) -> tuple[int, str]:
    """The prompt tokens of ``messages`` and how they were counted: the backend's own count where it has one
    (``ChatBackend.count_prompt_tokens``: a local model's chat template and tokenizer), else
    :func:`estimate_prompt_tokens`."""
    return await backend.count_prompt_tokens(messages) or (estimate_prompt_tokens(messages), "estimated")


async def check_prompt_tokens(backend: ChatBackend, messages: Sequence[Message],
                              limits: ServerLimits) -> None:
    """A 400 (``param: "messages"``) when ``messages`` are over ``limits.max_prompt_tokens``."""
    tokens, how = await count_prompt_tokens(backend, messages)
    if tokens > limits.max_prompt_tokens:
        raise APIError(400, f"the prompt has {tokens} tokens ({how}), over this server's limit of "
                       f"{limits.max_prompt_tokens} (--limit-prompt-tokens)", param="messages",
                       code="context_length_exceeded")


# ---- writing a response --------------------------------------------------------------------------------
def usage_json(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens}


def completion_json(model: str, completion: Completion, texts: Sequence[str] | None = None) -> dict[str, Any]:
    """A ``chat.completion`` body for ``completion`` (its texts, or ``texts`` where they were post-processed)."""
    texts = completion.texts if texts is None else texts
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "logprobs": None,
                     "finish_reason": completion.finish_reason(i)} for i, text in enumerate(texts)],
        "usage": usage_json(completion.usage),
    }


def models_json(model: str, created: int) -> dict[str, Any]:
    """The ``/v1/models`` body of a server with one model."""
    return {"object": "list", "data": [{"id": model, "object": "model", "created": created, "owned_by": "ppdpp"}]}


def sse(body: Any) -> bytes:
    """One server-sent event: ``data: <json>``."""
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode("utf-8")


class ChunkWriter:
    """The ``chat.completion.chunk`` events of one streamed reply (one id and creation time)."""

    def __init__(self, model: str) -> None:
        self.id, self.created, self.model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model

    def _base(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        return sse({**self._base(), "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                  "finish_reason": finish}], **extra})

    def usage(self, usage: Usage) -> bytes:
        return sse({**self._base(), "choices": [], "usage": usage_json(usage)})


async def stream_response(request: web.Request, stream: ChatStream, *, model: str, include_usage: bool,
                          fail: Callable[[BaseException], APIError], timeout: float | None = None,
                          headers: Mapping[str, str] | None = None, first: Mapping[str, Any] | None = None,
                          done: Callable[[Completion], None] | None = None) -> web.StreamResponse:
    """Answer ``request`` with ``stream`` as server-sent events, each piece as it comes. The first piece is
    awaited before any byte is sent, so a failing model still gets a proper error status (``fail`` maps the
    exception); a later failure ends the stream with a ``data: {"error": ...}`` event. ``first``: extra fields
    of the first chunk; ``done(completion)`` runs once the reply is whole; ``timeout``: seconds per piece. The
    request's timeout (``request_timeout_s``) still holds once the headers are sent: past it the stream ends
    with the 504's error event."""
    pieces = stream.__aiter__()
    try:
        try:
            piece: str | None = await asyncio.wait_for(anext(pieces, None), timeout)
        except Exception as exc:  # noqa: BLE001 - mapped to an HTTP error by the caller's ``fail``
            raise fail(exc) from None
        events = ChunkWriter(model)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               **(headers or {})})
        scope = request.get(_TIMEOUT)
        deadline = scope.when() if scope is not None else None
        if scope is not None:  # from here on a timeout must end the stream, not cancel the handler mid-write
            scope.reschedule(None)
        loop = asyncio.get_running_loop()
        await response.prepare(request)
        await response.write(events.chunk({"role": "assistant", "content": ""}, **(first or {})))
        try:
            while piece is not None:
                if piece:
                    await response.write(events.chunk({"content": piece}))
                left = None if deadline is None else max(deadline - loop.time(), 0.0)
                try:
                    piece = await asyncio.wait_for(anext(pieces, None), _shorter(timeout, left))
                except TimeoutError:
                    if deadline is None or loop.time() < deadline:
                        raise
                    await response.write(sse(request_timeout_error(request.app[LIMITS]).body()))
                    await response.write_eof()
                    return response
        except ConnectionError:  # the client went away
            raise
        except Exception as exc:  # noqa: BLE001 - the headers are gone: report in the stream, as OpenAI does
            await response.write(sse(fail(exc).body()))
            await response.write_eof()
            return response
        completion = stream.completion or Completion([""])
        if done is not None:
            done(completion)
        await response.write(events.chunk({}, completion.finish_reason()))
        if include_usage:
            await response.write(events.usage(completion.usage))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
    finally:
        await stream.aclose()


def _shorter(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


# ---- the application -----------------------------------------------------------------------------------
def _errors(log: logging.Logger, server: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every failure becomes an OpenAI-style JSON error; the server keeps running."""
        try:
            return await handler(request)
        except APIError as exc:
            return error_response(exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            kind = "not_found" if exc.status == 404 else "invalid_request_error"
            message = f"{request.method} {request.path}: {exc.reason}"
            if exc.status == 413:
                message = f"the request body is over this server's limit of {request.app[LIMITS].max_body_bytes} bytes"
            return error_response(APIError(exc.status, message, type_=kind), headers)
        except Exception:
            log.exception("internal error on %s %s", request.method, request.path)
            return error_response(APIError(500, f"internal error in {server} (see its log)", type_="server_error"))

    return errors


def _auth(token: str | None, open_paths: Sequence[str]) -> Callable[..., Awaitable[web.StreamResponse]]:
    expected = token.encode("utf-8") if token else None

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        """``Authorization: Bearer <token>``, compared in constant time, on every path but ``open_paths``."""
        if expected is None or request.path in open_paths:
            return await handler(request)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("utf-8"), expected):
            raise APIError(401, "missing or invalid bearer token (Authorization: Bearer <token>)",
                           type_="authentication_error", code="invalid_api_key")
        return await handler(request)

    return check


def _admission(limits: ServerLimits, log: logging.Logger,
               metrics: ServerMetrics) -> Callable[..., Awaitable[web.StreamResponse]]:
    admitted = 0

    @web.middleware
    async def admit(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every POST (the requests that do work) is admitted while fewer than ``max_queue`` are, else refused
        with 429 at once, and runs under ``request_timeout_s``; GETs (``/health``, ``/v1/models``) always run."""
        nonlocal admitted
        if request.method != "POST":
            return await handler(request)
        if admitted >= limits.max_queue:
            log.info("shedding %s %s: %d requests admitted", request.method, request.path, admitted)
            raise APIError(429, f"this server is busy: {limits.max_queue} requests are being answered or waiting "
                           f"(--limit-queue); retry after {limits.retry_after_s} s", type_="rate_limit_error",
                           code="server_busy", headers={"Retry-After": str(limits.retry_after_s)})
        admitted += 1
        metrics.queue(admitted)
        scope = request[_TIMEOUT] = asyncio.timeout(limits.request_timeout_s)
        try:
            async with scope:
                return await handler(request)
        except TimeoutError:
            if not scope.expired():
                raise
            log.warning("%s %s took longer than %s s: cancelled", request.method, request.path,
                        limits.request_timeout_s)
            raise request_timeout_error(limits) from None
        finally:
            admitted -= 1
            metrics.queue(admitted)

    return admit


def openai_app(*, limits: ServerLimits, token: str | None, log: logging.Logger, server: str,
               metrics_name: str) -> web.Application:
    """An application with the protocol's error format, body limit, bearer-token check (``/health`` is open),
    admission (``max_queue``, 429), request timeout and Prometheus metrics (``GET /metrics``, every series
    labelled ``server=metrics_name``; :func:`server_metrics` gives them to the handlers); the caller adds its
    routes. ``server`` names it in 500 messages."""
    app = web.Application(client_max_size=limits.max_body_bytes)
    metrics = attach_metrics(app, metrics_name)
    app.middlewares.extend([_errors(log, server), _auth(token, ("/health",)), _admission(limits, log, metrics)])
    app[LIMITS] = limits
    return app


def server_metrics(request: web.Request) -> ServerMetrics:
    """The metrics of the server answering ``request``."""
    return request.app[METRICS]


def exposure_warning(host: str, token: str | None, token_env: str) -> str | None:
    """A warning for a server bound off loopback (``None`` on 127.0.0.1/::1/localhost). Never holds the token."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return None
    if not token:
        return (f"serving on {host} without a token: anyone who reaches this port can use the model; "
                f"set --token or ${token_env}")
    return (f"serving on {host}: other machines can reach this port; the bearer token travels in plain HTTP, "
            f"so put TLS (a reverse proxy) in front on an untrusted network")
