"""Prefilling prompts for the local backend outside ``generate``: once per distinct prompt, without padding,
continuing from the KV cache of an earlier prompt that shares its beginning.

``generate`` over a left-padded batch prefills every row, padding included, and the ``n`` samples of a request
as ``n`` rows. In self-play most of that is waste: the critic's samples share one prompt, a critic prompt of the
whole dialogue sits beside short agent prompts, and each turn's prompt repeats the previous turn's. So
:func:`prefilled_cache` runs each distinct prompt (all but its last token) once, continues from the longest
prefix held in a :class:`PrefixStore` (KV entries depend only on the tokens before them, so the reuse is exact),
prefills what is left in groups of similar length (new prompts and continuations in the same passes, a
beginning that several prompts share once), and stitches the results into one left-padded ``DynamicCache``
that ``generate`` continues from. That cache (:func:`reserved_cache`) holds room for the tokens still to come,
so a decoding step writes one position in place instead of copying the whole cache, as a plain
``DynamicLayer`` does at every step (``benchmarks/decode_step.py`` measures the difference).
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from functools import lru_cache
from typing import Any, Sequence

import torch

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values of shape [1, heads, tokens, head_dim]

PREFILL_TOKENS = 1024  # padded new tokens per prefill forward pass (a longer prompt runs alone)
PASS_CACHE_TOKENS = 8192  # padded stored + new tokens per pass (bounds the padded past buffers and attention)
MIN_REUSE = 16  # a shared prefix shorter than this is not worth a separate forward pass
MIN_SAVED = 128  # a beginning shared within a batch gets a pass of its own only if that saves this many tokens


def cache_argument(model: Any) -> str:
    """The name under which this transformers version passes a KV cache (``cache`` since 5, else
    ``past_key_values``); looked up once per model class, not on every batch."""
    return _cache_argument(model.__class__)


@lru_cache(maxsize=None)
def _cache_argument(model_class: Any) -> str:
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


class PrefixStore:
    """The KV caches of recently prefilled prompts, least recently used first out, at most ``max_tokens`` tokens
    in all (``0`` turns reuse off)."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self.reused_tokens = 0  # prompt tokens not prefilled again thanks to the store, for benchmarks
        self._entries: OrderedDict[tuple[int, ...], KV] = OrderedDict()
        self._tokens = 0

    def longest_prefix(self, ids: Sequence[int]) -> tuple[int, KV] | None:
        """The KV cache of the longest stored prefix of ``ids`` (at least ``MIN_REUSE`` tokens), and its length."""
        best, best_len = self._longest(ids)
        if best is None:
            return None
        self._entries.move_to_end(best)
        self.reused_tokens += best_len
        return best_len, [(k[:, :, :best_len], v[:, :, :best_len]) for k, v in self._entries[best]]

    def stored_length(self, ids: Sequence[int]) -> int:
        """How many leading tokens of ``ids`` the store holds (0 when fewer than ``MIN_REUSE``)."""
        best, best_len = self._longest(ids)
        return best_len if best is not None else 0

    def _longest(self, ids: Sequence[int]) -> tuple[tuple[int, ...] | None, int]:
        best, best_len = None, MIN_REUSE - 1
        for key in self._entries:
            if key[0] != ids[0] or len(key) <= best_len:
                continue
            shared = _shared_length(key, ids)
            if shared > best_len:
                best, best_len = key, shared
        return best, best_len

    def add(self, ids: Sequence[int], kv: KV) -> None:
        key = tuple(ids)
        if len(key) > self.max_tokens or key in self._entries:
            return
        self._entries[key] = kv
        self._tokens += len(key)
        while self._tokens > self.max_tokens:
            old, _ = self._entries.popitem(last=False)
            self._tokens -= len(old)


def _shared_length(a: Sequence[int], b: Sequence[int]) -> int:
    limit = min(len(a), len(b))
    for i in range(limit):
        if a[i] != b[i]:
            return i
    return limit


