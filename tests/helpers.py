"""Assertions and wrappers shared by several test modules (fixtures live in conftest.py)."""

from __future__ import annotations

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
