"""Assertions and wrappers shared by several test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import dataclasses
import typing
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Literal

from aiohttp import web

from ppdpp.planner.llm import ChatBackend


def assert_alternates(messages: list[dict[str, str]]) -> None:
    """A chat prompt: the system prompt, then user/assistant turns alternating, ending on a user turn."""
    roles = [m["role"] for m in messages]
    assert roles[0] == "system", f"first message must be the system prompt: {roles}"
    expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(roles) - 1)]
    assert roles[1:] == expected, f"roles do not alternate user/assistant: {roles}"
    assert roles[-1] == "user", f"the LLM must answer a user message: {roles}"


class RecordingBackend(ChatBackend):
    """A real backend that also keeps every message list it was sent."""

    def __init__(self, inner: ChatBackend) -> None:
        self.inner, self.model, self.received = inner, inner.model, []

    async def complete(self, messages, **options):
        self.received.append([dict(m) for m in messages])
        return await self.inner.complete(messages, **options)


@asynccontextmanager
async def scripted_server(handle: Callable[[int, dict, web.Request], object]) -> AsyncIterator[tuple[str, list]]:
    """A server on a free local port; ``handle(i, body, request)`` answers the i-th request (0-based)."""
    seen: list[dict] = []

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        return await handle(len(seen) - 1, body, request)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1", seen
    finally:
        await runner.cleanup()


def chat_reply(body: dict, reply: str) -> web.Response:
    """An OpenAI chat completion answering ``reply`` to the request ``body``."""
    return web.json_response({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    })


def assert_same_decision(got, want, tolerance: float = 2e-3, what: str = "plan") -> None:
    """Two plans made the same decision (strategy and instruction) from distributions that agree within
    ``tolerance``. Never bit-equality: a batched and a single forward pass, or two thread counts, sum in another
    order (fp32 differed at the 8th digit on one CPU; bf16 autocast, on CPUs with native bf16, by ~1e-4)."""
    assert (got.strategy, got.instruction) == (want.strategy, want.instruction), f"{what}: {got} != {want}"
    assert got.distribution.keys() == want.distribution.keys(), f"{what}: strategy sets differ"
    gap = max((abs(got.distribution[k] - want.distribution[k]) for k in want.distribution), default=0.0)
    assert gap <= tolerance and abs(got.probability - want.probability) <= tolerance, (
        f"{what}: probabilities differ by {gap:.2e} (> {tolerance}): {got} vs {want}")


def scrape(root_url: str, token: str | None = None) -> "Callable[..., float]":
    """``GET /metrics`` of a ppdpp server (``root_url`` without ``/v1``), parsed by prometheus_client's own parser;
    returns ``value(name, **labels)``: the sum of the samples named ``name`` whose labels include ``labels``."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{root_url}/metrics", headers=headers, timeout=60)
    assert response.status_code == 200, f"/metrics: {response.status_code} {response.text[:200]}"
    assert response.headers["Content-Type"].startswith("text/plain"), response.headers
    samples = [s for family in text_string_to_metric_families(response.text) for s in family.samples]

    def value(name: str, **labels: str) -> float:
        return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())

    return value


def other_value(leaf: Any, path: Path) -> Any:
    """A valid value of a command option ``leaf`` (planner/cli/options.py's ``Leaf``) that differs from its
    default, from its type alone (``path`` for a path; callers override what the type does not say)."""
    hint = typing.get_args(leaf.hint)[0] if type(None) in typing.get_args(leaf.hint) else leaf.hint
    default = None if leaf.default is dataclasses.MISSING else leaf.default
    origin = typing.get_origin(hint)
    if origin is Literal:
        return next(c for c in typing.get_args(hint) if c != default)
    if hint is bool:
        return not default
    if hint is int:
        return 3 if default is None else default + 1
    if hint is float:
        return 0.5 if not default else default / 2
    if hint is Path:
        return path
    if origin is list:
        return [path, path]
    assert hint is str, f"no test value for {leaf.path} ({leaf.hint})"
    return "tutoring" if leaf.name == "domain" else "other"


def option_args(leaf: Any, value: Any) -> list[str]:
    """The command-line words that give option ``leaf`` the ``value``."""
    if getattr(leaf, "positional", False):
        return [str(value)]
    if isinstance(value, bool):
        return [leaf.option if value else f"--no-{leaf.option[2:]}"]
    if isinstance(value, list):
        return [a for v in value for a in (leaf.option, str(v))]
    if isinstance(value, tuple):
        return [leaf.option, ",".join(map(str, value))]
    return [leaf.option, str(value)]