@lru_cache(maxsize=None)
def _reserved_layer_class() -> type:
    """``ReservedLayer``, defined on first use so that importing this module does not import transformers."""
    from transformers.cache_utils import DynamicLayer

    class ReservedLayer(DynamicLayer):
        """A ``DynamicLayer`` over buffers with room for more tokens: ``update`` writes the new tokens in place
        and exposes the filled part as a view. Past the room, or once an inherited method (``crop``,
        ``batch_select_indices``, ``reset``) has replaced the view, it concatenates as ``DynamicLayer`` does."""

        keys: torch.Tensor  # set from the first call on (``DynamicLayer`` allows None before it)
        values: torch.Tensor

        def __init__(self, keys: torch.Tensor, values: torch.Tensor, filled: int) -> None:
            super().__init__()
            self.device = keys.device
            self.is_initialized = True
            self._keys, self._values = keys, values
            self.keys, self.values = keys[:, :, :filled], values[:, :, :filled]

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
                   **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
            if not self._fills_buffer(key_states.shape[-2]):  # past the room, or reset/cropped/reindexed since
                keys, values = super().update(key_states, value_states, *args, **kwargs)
                self._keys, self._values = keys, values
                return keys, values
            start = self.keys.shape[-2]
            end = start + key_states.shape[-2]
            self._keys[:, :, start:end] = key_states
            self._values[:, :, start:end] = value_states
            self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
            return self.keys, self.values

        def _fills_buffer(self, new_tokens: int) -> bool:
            """Whether the filled part is still a prefix view of the buffers, with room for ``new_tokens``."""
            return (self.keys is not None and self.keys.data_ptr() == self._keys.data_ptr()
                    and self.keys.shape[:2] == self._keys.shape[:2]
                    and self.keys.shape[-2] + new_tokens <= self._keys.shape[-2])

    return ReservedLayer


def reserved_cache(layers: Sequence[tuple[torch.Tensor, torch.Tensor]], filled: int) -> Any:
    """A ``DynamicCache`` over per-layer key/value buffers ``[batch, heads, capacity, head_dim]`` whose first
    ``filled`` positions hold the prompt; decoding fills the rest in place."""
    from transformers import DynamicCache

    cache = DynamicCache()
    cache.layers = [_reserved_layer_class()(keys, values, filled) for keys, values in layers]
    return cache


def _is_plain_dynamic(cache: Any) -> bool:
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    return isinstance(cache, DynamicCache) and all(type(layer) is DynamicLayer for layer in cache.layers)


def _forward(model: Any, argument: str, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
             past: KV | None) -> Any:
    from transformers import DynamicCache

    cache = DynamicCache(ddp_cache_data=past) if past else None
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                    **{argument: cache})
    return getattr(out, argument)


def _left_padded(parts: Sequence[KV | None], lengths: Sequence[int], end: int, capacity: int) -> KV:
    """Per layer, zero key/value buffers ``[rows, heads, capacity, head_dim]`` holding row ``i``'s cache
    (``lengths[i]`` tokens; ``None``: nothing) right-aligned to end at position ``end``. Zeros, because masked
    padding must not hold NaN."""
    first = next(kv for kv in parts if kv is not None)
    layers = []
    for layer, (keys, _) in enumerate(first):
        shape = (len(parts), keys.shape[1], capacity, keys.shape[3])
        buffers = keys.new_zeros(shape), keys.new_zeros(shape)
        for row, (kv, length) in enumerate(zip(parts, lengths)):
            if kv is not None:
                for buffer, part in zip(buffers, kv[layer]):
                    buffer[row, :, end - length: end] = part[0]
        layers.append(buffers)
    return layers


def _group_by_length(items: list[tuple[int, int, int]]) -> list[list[int]]:
    """``(index, tokens to compute, tokens in all)`` triples in groups of similar length: padded, a group holds
    at most ``PREFILL_TOKENS`` new tokens and ``PASS_CACHE_TOKENS`` in all (an item over either runs alone)."""
    groups: list[list[int]] = []
    longest_new = longest_all = 0
    for index, new, total in sorted(items, key=lambda item: (item[1], item[2])):
        rows = len(groups[-1]) + 1 if groups else 0
        if (groups and rows * max(longest_new, new) <= PREFILL_TOKENS
                and rows * max(longest_all, total) <= PASS_CACHE_TOKENS):
            groups[-1].append(index)
            longest_new, longest_all = max(longest_new, new), max(longest_all, total)
        else:
            groups.append([index])
            longest_new, longest_all = new, total
    return groups


