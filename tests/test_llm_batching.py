"""The micro-batcher's gathering rule: a batch keeps collecting while requests keep coming.

The batcher runs on virtual time: its clock and its timed waits are the test's, and the test moves the clock
only while the worker is parked, so each request arrives at an exact instant whatever the machine's load."""

from __future__ import annotations

import math

from ppdpp.planner.llm.batching import GATHER_LIMIT, MicroBatcher


class VirtualTimeBatcher(MicroBatcher[int, int]):
    """A batcher whose worker reads ``self.t`` as the clock and parks (``parks`` counts it) instead of sleeping."""

    def __init__(self, max_wait_s: float) -> None:
        self.batches: list[list[int]] = []
        super().__init__(lambda requests: self.batches.append(requests) or requests, max_wait_s=max_wait_s,
                         max_batch_size=100)
        self.t = 0.0
        self.parks = 0
        self.deadline: float | None = None  # while parked: when its timed wait ends (None: waits for a request)

    def _now(self) -> float:
        return self.t

    def _wait(self, timeout: float | None) -> None:
        self.deadline = None if timeout is None else self.t + timeout
        self.parks += 1
        self._cond.notify_all()  # tell the test the worker is parked
        self._cond.wait()  # woken by a submit, by the test moving the clock, or by close
        self.deadline = None

    def _parked_after(self, parks: int) -> None:
        """Wait (holding ``_cond``) until the worker has parked more than ``parks`` times."""
        while self.parks <= parks:
            self._cond.wait()

    def advance_to(self, t: float) -> None:
        """Move the clock to ``t``, ending on the way every timed wait whose deadline comes first."""
        with self._cond:
            while self.deadline is not None and self.deadline <= t:
                self.t, parks = self.deadline, self.parks
                self._cond.notify_all()
                self._parked_after(parks)
            self.t = t

    def submit_at(self, t: float, request: int):
        self.advance_to(t)
        with self._cond:
            parks = self.parks
        future = self.submit(request)
        with self._cond:  # the worker has seen the request (it parks again, or its batch is full)
            self._parked_after(parks)
        return future


def run_spaced(gaps_s: list[float], max_wait_s: float) -> list[list[int]]:
    """Submit request ``i`` ``gaps_s[i]`` virtual seconds after request ``i - 1``; return the batches."""
    batcher = VirtualTimeBatcher(max_wait_s)
    futures, t = [], 0.0
    for number, gap in enumerate(gaps_s):
        t += gap
        futures.append(batcher.submit_at(t, number))
    batcher.advance_to(math.inf)
    assert [f.result(timeout=60) for f in futures] == list(range(len(gaps_s)))
    batcher.close()
    return batcher.batches


def test_requests_that_keep_arriving_within_the_wait_share_one_batch():
    # 8 requests 50 ms apart: 350 ms in all, beyond one 200 ms wait from the first, but no gap reaches it
    batches = run_spaced([0.0] + [0.05] * 7, max_wait_s=0.2)
    assert batches == [list(range(8))], f"split although no gap reached max_wait: {batches}"


def test_a_gap_longer_than_the_wait_starts_a_new_batch():
    batches = run_spaced([0.0, 0.05, 0.6, 0.05], max_wait_s=0.2)
    assert batches == [[0, 1], [2, 3]], batches


def test_a_gap_just_short_of_the_wait_joins_and_one_just_past_it_does_not():
    assert run_spaced([0.0, 0.199], max_wait_s=0.2) == [[0, 1]]
    assert run_spaced([0.0, 0.201], max_wait_s=0.2) == [[0], [1]]


def test_gathering_stops_at_the_limit_even_if_requests_keep_coming():
    # 40 requests 1/32 s apart with a 1/16 s wait (binary fractions: the instants are exact): a batch gathers for
    # at most GATHER_LIMIT x 1/16 s, so 2 x GATHER_LIMIT requests, and the one arriving at the limit starts the next
    batches = run_spaced([0.0] + [1 / 32] * 39, max_wait_s=1 / 16)
    assert sum(batches, []) == list(range(40))
    assert [len(b) for b in batches[:-1]] == [2 * GATHER_LIMIT] * (len(batches) - 1), batches
    assert len(batches) == math.ceil(40 / (2 * GATHER_LIMIT)), batches
