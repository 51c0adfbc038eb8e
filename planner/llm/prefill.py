"""Prefilling prompts for the local backend outside ``generate``: once per distinct prompt, without padding,
continuing from the KV cache of an earlier prompt that shares its beginning.

``generate`` over a left-padded batch prefills every row, padding included, and the ``n`` samples of a request
as ``n`` rows. In self-play most of that is waste: the critic's samples share one prompt, a critic prompt of the
whole dialogue sits beside short agent prompts, and each turn's prompt repeats the previous turn's. So
:func:`prefilled_cache` runs each distinct prompt (all but its last token) once, continues from the longest
prefix held in a :class:`PrefixStore` (KV entries depend only on the tokens before them, so the reuse is exact),
prefills the rest in small same-length groups, and stitches the results into one left-padded ``DynamicCache``
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

PREFILL_TOKENS = 512  # padded prompt tokens per prefill forward pass: long prompts run alone (cheaper on a CPU)
MIN_REUSE = 16  # a shared prefix shorter than this is not worth a separate forward pass


def cache_argument(model: Any) -> str:
    """The name under which this transformers version passes a KV cache (``cache`` since 5, else
    ``past_key_values``); looked up once per model class, not on every batch."""
    return _cache_argument(type(model))


@lru_cache(maxsize=None)
def _cache_argument(model_class: type) -> str:
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
        best, best_len = None, MIN_REUSE - 1
        for key in self._entries:
            if key[0] != ids[0] or len(key) <= best_len:
                continue
            shared = _shared_length(key, ids)
            if shared > best_len:
                best, best_len = key, shared
        if best is None:
            return None
        self._entries.move_to_end(best)
        self.reused_tokens += best_len
        return best_len, [(k[:, :, :best_len], v[:, :, :best_len]) for k, v in self._entries[best]]

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


def prefilled_cache(model: Any, pad_id: int, prompts: list[list[int]], rows: list[int], width: int,
                    store: PrefixStore, room: int = 0) -> Any | None:
    """A ``DynamicCache`` holding, for each of ``rows`` (indices into ``prompts``), its prompt but the last token,
    left-padded to ``width - 1`` tokens, with ``room`` more positions reserved for the tokens to come (the last
    prompt token and the generated ones); ``None`` where this model's cache cannot be built this way
    (sliding-window or hybrid caches): then ``generate`` prefills the padded batch itself."""
    if min(len(ids) for ids in prompts) < 2:
        return None
    argument, device = cache_argument(model), model.device
    states: dict[int, KV] = {}
    fresh: list[int] = []
    for index, ids in enumerate(prompts):
        found = store.longest_prefix(ids[:-1])
        if found is None:
            fresh.append(index)
            continue
        shared, past = found
        rest = ids[shared:-1]
        if not rest:
            states[index] = past
            continue
        cache = _forward(model, argument, torch.tensor([rest], device=device),
                         torch.ones((1, len(ids) - 1), dtype=torch.long, device=device),
                         torch.arange(shared, len(ids) - 1, device=device)[None], past)
        if not _is_plain_dynamic(cache):
            return None
        states[index] = [(layer.keys, layer.values) for layer in cache.layers]
    groups: list[list[int]] = [[]] if fresh else []
    for index in sorted(fresh, key=lambda i: len(prompts[i])):
        if groups[-1] and (len(prompts[index]) - 1) * (len(groups[-1]) + 1) > PREFILL_TOKENS:
            groups.append([])
        groups[-1].append(index)
    for group in groups:
        lengths = [len(prompts[i]) - 1 for i in group]
        longest = max(lengths)
        ids = torch.tensor([[pad_id] * (longest - n) + prompts[i][:-1] for i, n in zip(group, lengths)], device=device)
        mask = torch.tensor([[0] * (longest - n) + [1] * n for n in lengths], device=device)
        cache = _forward(model, argument, ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), None)
        if not _is_plain_dynamic(cache):
            return None
        for row, (index, n) in enumerate(zip(group, lengths)):
            sliced = [(layer.keys[row: row + 1, :, longest - n:], layer.values[row: row + 1, :, longest - n:])
                      for layer in cache.layers]
            states[index] = [(k.clone(), v.clone()) for k, v in sliced] if len(group) > 1 else sliced
    for index, kv in states.items():
        store.add(prompts[index][:-1], kv)
    layers = []
    for layer in range(len(states[rows[0]])):
        keys = states[rows[0]][layer][0]
        shape = (len(rows), keys.shape[1], width - 1 + room, keys.shape[3])
        buffers = keys.new_zeros(shape), keys.new_zeros(shape)  # zeros: the masked padding must not be NaN
        for row, index in enumerate(rows):
            n = len(prompts[index]) - 1
            for buffer, part in zip(buffers, states[index][layer]):
                buffer[row, :, width - 1 - n: width - 1] = part[0]
        layers.append(buffers)
    return reserved_cache(layers, width - 1)