def _prefill_group(model: Any, argument: str, pad_id: int,
                   items: list[tuple[list[int], int, KV | None]]) -> list[KV] | None:
    """One forward pass over several prompts, each ``(ids, shared, past)``: ``past`` holds the KV cache of
    ``ids[:shared]`` (``None`` when ``shared`` is 0) and the rest of ``ids`` is computed. The pasts are
    left-padded to a common length and the new tokens left-padded after them, so a row's padding sits between
    its past and its new tokens, masked out, with position ids that continue its past. Returns each prompt's
    full KV cache; ``None`` where this model's cache is not a plain ``DynamicCache``."""
    device = model.device
    past_width = max(shared for _, shared, _ in items)
    new_width = max(len(ids) - shared for ids, shared, _ in items)
    ids_rows, mask_rows, position_rows = [], [], []
    for ids, shared, _ in items:
        pad = new_width - (len(ids) - shared)
        ids_rows.append([pad_id] * pad + ids[shared:])
        mask_rows.append([0] * (past_width - shared) + [1] * shared + [0] * pad + [1] * (len(ids) - shared))
        position_rows.append([shared] * pad + list(range(shared, len(ids))))
    past = None
    if past_width:
        past = _left_padded([kv for _, _, kv in items], [shared for _, shared, _ in items], past_width, past_width)
    cache = _forward(model, argument, torch.tensor(ids_rows, device=device),
                     torch.tensor(mask_rows, device=device), torch.tensor(position_rows, device=device), past)
    if not _is_plain_dynamic(cache):
        return None
    states = []
    for row, (ids, shared, kv) in enumerate(items):
        fresh = len(ids) - shared
        computed = [(layer.keys[row: row + 1, :, -fresh:], layer.values[row: row + 1, :, -fresh:])
                    for layer in cache.layers]
        if kv is None:
            states.append([(keys.clone(), values.clone()) for keys, values in computed])
        else:
            states.append([(torch.cat([old_keys, keys], dim=2), torch.cat([old_values, values], dim=2))
                           for (old_keys, old_values), (keys, values) in zip(kv, computed)])
    return states


def _shared_beginnings(prompts: list[list[int]]) -> list[tuple[list[int], int]]:
    """Beginnings of at least ``MIN_REUSE`` tokens that several of ``prompts`` share, with how many share each:
    for each run of neighbours in sorted order that share that much, the part the whole run has in common."""
    ordered = sorted(prompts)
    beginnings: list[tuple[list[int], int]] = []
    common, run = 0, 1
    for before, after in zip(ordered, ordered[1:]):
        shared = _shared_length(before, after)
        if shared >= MIN_REUSE:
            common, run = (min(common, shared) if common else shared), run + 1
            continue
        if common:
            beginnings.append((before[:common], run))
        common, run = 0, 1
    if common:
        beginnings.append((ordered[-1][:common], run))
    return beginnings


def _compute(model: Any, argument: str, pad_id: int, store: PrefixStore,
             prompts: list[list[int]]) -> dict[int, KV] | None:
    """The KV cache of each of ``prompts``, continuing from the store and computing the rest in groups of
    similar length; ``None`` where this model's cache is not a plain ``DynamicCache``."""
    states: dict[int, KV] = {}
    pending: dict[int, tuple[int, KV | None]] = {}
    for index, ids in enumerate(prompts):
        shared, past = store.longest_prefix(ids) or (0, None)
        if shared == len(ids) and past is not None:  # all stored already (a view into a stored entry: not stored again)
            states[index] = past
        else:
            pending[index] = (shared, past)
    for group in _group_by_length([(i, len(prompts[i]) - shared, len(prompts[i]))
                                   for i, (shared, _) in pending.items()]):
        computed = _prefill_group(model, argument, pad_id, [(prompts[i], *pending[i]) for i in group])
        if computed is None:
            return None
        for index, kv in zip(group, computed):
            states[index] = kv
            store.add(prompts[index], kv)
    return states


def prefilled_cache(model: Any, pad_id: int, prompts: list[list[int]], rows: list[int], width: int,
                    store: PrefixStore, room: int = 0) -> Any | None:
    """A ``DynamicCache`` holding, for each of ``rows`` (indices into ``prompts``), its prompt but the last token,
    left-padded to ``width - 1`` tokens, with ``room`` more positions reserved for the tokens to come (the last
    prompt token and the generated ones); ``None`` where this model's cache cannot be built this way
    (sliding-window or hybrid caches): then ``generate`` prefills the padded batch itself.

    Each prompt continues from the longest prefix in ``store``; what is left to compute runs in groups of
    similar length, fresh prompts and continuations alike (one forward pass reads all the weights, so on a CPU
    a pass over a few hundred tokens costs about as much per token as one over thousands). A beginning that
    several prompts share (the same system prompt in many new dialogues) is computed once first, where that
    saves at least ``MIN_SAVED`` tokens."""
    if min(len(ids) for ids in prompts) < 2:
        return None
    argument = cache_argument(model)
    known = [ids[:-1] for ids in prompts]
    if store.max_tokens:
        beginnings = [ids for ids, sharing in _shared_beginnings(known) if len(ids) <= store.max_tokens
                      and (sharing - 1) * (len(ids) - store.stored_length(ids)) >= MIN_SAVED]
        if beginnings and _compute(model, argument, pad_id, store, beginnings) is None:
            return None
    states = _compute(model, argument, pad_id, store, known)
    if states is None:
        return None
    layers = _left_padded([states[index] for index in rows], [len(prompts[index]) - 1 for index in rows],
                          width - 1, width - 1 + room)
    return reserved_cache(layers, width - 1)
