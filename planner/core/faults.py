"""A testing hook: SIGKILL this process at a named point, to check that a hard kill there loses nothing.

``PPDPP_FAULT_KILL_AT=<point>:<n>`` (e.g. ``rl.update:3``) kills the process, with no clean-up, the ``n``-th
time it reaches ``kill_point("<point>")``. Unset (always, outside tests), a kill point only reads the variable.
The points: ``rl.plan`` (a planner call inside a training dialogue), ``rl.update`` (after the backward pass,
before the optimizer step), ``rl.checkpoint.files`` (half of a checkpoint directory written),
``rl.checkpoint.pointer`` (the checkpoint in place, ``latest.json`` not yet rewritten), ``sft.step`` (after an
optimizer step), ``sft.checkpoint`` (``checkpoint.pt`` written to its temporary file, not yet moved) and
``sft.best`` (a new ``best/`` in place, ``checkpoint.pt`` not yet rewritten).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

KILL_AT_ENV = "PPDPP_FAULT_KILL_AT"
_hits: Counter[str] = Counter()


def kill_point(name: str) -> None:
    """SIGKILL this process if ``$PPDPP_FAULT_KILL_AT`` is ``name:n`` and this is the ``n``-th call here."""
    spec = os.environ.get(KILL_AT_ENV)
    if not spec:
        return
    point, _, count = spec.rpartition(":")
    if not point or not count.isdigit() or int(count) < 1:
        raise ValueError(f"${KILL_AT_ENV}={spec!r}: expected <point>:<n>, e.g. rl.update:3")
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] == int(count):
        os.kill(os.getpid(), signal.SIGKILL)
