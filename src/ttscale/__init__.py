"""ttscale: compute-optimal test-time scaling.

The Python API: ``from ttscale import Session`` (see ``ttscale.session``). Imported on first use,
so ``import ttscale`` (and the CLI's ``--help``) stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Session", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Session":
        from ttscale.session import Session

        return Session
    raise AttributeError(f"module 'ttscale' has no attribute {name!r}")
