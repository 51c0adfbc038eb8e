"""The micro-batcher's gathering rule: a batch keeps collecting while requests keep coming."""

from __future__ import annotations

import time

from ppdpp.planner.llm.batching import GATHER_LIMIT, MicroBatcher


def run_spaced(gaps_s: list[float], max_wait_s: float) -> list[list[int]]:
    """Submit request ``i`` after ``gaps_s[i]`` seconds; return the batches as lists of request numbers."""
    batches: list[list[int]] = []
    batcher: MicroBatcher[int, int] = MicroBatcher(lambda requests: batches.append(requests) or requests,
                                                   max_wait_s=max_wait_s, max_batch_size=100)
    futures = []
    for number, gap in enumerate(gaps_s):
        time.sleep(gap)
        futures.append(batcher.submit(number))
    assert [f.result(timeout=10) for f in futures] == list(range(len(gaps_s)))
    batcher.close()
    return batches


def test_requests_that_keep_arriving_within_the_wait_share_one_batch():
    # 8 requests 50 ms apart: 350 ms in all, beyond one 200 ms wait from the first, but no gap reaches it
    batches = run_spaced([0.0] + [0.05] * 7, max_wait_s=0.2)
    assert batches == [list(range(8))], f"split although no gap reached max_wait: {batches}"


def test_a_gap_longer_than_the_wait_starts_a_new_batch():
    batches = run_spaced([0.0, 0.05, 0.6, 0.05], max_wait_s=0.2)
    assert batches == [[0, 1], [2, 3]], batches


def test_gathering_stops_at_the_limit_even_if_requests_keep_coming():
    # 40 requests 20 ms apart (800 ms) with a 50 ms wait: a batch may gather for at most GATHER_LIMIT x 50 ms
    batches = run_spaced([0.0] + [0.02] * 39, max_wait_s=0.05)
    assert len(batches) >= 2, f"one batch gathered for {39 * 0.02:.1f} s, beyond {GATHER_LIMIT} x max_wait"
    assert sum(batches, []) == list(range(40))
