"""Typed options of the strategies in this package that define a model (pydantic, frozen).

Why a model per strategy: a misspelt or out-of-range option must fail before anything is
sampled, with one line naming the option, and the run key must hold the options as the
strategy understood them. ``options_of`` accepts the parsed model itself (what the typed
registry hands a strategy) or the raw dict of ``--set options.X=...`` values.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

try:  # the typed registry's base class, once it exists
    from ttscale.strategies.base import StrategyOptions as _Base  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - before the typed registry lands
    class _Base(BaseModel):  # type: ignore[no-redef]
        model_config = ConfigDict(extra="forbid", frozen=True)

        def check_budget(self, budget: int) -> None:
            """Raise a one-line ValueError when ``budget`` does not fit these options."""


class BeyondOptions(_Base):  # type: ignore[misc,valid-type]
    """Base of the option models of particle filtering, confidence voting and adaptive
    budgets: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
