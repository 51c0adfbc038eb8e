"""The disk response cache around the real SmolLM2 backend: hits never reach the model (we count the calls)."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from ppdpp.planner.llm import CachedBackend, ChatBackend, Completion, open_chat
from ppdpp.planner.llm.cache import cache_key
from ppdpp.planner.llm.local import LocalBackend

HELLO = [{"role": "user", "content": "Say hello."}]


class Counting(ChatBackend):
    """Passes calls to the real backend and counts them."""

    def __init__(self, inner: ChatBackend) -> None:
        self.inner = inner
        self.model = inner.model
        self.calls = 0

    async def complete(self, messages, **kwargs) -> Completion:
        self.calls += 1
        return await self.inner.complete(messages, **kwargs)


@pytest.fixture(scope="module")
def smol(smollm2_gguf):
    backend = LocalBackend("local/smollm2")
    yield backend
    asyncio.run(backend.aclose())


@pytest.fixture
def counting(smol):
    return Counting(smol)


def test_greedy_hits_skip_the_model_and_survive_a_restart(counting, tmp_path):
    cached = CachedBackend(counting, directory=tmp_path)
    first = cached.complete_sync(HELLO, max_tokens=4)
    second = cached.complete_sync(HELLO, max_tokens=4)
    assert counting.calls == 1, f"the model was called {counting.calls} times for two identical greedy calls"
    assert second.texts == first.texts and second.usage.cached and not first.usage.cached
    assert second.usage.completion_tokens == 0 and second.usage.cost == 0.0, "a hit spends nothing"
    reopened = CachedBackend(counting, directory=tmp_path)  # as a new process would
    assert reopened.complete_sync(HELLO, max_tokens=4).texts == first.texts
    assert counting.calls == 1
    cached.complete_sync(HELLO, max_tokens=5)
    cached.complete_sync(HELLO, max_tokens=4, stop=["!"])
    assert counting.calls == 3, "other sampling parameters must be other keys"


def test_sampled_calls_are_not_cached_by_default(counting, tmp_path):
    cached = CachedBackend(counting, directory=tmp_path)
    for _ in range(2):
        cached.complete_sync(HELLO, max_tokens=3, temperature=0.8)
    assert counting.calls == 2
    assert not list(tmp_path.rglob("*.json")), "sampled answers were written in deterministic mode"


def test_cache_all_keeps_repeated_samples_distinct_and_replays_them(counting, tmp_path):
    first_run = CachedBackend(counting, mode="all", directory=tmp_path)
    a = first_run.complete_sync(HELLO, max_tokens=6, temperature=1.0, n=2)
    b = first_run.complete_sync(HELLO, max_tokens=6, temperature=1.0, n=2)
    assert counting.calls == 2, "the second identical sampled call must be a new sample, not the first one again"
    rerun = CachedBackend(counting, mode="all", directory=tmp_path)
    assert rerun.complete_sync(HELLO, max_tokens=6, temperature=1.0, n=2).texts == a.texts
    assert rerun.complete_sync(HELLO, max_tokens=6, temperature=1.0, n=2).texts == b.texts
    assert counting.calls == 2, "a rerun must replay the stored samples in order"
    rerun.complete_sync(HELLO, max_tokens=6, temperature=1.0, n=2, seed=3)
    assert counting.calls == 3, "a seed is part of the key"


def test_open_chat_cache_switches(monkeypatch, smol, tmp_path):
    opened = [open_chat("local/smollm2"), open_chat("local/smollm2", cache="all", cache_dir=tmp_path),
              open_chat("local/smollm2", cache=False)]
    monkeypatch.setenv("PPDPP_NO_CACHE", "1")
    opened.append(open_chat("local/smollm2"))
    default, everything, off, off_by_env = opened
    assert isinstance(default, CachedBackend) and default.mode == "deterministic"
    assert isinstance(everything, CachedBackend) and everything.mode == "all" and everything.directory == tmp_path
    assert isinstance(off, LocalBackend) and isinstance(off_by_env, LocalBackend)
    assert all(b.engine is smol.engine for b in (default, everything, off, off_by_env)), "the model was loaded again"
    with pytest.raises(ValueError, match="cache"):
        open_chat("local/smollm2", cache="sometimes")
    for backend in opened:
        asyncio.run(backend.aclose())


def test_keys_are_canonical():
    one = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    other = {"temperature": 0, "messages": [{"content": "hi", "role": "user"}], "model": "m"}
    assert cache_key(one) == cache_key(other)
    assert cache_key(one) != cache_key({**one, "model": "m2"})


def test_concurrent_writers_never_leave_half_a_file(counting, tmp_path):
    cached = CachedBackend(counting, directory=tmp_path)
    key = cached.key_for(HELLO, n=1, temperature=0.0, max_tokens=4, stop=None, seed=None)
    texts = [f"answer {'x' * 5000} {i}" for i in range(8)]
    errors: list[str] = []

    def write_and_read(text: str) -> None:
        for _ in range(25):
            cached.write(key, Completion([text]))
            hit = cached.read(key)
            if hit is None or hit.texts[0] not in texts:
                errors.append(repr(hit))

    threads = [threading.Thread(target=write_and_read, args=(t,)) for t in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, f"a reader saw a broken entry: {errors[:2]}"
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{key}.json"], "temp files were left behind"


def test_a_corrupt_entry_is_a_miss_and_is_rewritten(counting, tmp_path):
    cached = CachedBackend(counting, directory=tmp_path)
    key = cached.key_for(HELLO, n=1, temperature=0.0, max_tokens=3, stop=None, seed=None)
    path = tmp_path / key[:2] / f"{key}.json"
    path.parent.mkdir(parents=True)
    path.write_text("{half a fi")
    answer = cached.complete_sync(HELLO, max_tokens=3)
    assert counting.calls == 1 and not answer.usage.cached
    assert json.loads(path.read_text())["texts"] == answer.texts
