"""LLM chat backends: one async interface, API models through litellm, local models through transformers."""

from .base import ChatBackend, Completion, LLMError, Usage

__all__ = ["ChatBackend", "Completion", "LLMError", "Usage"]
