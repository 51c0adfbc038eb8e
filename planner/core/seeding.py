"""Seeds derived from a base seed and keys, the same in every process and on every machine.

Every seeded thing in ppdpp (an episode, one LLM call of it, a training epoch's order, the dropout of an RL
update) takes its seed from :func:`derive_seed`, built on ``numpy.random.SeedSequence``: different keys give
statistically independent streams, and strings are mapped with a fixed hash (never Python's salted ``hash``).
Nothing here reseeds the caller's global ``random`` or torch generators: :func:`forked_torch_rng` seeds a fork
of torch's for code that draws from them (dropout) and gives the caller's state back after.
"""

from __future__ import annotations

import hashlib
import random
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: the policy registry imports this module, and `ppdpp`
    import torch  # refusing a bad option should not wait ~1 s for torch

SEED_BITS = 31  # derived seeds fit every provider's int32 ``seed`` field


def _entropy_word(key: int | str) -> int:
    """A non-negative integer for one key; ints and strings never collide (the low bit tags the type)."""
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise TypeError(f"seed keys are ints or strings, got {key!r} ({type(key).__name__})")
    if isinstance(key, str):
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()
        return int.from_bytes(digest, "little") << 1 | 1
    zigzag = 2 * key if key >= 0 else -2 * key - 1
    return zigzag << 1


def derive_seed(base: int, *keys: int | str) -> int:
    """A seed in ``[0, 2**31)`` for ``keys`` under ``base``, e.g. ``derive_seed(seed, "episode", 7)``."""
    entropy = [_entropy_word(base), *(_entropy_word(k) for k in keys)]
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)
    return int(state[0]) >> (32 - SEED_BITS)


def torch_generator(base: int, *keys: int | str) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``derive_seed(base, *keys)``."""
    import torch

    return torch.Generator().manual_seed(derive_seed(base, *keys))


def python_random(base: int, *keys: int | str) -> random.Random:
    """A ``random.Random`` seeded with ``derive_seed(base, *keys)``."""
    return random.Random(derive_seed(base, *keys))


@contextmanager
def forked_torch_rng(seed: int | None = None) -> Iterator[None]:
    """Run the block on a fork of torch's global generators (CPU and every CUDA device), seeded with ``seed``
    when given; on leaving, the caller's generator states are back as they were."""
    import torch

    with torch.random.fork_rng():
        if seed is not None:
            torch.manual_seed(seed)
        yield
