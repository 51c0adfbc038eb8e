"""Assembling OpenAI-style chat messages for a role-playing LLM from a dialogue history.

PPDPP gives each LLM a system message, a setup exchange, then the dialogue, where the LLM's own side is
"assistant" and the other side is "user". Chat templates want the two roles to alternate, so consecutive
messages of one role (consecutive turns of one speaker, as in ESConv) are merged into one message.
"""

from __future__ import annotations

from typing import Sequence

from ppdpp.planner.core.domain import Message, Speaker, Turn


def history_messages(history: Sequence[Turn], me: Speaker) -> list[Message]:
    """The turns seen by the LLM playing ``me``: its own turns as "assistant", the other side's as "user"."""
    return [{"role": "assistant" if turn.speaker == me else "user", "content": turn.text} for turn in history]


def merge_consecutive(messages: Sequence[Message]) -> list[Message]:
    """Join adjacent messages of the same role (newline-separated) so that roles alternate."""
    out: list[Message] = []
    for message in messages:
        if out and out[-1]["role"] == message["role"]:
            out[-1] = {"role": message["role"], "content": f"{out[-1]['content']}\n{message['content']}"}
        else:
            out.append(dict(message))
    return out


def role_play_messages(
    system: str,
    setup: Sequence[Message],
    history: Sequence[Turn],
    me: Speaker,
    reminder: str | None = None,
) -> list[Message]:
    """``system`` message, the ``setup`` exchange, then ``history`` from ``me``'s side; ``reminder`` (when
    given) is appended to the last message if the other side spoke last, else sent as a new user message."""
    messages = merge_consecutive([*setup, *history_messages(history, me)])
    if reminder:
        if messages and messages[-1]["role"] == "user":
            messages[-1] = {"role": "user", "content": f"{messages[-1]['content']}\n\n{reminder}"}
        else:
            messages.append({"role": "user", "content": reminder})
    return [{"role": "system", "content": system}, *messages]
