"""Loading reward-model checkpoints so that a missing head is an error, not noise.

Why: ``from_pretrained`` of a checkpoint that lacks the head the chosen class needs (a causal-LM
PRM such as math-shepherd loaded as ``token-classification``; a policy given as a PRM) freshly
initialises that head and only logs a warning, so the "PRM" scores random noise and the run looks
fine. Every in-process reward model loads through :func:`load_checked`, which refuses such a
checkpoint with one line naming the weights it lacks; value-head weights stored beside a causal
LM (Skywork-o1-Open-PRM) are read with :func:`read_tensors`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ttscale.hf_loading import load_kwargs

__all__ = ["MissingWeightsError", "checkpoint_keys", "load_checked", "read_tensors"]


class MissingWeightsError(ValueError):
    """The checkpoint lacks weights the model class needs (they would be random)."""


def _shown(keys: set[str] | list[str], most: int = 4) -> str:
    ordered = sorted(keys)
    more = f" and {len(ordered) - most} more" if len(ordered) > most else ""
    return ", ".join(ordered[:most]) + more


def load_checked(auto_cls: Any, path: Path, what: str, dtype: Any, device: str,
                 **kwargs: Any) -> Any:
    """``auto_cls.from_pretrained(path)`` that refuses a checkpoint missing any weight of the
    class (``what`` names the model kind in the error) or holding one of the wrong shape."""
    from transformers.utils import logging as hf_logging

    # transformers' own load report (MISSING / UNEXPECTED keys) is replaced by the check below;
    # unexpected keys are normal here (a PRM's lm_head, a value head beside the backbone)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = auto_cls.from_pretrained(str(path), output_loading_info=True,
                                               **load_kwargs(dtype, device), **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ValueError(f"cannot load a {what} from {str(path)!r}: "
                         f"{' '.join(str(e).split())[:300]}") from e
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = set(info.get("missing_keys") or ())
    if missing:
        raise MissingWeightsError(
            f"{path}: not a {what} checkpoint: it lacks {_shown(missing)} (they would be freshly "
            f"initialised and score noise); choose the prm_kind that matches the checkpoint")
    bad = info.get("mismatched_keys") or ()
    if bad:
        names = [k[0] if isinstance(k, tuple) else str(k) for k in bad]
        raise MissingWeightsError(f"{path}: weights of the wrong shape for a {what}: "
                                  f"{_shown(names)}")
    return model


def _weight_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map") or {}
        return sorted({path / f for f in weight_map.values()})
    single = path / "model.safetensors"
    return [single] if single.is_file() else []


def checkpoint_keys(path: Path) -> set[str]:
    """Tensor names stored in a safetensors checkpoint (single file or sharded index), read
    from the file headers without loading any tensor; empty when there is no safetensors."""
    from safetensors import safe_open

    keys: set[str] = set()
    for f in _weight_files(path):
        with safe_open(str(f), framework="pt") as st:
            keys.update(st.keys())
    return keys


def read_tensors(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    """Every tensor whose name starts with ``prefix``, keyed by the rest of its name."""
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    for f in _weight_files(path):
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():  # noqa: SIM118  (safe_open is not a mapping)
                if k.startswith(prefix):
                    out[k[len(prefix):]] = st.get_tensor(k)
    return out
