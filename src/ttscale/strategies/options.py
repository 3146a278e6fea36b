"""Typed options of particle filtering, confidence voting and adaptive budgets.

Why a model per strategy: a misspelt or out-of-range option must fail before anything is
sampled, with one line naming the option, and the run key must hold the options as the
strategy understood them. The registry (``strategies/registry.py``) parses ``ctx.options`` into
these models before the strategy runs; ``options_of`` also accepts the raw dict, for callers
that invoke a strategy function directly.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ttscale.strategies.base import StrategyOptions


class BeyondOptions(StrategyOptions):
    """Base of the option models of this family (frozen, unknown keys are errors)."""


M = TypeVar("M", bound=BaseModel)


def options_of(options: Any, model: type[M], strategy: str) -> M:
    """``options`` as a ``model`` instance; a bad value raises one line naming the option."""
    if isinstance(options, model):
        return options
    raw = options.model_dump() if isinstance(options, BaseModel) else dict(options or {})
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "options"
        raise ValueError(f"{strategy}: option {where}={raw.get(where, '<missing>')!r}: "
                         f"{err['msg']}") from None
