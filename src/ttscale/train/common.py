"""Shared pieces of the training commands: model construction, token batches, seeding."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from transformers import LlamaConfig, PreTrainedTokenizerBase


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def set_threads() -> None:
    """Honour ``TTSCALE_THREADS``: on a machine whose cores are busy with other jobs, PyTorch's
    default (one thread per core) makes tiny models many times slower than one thread."""
    n = int(os.environ.get("TTSCALE_THREADS", "0") or 0)
    if n > 0:
        torch.set_num_threads(n)


def llama_config(tokenizer: PreTrainedTokenizerBase, hidden: int, layers: int, heads: int,
                 ffn: int, max_positions: int = 256, **extra) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=ffn,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=max_positions, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, rms_norm_eps=1e-5, **extra,
    )


def pad_batch(seqs: list[list[int]], pad_id: int, label_seqs: list[list[int]] | None = None,
              label_pad: int | float = -100) -> dict[str, torch.Tensor]:
    """Right-pad token id lists (and aligned labels) into tensors with an attention mask."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    out = {"input_ids": ids, "attention_mask": mask}
    if label_seqs is not None:
        is_float = any(isinstance(x, float) for s in label_seqs for x in s)
        labels = torch.full((len(seqs), width), label_pad,
                            dtype=torch.float if is_float else torch.long)
        for i, s in enumerate(label_seqs):
            labels[i, : len(s)] = torch.tensor(s, dtype=labels.dtype)
        out["labels"] = labels
    return out


T = TypeVar("T")


def read_jsonl(path: Path, parse: Callable[[Any], T], bad_line: str, empty: str) -> list[T]:
    """``parse`` every non-blank JSON line of ``path``. A line that is not JSON or that ``parse``
    rejects raises ``"FILE:LINE: <bad_line> (why)"``; a file with no records raises
    ``"FILE: <empty>"``. Nothing is silently dropped."""
    items = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                items.append(parse(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: {bad_line} ({exc})") from exc
    if not items:
        raise ValueError(f"{path}: {empty}")
    return items
