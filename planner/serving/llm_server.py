"""Any ChatBackend as an OpenAI-compatible HTTP server (aiohttp): ``POST /v1/chat/completions``, ``GET /v1/models``.

Concurrent requests share the one backend, so with a local model they are micro-batched together. Bad requests
get OpenAI-style JSON errors with a 4xx status; backend failures a 5xx. Streaming is not offered.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ppdpp.planner.llm.base import ChatBackend, LLMError
from ppdpp.planner.llm.sampling import check_sampling

_BACKEND = web.AppKey("backend", ChatBackend)
_NAME = web.AppKey("served_name", str)
_ROLES = {"system", "user", "assistant", "developer", "tool"}


class BadRequest(ValueError):
    """A request the server refuses; ``param`` names the offending field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _error(status: int, message: str, kind: str, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return web.json_response(body, status=status)


def _content_text(content: Any, index: int) -> str:
    """A message's text: a string, or OpenAI's list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    raise BadRequest(f"messages[{index}].content must be a string or a list of text parts", f"messages[{index}]")


def parse_request(body: Any) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The messages and the ``complete`` keyword arguments of a chat-completions request body."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list", "messages")
    parsed = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise BadRequest(f"messages[{i}] must be an object with a role in {sorted(_ROLES)}", f"messages[{i}]")
        parsed.append({"role": message["role"], "content": _content_text(message.get("content"), i)})
    if body.get("stream"):
        raise BadRequest("stream=true is not supported by this server", "stream")
    n = body.get("n", 1)
    temperature = body.get("temperature", 1.0)
    temperature = 1.0 if temperature is None else temperature
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens")) or 256
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise BadRequest("stop must be a string or a list of strings", "stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadRequest("seed must be an integer", "seed")
    try:
        check_sampling(n, temperature, max_tokens)
    except ValueError as exc:
        raise BadRequest(str(exc), str(exc).split()[0]) from None
    return parsed, dict(n=n, temperature=float(temperature), max_tokens=max_tokens, stop=stop, seed=seed)


async def _chat_completions(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the request body is not valid JSON", "invalid_request_error")
    try:
        messages, kwargs = parse_request(body)
    except BadRequest as exc:
        return _error(400, str(exc), "invalid_request_error", exc.param)
    backend = request.app[_BACKEND]
    try:
        completion = await backend.complete(messages, **kwargs)
    except ValueError as exc:
        return _error(400, str(exc), "invalid_request_error")
    except LLMError as exc:
        return _error(502, str(exc), "server_error")
    usage = completion.usage
    return web.json_response({
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.app[_NAME],
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": text},
             "finish_reason": completion.finish_reason(i), "logprobs": None}
            for i, text in enumerate(completion.texts)
        ],
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        },
    })


async def _models(request: web.Request) -> web.Response:
    name = request.app[_NAME]
    return web.json_response(
        {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "ppdpp"}]}
    )


def make_app(backend: ChatBackend, served_name: str | None = None) -> web.Application:
    """The aiohttp application serving ``backend`` (any model name in requests is accepted)."""
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[_BACKEND] = backend
    app[_NAME] = served_name or backend.model
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_get("/v1/models", _models)
    return app


@dataclass
class LLMServer:
    """A running server: ``url`` is the OpenAI ``base_url`` (``http://host:port/v1``)."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_llm_server(backend: ChatBackend, *, host: str = "127.0.0.1", port: int = 0,
                           served_name: str | None = None) -> LLMServer:
    """Start serving ``backend`` on the running event loop; ``port=0`` picks a free port (see ``.port``)."""
    runner = web.AppRunner(make_app(backend, served_name), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return LLMServer(runner, host, runner.addresses[0][1])


class ThreadedLLMServer:
    """A server on its own event loop in a daemon thread (for tests, notebooks and sync code)."""

    def __init__(self, backend: ChatBackend, *, host: str = "127.0.0.1", port: int = 0,
                 served_name: str | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ppdpp-llm-server", daemon=True)
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            start_llm_server(backend, host=host, port=port, served_name=served_name), self._loop
        )
        self.server = future.result()
        self.port = self.server.port
        self.url = self.server.url

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> "ThreadedLLMServer":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def serve_llm_in_thread(backend: ChatBackend, *, host: str = "127.0.0.1", port: int = 0,
                        served_name: str | None = None) -> ThreadedLLMServer:
    """Serve ``backend`` from a background thread; returns at once with ``.port`` and ``.url`` set."""
    return ThreadedLLMServer(backend, host=host, port=port, served_name=served_name)


async def serve_forever(backend: ChatBackend, *, host: str, port: int, on_ready: Any = None) -> None:
    """Serve until cancelled (Ctrl-C); ``on_ready(server)`` is called once it listens."""
    server = await start_llm_server(backend, host=host, port=port)
    if on_ready is not None:
        on_ready(server)
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()
        await backend.aclose()
