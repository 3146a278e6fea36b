"""A KV cache for the in-process engine: grows in place and drops or repeats batch rows cheaply.

Why not the stock ``DynamicCache``: it concatenates every new token onto the whole cache, so a
decode of T tokens copies O(T^2) cache bytes; for the tiny testbed models that copy costs more than
the forward itself. Here each layer keeps a buffer with spare capacity (grown geometrically) and
hands attention a view of the filled part. Row selection (``select_rows``) serves both expanding a
prompt's prefill to its n samples and dropping finished samples from the running batch.

Works with transformers' per-layer cache API (>= 4.56); on older versions ``make_cache`` falls back
to a plain ``DynamicCache``, which is slower but equally correct.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import DynamicCache

try:  # transformers >= 4.56: caches are lists of per-layer objects
    from transformers.cache_utils import DynamicLayer
except ImportError:  # pragma: no cover - older transformers
    DynamicLayer = None  # type: ignore[assignment,misc]


if DynamicLayer is not None:

    class GrowingLayer(DynamicLayer):  # type: ignore[misc,valid-type]
        """One attention layer's keys/values in buffers ``[batch, heads, capacity, head_dim]``.

        ``keys``/``values`` are views of the filled ``[:, :, :length]`` part, so attention reads
        exactly the tokens seen so far; appending a token writes one slice instead of copying all.
        """

        def __init__(self, max_len: int) -> None:
            super().__init__()
            self.max_len = max_len
            self.length = 0
            self._k: torch.Tensor | None = None
            self._v: torch.Tensor | None = None

        def _alloc(self, rows: int, capacity: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
            shape = (rows, like.shape[1], capacity, like.shape[3])
            return like.new_empty(shape), like.new_empty(shape)

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
                   **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            start, end = self.length, self.length + key_states.shape[-2]
            if self._k is None or end > self._k.shape[-2]:
                cap = self._k.shape[-2] if self._k is not None else 0
                cap = max(end, min(self.max_len, max(2 * cap, end + 32)))
                k, v = self._alloc(key_states.shape[0], cap, key_states)
                if start:
                    k[:, :, :start] = self._k[:, :, :start]
                    v[:, :, :start] = self._v[:, :, :start]
                self._k, self._v = k, v
            self._k[:, :, start:end] = key_states
            self._v[:, :, start:end] = value_states
            self.length = end
            self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            """Keep (or repeat) the rows ``indices``, in that order."""
            if self._k is None:
                return
            n = self.length
            k, v = self._alloc(len(indices), self._k.shape[-2], self._k)
            # gather the filled part straight into the new buffers (one pass, spare capacity kept)
            torch.index_select(self.keys, 0, indices, out=k[:, :, :n])
            torch.index_select(self.values, 0, indices, out=v[:, :, :n])
            self._k, self._v = k, v
            self.keys, self.values = k[:, :, :n], v[:, :, :n]

        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            self.batch_select_indices(beam_idx)

        def crop(self, tokens_to_remove: int) -> None:
            raise NotImplementedError("GrowingLayer does not support crop")

        def batch_repeat_interleave(self, repeats: int) -> None:
            idx = torch.arange(self._k.shape[0], device=self._k.device).repeat_interleave(repeats)
            self.batch_select_indices(idx)


def make_cache(model: torch.nn.Module, max_len: int) -> DynamicCache:
    """A fresh cache for ``model`` whose plain attention layers are ``GrowingLayer``s.

    Sliding-window or other special layers keep transformers' own implementation.
    """
    cache = DynamicCache(config=model.config)
    layers = getattr(cache, "layers", None)
    if DynamicLayer is not None and layers:
        cache.layers = [GrowingLayer(max_len) if type(layer) is DynamicLayer else layer
                        for layer in layers]
    return cache


def select_rows(cache: DynamicCache, indices: torch.Tensor) -> None:
    """Keep (or repeat) batch rows ``indices`` of every layer, in that order."""
    cache.batch_select_indices(indices)


def cache_kwarg(model: torch.nn.Module) -> str:
    """The forward argument that takes the cache: ``cache`` (transformers 5) or
    ``past_key_values`` (4.x)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"
