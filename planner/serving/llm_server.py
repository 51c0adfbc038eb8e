"""Any ChatBackend as an OpenAI-compatible HTTP server (aiohttp): ``POST /v1/chat/completions``, ``GET /v1/models``,
``GET /health``.

Concurrent requests share the one backend, so with a local model they are micro-batched together. Requests
are read by :mod:`.openai_protocol` (the parser, limits, errors and bearer-token check ``ppdpp serve`` uses
too); ``stream: true`` is answered with server-sent events, each piece as the backend generates it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ppdpp.planner.llm.base import ChatBackend
from ppdpp.planner.serving.openai_protocol import (
    LIMITS, ServerLimits, backend_error, check_prompt_tokens, completion_json, models_json, openai_app,
    parse_chat_request, read_json, server_metrics, stream_response,
)

TOKEN_ENV = "PPDPP_LLM_SERVER_TOKEN"
ROLES = ("system", "user", "assistant", "developer", "tool")
DEFAULT_MAX_TOKENS = 256
log = logging.getLogger("ppdpp.llm_server")
_BACKEND = web.AppKey("backend", ChatBackend)
_NAME = web.AppKey("served_name", str)


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    limits = request.app[LIMITS]
    req = parse_chat_request(await read_json(request), limits, ROLES)
    backend, name = request.app[_BACKEND], request.app[_NAME]
    await check_prompt_tokens(backend, req.texts(), limits)
    options: dict[str, Any] = {"temperature": 1.0 if req.temperature is None else req.temperature, "stop": req.stop,
               "max_tokens": req.max_tokens or DEFAULT_MAX_TOKENS, "seed": req.seed}
    metrics = server_metrics(request)
    if req.stream:
        return await stream_response(request, backend.stream(req.texts(), **options), model=name,
                                     include_usage=req.include_usage, fail=lambda exc: backend_error(exc, name, log),
                                     done=lambda completion: metrics.usage(completion.usage))
    try:
        with metrics.upstream_timer():
            completion = await backend.complete(req.texts(), n=req.n, **options)
    except Exception as exc:  # noqa: BLE001 - 502 for the model's failure, 500 for a bug
        raise backend_error(exc, name, log) from None
    metrics.usage(completion.usage)
    return web.json_response(completion_json(name, completion))


async def _models(request: web.Request) -> web.Response:
    return web.json_response(models_json(request.app[_NAME], 0))


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "model": request.app[_NAME]})


def make_app(backend: ChatBackend, served_name: str | None = None, *, token: str | None = None,
             limits: ServerLimits | None = None) -> web.Application:
    """The aiohttp application serving ``backend`` (any model name in requests is accepted). ``token`` turns
    on bearer-token checks; ``limits`` caps the body, ``n``, ``max_tokens``, the prompt's tokens, the requests
    admitted at once and each request's time."""
    app = openai_app(limits=limits or ServerLimits(), token=token, log=log, server="ppdpp serve-llm",
                     metrics_name="serve-llm")
    app[_BACKEND] = backend
    app[_NAME] = served_name or backend.model
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/health", _health)
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
                           served_name: str | None = None, token: str | None = None,
                           limits: ServerLimits | None = None) -> LLMServer:
    """Start serving ``backend`` on the running event loop; ``port=0`` picks a free port (see ``.port``)."""
    runner = web.AppRunner(make_app(backend, served_name, token=token, limits=limits), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return LLMServer(runner, host, runner.addresses[0][1])


class ThreadedLLMServer:
    """A server on its own event loop in a daemon thread (for tests, notebooks and sync code)."""

    def __init__(self, backend: ChatBackend, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ppdpp-llm-server", daemon=True)
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(start_llm_server(backend, **options), self._loop)
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
                        served_name: str | None = None, token: str | None = None,
                        limits: ServerLimits | None = None) -> ThreadedLLMServer:
    """Serve ``backend`` from a background thread; returns at once with ``.port`` and ``.url`` set."""
    return ThreadedLLMServer(backend, host=host, port=port, served_name=served_name, token=token, limits=limits)


async def serve_forever(backend: ChatBackend, *, host: str, port: int, on_ready: Any = None,
                        token: str | None = None, limits: ServerLimits | None = None) -> None:
    """Serve until cancelled (Ctrl-C); ``on_ready(server)`` is called once it listens."""
    server = await start_llm_server(backend, host=host, port=port, token=token, limits=limits)
    if on_ready is not None:
        on_ready(server)
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()
        await backend.aclose()
