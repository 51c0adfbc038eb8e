"""LLM chat backends: one async interface, API models through litellm, local models through transformers.

Everybody opens a model with :func:`open_chat`; the backend comes from the plugin manager (the built-in
``backends`` plugin registers ``local/`` and the litellm fallback ``""``) and is wrapped in the disk cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from ppdpp.planner.llm.base import ChatBackend, Completion, LLMError

from ppdpp.planner.core.types import Usage
from ppdpp.planner.llm.cache import CachedBackend, cache_disabled_by_env
from ppdpp.planner.llm.models import ModelFetchError, ModelNotInstalledError

__all__ = [
    "CachedBackend", "ChatBackend", "Completion", "LLMError", "ModelFetchError", "ModelNotInstalledError", "Usage",
    "backend_class", "check_model", "open_chat", "supported_options",
]


def backend_class(model: str) -> type[ChatBackend]:
    """The class that serves ``model``, whose class attributes say what it can do (``ChatBackend``'s
    capabilities); a backend registered as a plain factory has the defaults of one that declares nothing."""
    from ppdpp.planner.registry.manager import backend_entry

    entry = backend_entry(model)
    return entry if isinstance(entry, type) and issubclass(entry, ChatBackend) else ChatBackend


def check_model(model: str, **options: Any) -> None:
    """Fail at once when ``model`` cannot be served (an unknown provider, a local model not installed), before
    anything slow loads: its backend's :meth:`~ChatBackend.check_model`."""
    backend_class(model).check_model(model, **options)


def supported_options(model: str, **options: Any) -> dict[str, Any]:
    """Those of ``options`` that ``model``'s backend takes (its constructor's keyword options)."""
    accepted = backend_class(model).open_options()
    return {name: value for name, value in options.items() if name in accepted}


def open_chat(model: str, *, cache: bool | Literal["all"] = True, cache_dir: str | Path | None = None,
              **options: Any) -> ChatBackend:
    """Open a chat model: ``local/<name-or-path>`` (``local/smollm2``, ``local/qwen2.5-coder-1.5b``, a HF folder
    or ``.gguf`` file) or any litellm model string (``openai/gpt-4o-mini``, ``hosted_vllm/...``, ``ollama/...``;
    an OpenAI-compatible server with ``api_base=``). ``cache``: ``True`` caches greedy calls on disk, ``"all"``
    sampled ones too, ``False`` (or env ``PPDPP_NO_CACHE=1``) none. ``options`` go to the backend."""
    from ppdpp.planner.registry.manager import get_backend

    if cache not in (True, False, "all"):
        raise ValueError(f"cache must be True, False or 'all', got {cache!r}")
    backend = get_backend(model, **options)
    if cache is False or cache_disabled_by_env():
        return backend
    return CachedBackend(backend, mode="all" if cache == "all" else "deterministic", directory=cache_dir)
