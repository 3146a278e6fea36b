"""Loading transformers checkpoints from local directories, shared by the policy engine and the
transformers verifiers.

Why a module of its own: every in-process model (policy, PRM, ORM) must fail the same clear way on a
bad path, resolve ``dtype``/``device`` the same way, and count parameters the same way (FLOPs =
2 x parameters x tokens are only comparable when everyone counts alike).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import transformers

#: transformers renamed ``torch_dtype=`` to ``dtype=`` in 4.56; pass the name this install knows.
_DTYPE_KW = (
    "dtype"
    if tuple(int(p) for p in transformers.__version__.split(".")[:2] if p.isdigit()) >= (4, 56)
    else "torch_dtype"
)

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
           "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def check_model_dir(path: str | Path, what: str = "model") -> Path:
    """Return ``path`` as a Path if it is a local transformers model directory, else raise.

    Never falls through to a hub download: ttscale runs offline, and a typo must not turn into a
    network request or a cryptic ``OSError`` from deep inside transformers.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what} path {str(p)!r} does not exist")
    if not p.is_dir():
        raise ValueError(f"{what} path {str(p)!r} is a file; expected a model directory "
                         "(save_pretrained output with config.json)")
    if not (p / "config.json").is_file():
        raise ValueError(f"{what} directory {str(p)!r} has no config.json; "
                         "not a transformers model directory")
    return p


def read_config(path: Path) -> dict[str, Any]:
    """The raw config.json, without instantiating a config class (that could need remote code)."""
    try:
        return json.loads((path / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path / 'config.json'}: invalid JSON at line {e.lineno}: {e.msg}") from e


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device) -> torch.dtype | str:
    """``None``: float32 on CPU (fast and exact there), the checkpoint's own dtype elsewhere."""
    if dtype is None:
        return torch.float32 if torch.device(device).type == "cpu" else "auto"
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(_DTYPES)} or 'auto'")
    return _DTYPES[dtype]


def load_kwargs(dtype: str | torch.dtype | None, device: str | torch.device) -> dict[str, Any]:
    """Keyword arguments for ``from_pretrained`` that pin the dtype and forbid hub access."""
    return {_DTYPE_KW: resolve_dtype(dtype, device), "local_files_only": True}


def load_tokenizer(path: Path) -> Any:
    """The checkpoint's tokenizer; a fast one is required (offsets, speed)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot load a tokenizer from {str(path)!r}: {e}") from e
    return tok


def count_parameters(model: torch.nn.Module) -> int:
    """All parameters, embeddings included (the convention FLOPs = 2 x params x tokens uses)."""
    return int(sum(p.numel() for p in model.parameters()))
