"""Micro-batching: requests that arrive together, from any event loop or thread, run as one batch on one worker.

The worker thread owns the model, so the event loops that submit requests never block on it. It takes the
oldest request, then keeps collecting until ``max_wait_s`` passes without a new one (at most
``GATHER_LIMIT`` times that after the first, or until ``max_batch_size`` rows are together) and hands the whole
batch to ``run_batch``. Requests that queued while a batch was running are collected at once, so under load
the batches fill up without waiting; many dialogues that resume one after another when a batch returns (each
doing a little work before its next request) still land in one batch.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Generic, Sequence, TypeVar

R = TypeVar("R")
T = TypeVar("T")
J = TypeVar("J")  # what a job returns

GATHER_LIMIT = 8  # a batch waits for company at most this many times max_wait_s after its first request
BATCH_HISTORY = 4096  # batch sizes kept for benchmarks and tests; a long-lived server keeps no more


@dataclass
class _Job:
    """A callable that runs alone on the worker thread, in queue order (loading, scoring)."""

    fn: Callable[[], object]


class MicroBatcher(Generic[R, T]):
    """Runs ``run_batch(requests) -> results`` (one result per request, same order; an exception instance as a
    result fails that request alone) on a worker thread."""

    def __init__(
        self,
        run_batch: Callable[[list[R]], Sequence[T | BaseException]],
        *,
        max_batch_size: int = 16,
        max_wait_s: float = 0.005,
        rows: Callable[[R], int] = lambda _request: 1,
        name: str = "ppdpp-batcher",
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._rows = rows
        self._name = name
        self._queue: deque[tuple[R | _Job, Future]] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batch_sizes: deque[int] = deque(maxlen=BATCH_HISTORY)  # rows of the latest batches (bounded)

    def submit(self, request: R) -> Future[T]:
        """Queue a request; the future resolves to its result."""
        return self._put(request)

    def submit_job(self, fn: Callable[[], J]) -> Future[J]:
        """Queue ``fn`` to run alone on the worker thread (after what is queued before it)."""
        return self._put(_Job(fn))

    async def run(self, request: R) -> T:
        """Submit and await from any event loop."""
        return await asyncio.wrap_future(self.submit(request))

    async def run_job(self, fn: Callable[[], J]) -> J:
        return await asyncio.wrap_future(self.submit_job(fn))

    def close(self) -> None:
        """Finish what is queued, then stop the worker thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _put(self, item: R | _Job) -> Future:
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self._name} is closed")
            self._queue.append((item, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return future

    def _now(self) -> float:
        """The clock the gathering rule reads (a test replaces it with virtual time)."""
        return time.monotonic()

    def _wait(self, timeout: float | None) -> None:
        """Wait, holding ``_cond``, until notified or ``timeout`` seconds of :meth:`_now` pass."""
        self._cond.wait(timeout)

    def pending(self) -> int:
        """Requests and jobs queued and not yet taken by the worker."""
        with self._cond:
            return len(self._queue)

    def _take_batch(self) -> list[tuple[R | _Job, Future]] | None:
        """The next job alone, or the next requests that fit in one batch; ``None`` once closed and empty."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._wait(None)
            first = self._queue.popleft()
            if isinstance(first[0], _Job):
                return [first]
            batch, rows = [first], self._rows(first[0])
            start = self._now()
            deadline = start + self.max_wait_s
            while rows < self.max_batch_size:
                if not self._queue:
                    left = deadline - self._now()
                    if left <= 0 or self._closed:
                        break
                    self._wait(left)
                    continue
                item, future = self._queue[0]
                if isinstance(item, _Job) or rows + self._rows(item) > self.max_batch_size:
                    break
                batch.append(self._queue.popleft())
                rows += self._rows(item)
                deadline = min(self._now() + self.max_wait_s, start + GATHER_LIMIT * self.max_wait_s)
            return batch

    def _work(self) -> None:
        while (batch := self._take_batch()) is not None:
            live = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                first = live[0][0]
                results: list[object]
                if isinstance(first, _Job):
                    results = [first.fn()]
                else:
                    requests = [item for item, _ in live if not isinstance(item, _Job)]  # a job comes alone
                    self.batch_sizes.append(sum(self._rows(r) for r in requests))
                    results = list(self._run_batch(requests))
            except BaseException as exc:  # noqa: BLE001 - every waiter must hear about the failure
                for _, future in live:
                    future.set_exception(exc)
                continue
            for (_, future), result in zip(live, results):
                if isinstance(result, BaseException):  # this request alone failed
                    future.set_exception(result)
                else:
                    future.set_result(result)
