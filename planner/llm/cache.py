"""A response cache on disk, as a ChatBackend that wraps another.

The key is the sha256 of canonical JSON over the model, the messages and the sampling parameters. Greedy calls
(temperature 0) are cached by default; sampled calls only in mode ``"all"``, where the key also holds the seed
and an occurrence index: the k-th identical sampled call in this process gets the k-th stored answer, so
repeated calls (e.g. n separate samples) stay distinct and a rerun replays them in order. One JSON file per
key (``<dir>/<2 hex>/<sha256>.json``), written to a temp file then moved into place with ``os.replace``, so
concurrent writers and readers (threads or processes) never see half a file. A hit never touches the model
and returns ``Usage(cached=True)`` with no tokens or cost spent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, AsyncIterator, Literal, Sequence

from ppdpp.planner.core.domain import Message
from ppdpp.planner.llm.base import ChatBackend, Completion
from ppdpp.planner.core.types import Usage
from ppdpp.planner.llm.models import cache_root

NO_CACHE_ENV = "PPDPP_NO_CACHE"
CacheMode = Literal["deterministic", "all"]


def cache_disabled_by_env() -> bool:
    return os.environ.get(NO_CACHE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def default_cache_dir() -> Path:
    return cache_root() / "responses"


def cache_key(payload: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``payload`` (sorted keys, no whitespace)."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CachedBackend(ChatBackend):
    """Wraps ``inner``; ``mode="deterministic"`` caches greedy calls only, ``"all"`` sampled ones too."""

    def __init__(self, inner: ChatBackend, *, mode: CacheMode = "deterministic",
                 directory: str | Path | None = None) -> None:
        if mode not in ("deterministic", "all"):
            raise ValueError(f"cache mode must be 'deterministic' or 'all', got {mode!r}")
        self.inner = inner
        self.model = inner.model
        self.mode = mode
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0
        self._occurrences: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CachedBackend({self.inner!r}, mode={self.mode!r})"

    def __getattr__(self, name: str) -> Any:
        """Anything else (``load``, ``batch_sizes``, ...) is the wrapped backend's."""
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def key_for(self, messages: Sequence[Message], *, n: int, temperature: float, max_tokens: int,
                stop: Sequence[str] | None, seed: int | None) -> str | None:
        """The cache key of a call, or ``None`` when this call is not cached."""
        payload: dict[str, Any] = {
            "model": self.model, "messages": [dict(m) for m in messages], "n": n, "temperature": temperature,
            "max_tokens": max_tokens, "stop": [stop] if isinstance(stop, str) else list(stop or []),
        }
        if temperature > 0:
            if self.mode != "all":
                return None
            payload["seed"] = seed
            with self._lock:
                base = cache_key(payload)
                payload["occurrence"] = self._occurrences[base]
                self._occurrences[base] += 1
        return cache_key(payload)

    def read(self, key: str) -> Completion | None:
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
            texts = data["texts"]
        except (OSError, ValueError, KeyError, TypeError):  # missing or unreadable: a miss, rewritten below
            return None
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return None
        reasons = data.get("finish_reasons")
        reasons = list(reasons) if isinstance(reasons, list) and all(isinstance(r, str) for r in reasons) else []
        return Completion(list(texts), Usage(cost=0.0, cached=True), data.get("model", self.model), reasons)

    def write(self, key: str, completion: Completion) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"model": completion.model or self.model, "texts": completion.texts,
                  "finish_reasons": completion.finish_reasons,
                  "prompt_tokens": completion.usage.prompt_tokens,
                  "completion_tokens": completion.usage.completion_tokens, "created": time.time()}
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(record, fh, ensure_ascii=False)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    async def complete(self, messages: Sequence[Message], *, n: int = 1, temperature: float = 0.0,
                       max_tokens: int = 256, stop: Sequence[str] | None = None, seed: int | None = None) -> Completion:
        key = self.key_for(messages, n=n, temperature=temperature, max_tokens=max_tokens, stop=stop, seed=seed)
        if key is not None:
            started = time.perf_counter()
            hit = await asyncio.to_thread(self.read, key)  # file I/O off the event loop
            if hit is not None and len(hit.texts) == n:
                self.hits += 1
                hit.usage.latency_s = time.perf_counter() - started
                return hit
        completion = await self.inner.complete(
            messages, n=n, temperature=temperature, max_tokens=max_tokens, stop=stop, seed=seed
        )
        if key is not None:
            self.misses += 1
            await asyncio.to_thread(self.write, key, completion)
        return completion

    async def stream_items(self, messages: Sequence[Message], *, temperature: float = 0.0, max_tokens: int = 256,
                           stop: Sequence[str] | None = None, seed: int | None = None) -> AsyncIterator[Any]:
        """The wrapped backend's stream; a hit gives the stored text as one piece, a miss is stored once whole."""
        options: dict[str, Any] = dict(temperature=temperature, max_tokens=max_tokens, stop=stop, seed=seed)
        key = self.key_for(messages, n=1, **options)
        hit = await asyncio.to_thread(self.read, key) if key is not None else None
        if hit is not None and len(hit.texts) == 1:
            self.hits += 1
            yield hit.text
            yield hit
            return
        stream = self.inner.stream(messages, **options)
        async for piece in stream:
            yield piece
        if key is not None and stream.completion is not None:
            self.misses += 1
            await asyncio.to_thread(self.write, key, stream.completion)
        yield stream.completion

    async def score_choices(self, messages: Sequence[Message], choices: list[str]) -> list[float]:
        return await self.inner.score_choices(messages, choices)

    async def aclose(self) -> None:
        await self.inner.aclose()
