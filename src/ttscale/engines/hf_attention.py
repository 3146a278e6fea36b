"""A CPU attention kernel for small-model decoding, plugged into transformers' attention registry.

Why: at decode time every (row, head) does a 1 x head_dim by head_dim x L product. transformers'
eager path goes through 4-D ``matmul``, which copies the (strided) cache view into a contiguous
tensor every layer and step; ``sdpa`` on CPU is slower still for these shapes. Three-dimensional
``bmm`` reads the strided cache view in place and is 3-5x faster, which for the testbed models is
the difference between the attention and the MLP dominating a decode step.

The kernel is mathematically the eager attention (softmax(q k^T * scale + mask) v, grouped-query
heads mapped like ``repeat_kv``); it is only used for plain architectures listed in
``BMM_MODEL_TYPES`` and only while :func:`use_attention` is active, so the model object is left as
it was for any other user.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

NAME = "ttscale_bmm"
#: architectures whose attention is exactly softmax(q k^T * scale + mask) v (no softcap, sinks)
BMM_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})

_registered = False


def bmm_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                  value: torch.Tensor, attention_mask: torch.Tensor | None,
                  scaling: float | None = None, dropout: float = 0.0,
                  **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Eager-equivalent attention. query ``[B, H, Q, D]``, key/value ``[B, Hkv, L, D]``;
    returns ``[B, Q, H, D]`` like transformers' attention functions."""
    b, h, q_len, d = query.shape
    h_kv, kv_len = key.shape[1], key.shape[2]
    groups = h // h_kv
    if scaling is None:
        scaling = d ** -0.5
    q = query.reshape(b * h_kv, groups * q_len, d)
    k = key.reshape(b * h_kv, kv_len, d)
    v = value.reshape(b * h_kv, kv_len, value.shape[-1])
    scores = torch.bmm(q, k.transpose(1, 2))
    scores = scores.view(b, h_kv, groups, q_len, kv_len)
    scores.mul_(scaling)
    if attention_mask is not None:
        mask = attention_mask[:, :, :, :kv_len]
        if mask.dtype == torch.bool:
            scores.masked_fill_(~mask[:, :, None], torch.finfo(scores.dtype).min)
        else:
            scores.add_(mask[:, :, None])
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    if dropout and module.training:
        probs = torch.nn.functional.dropout(probs, p=dropout, training=True)
    out = torch.bmm(probs.view(b * h_kv, groups * q_len, kv_len), v)
    out = out.view(b, h, q_len, -1).transpose(1, 2).contiguous()
    return out, None


def _register() -> bool:
    """Register the kernel and its (eager-style additive) mask; False if this transformers
    has no attention registry."""
    global _registered
    if _registered:
        return True
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask
    except ImportError:  # pragma: no cover - older transformers
        return False
    AttentionInterface.register(NAME, bmm_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, eager_mask)
    _registered = True
    return True


def supports_bmm(model: torch.nn.Module) -> bool:
    """True when ``model`` is a plain architecture on CPU that the kernel reproduces exactly."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in BMM_MODEL_TYPES:
        return False
    try:
        device = next(model.parameters()).device
    except StopIteration:
        return False
    return device.type == "cpu" and _register()


@contextmanager
def use_attention(model: torch.nn.Module, name: str | None) -> Iterator[None]:
    """Run the body with ``model``'s attention implementation set to ``name`` (None: unchanged),
    restoring the previous one afterwards."""
    if name is None:
        yield
        return
    config = model.config
    previous = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = previous
