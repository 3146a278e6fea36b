"""What a sweep runs: the strategies it compares, the budgets, and which (strategy, budget) pairs
are valid.

Why a plan separate from the sweep: the CLI must reject a typo in ``--strategies`` or
``--budgets`` in milliseconds, before any model is loaded, and the report must name the same
strategies the sweep computed.

Two kinds of strategy:

* **pool** strategies (majority, best-of-n, weighted-best-of-n, and the ``oracle`` pass@N
  reference) are read off one pool of ``N_max`` samples per problem, for every budget at once;
* **run** strategies (beam-m4, beam-msqrt, dvts, lookahead) search per budget, each (strategy,
  budget) a stored run that resumes like ``ttscale run``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SweepStrategy:
    """One curve of the sweep.

    ``base`` is the registered strategy a run uses; ``pool_method`` the ``analysis.pools`` method
    that reads it off the pool (None for run strategies); ``width`` fixes the beam width
    (an int, ``"sqrt"`` for M = sqrt(N), or None to take ``options.beam_width``, default 4).
    """

    name: str
    base: str
    pool_method: str | None = None
    width: int | str | None = None
    needs_verifier: bool = True
    extra_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def from_pool(self) -> bool:
        return self.pool_method is not None

    def run_options(self, budget: int, base_options: Mapping[str, Any]) -> dict[str, Any]:
        """The ``options`` of this strategy's run at ``budget`` (raises if the budget is invalid;
        call :meth:`skip_reason` first)."""
        reason = self.skip_reason(budget, base_options)
        if reason:
            raise ValueError(f"{self.name} cannot run at N={budget}: {reason}")
        options = {**base_options, **self.extra_options}
        if self.width is not None:  # else the strategy reads options.beam_width itself, and a
            # `ttscale run` with the same flags shares this run's key
            options["beam_width"] = self.beam_width(budget, base_options)
        return options

    def beam_width(self, budget: int, base_options: Mapping[str, Any]) -> int | None:
        if self.from_pool:
            return None
        if self.width == "sqrt":
            return math.isqrt(budget)
        if isinstance(self.width, int):
            return self.width
        value = base_options.get("beam_width", 4)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"option beam_width={value!r}: expected an integer >= 1")
        return value

    def skip_reason(self, budget: int, base_options: Mapping[str, Any]) -> str | None:
        """Why this strategy has no point at ``budget`` (None when it has one)."""
        if self.from_pool:
            return None
        if self.width == "sqrt":
            root = math.isqrt(budget)
            if budget < 4 or root * root != budget:
                return "M = sqrt(N) needs N to be a square >= 4"
            return None
        width = self.beam_width(budget, base_options)
        assert width is not None
        if budget < width or budget % width:
            return f"N must be a multiple of the beam width M={width} and >= M"
        return None


ORACLE = SweepStrategy("oracle", "majority", pool_method="pass", needs_verifier=False)

#: every strategy name ``--strategies`` accepts, in display order
STRATEGIES: dict[str, SweepStrategy] = {s.name: s for s in (
    SweepStrategy("majority", "majority", pool_method="majority", needs_verifier=False),
    SweepStrategy("best-of-n", "best-of-n", pool_method="answered-argmax"),
    SweepStrategy("weighted-best-of-n", "weighted-best-of-n", pool_method="weighted"),
    SweepStrategy("beam-m4", "beam", width=4),
    SweepStrategy("beam-msqrt", "beam", width="sqrt"),
    SweepStrategy("dvts", "dvts"),
    SweepStrategy("lookahead", "lookahead"),
)}

#: names that stand for several curves
ALIASES: dict[str, tuple[str, ...]] = {"beam": ("beam-m4", "beam-msqrt")}

DEFAULT_STRATEGIES = ("majority", "best-of-n", "weighted-best-of-n", "beam", "dvts", "lookahead")


def parse_strategies(spec: str | Iterable[str]) -> list[SweepStrategy]:
    """``"majority,beam,dvts"`` -> strategies in display order, aliases expanded, no repeats."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for raw in items:
        name = raw.strip()
        if not name:
            continue
        expanded = ALIASES.get(name, (name,))
        for n in expanded:
            if n not in STRATEGIES:
                known = ", ".join([*STRATEGIES, *ALIASES])
                raise ValueError(f"--strategies: unknown strategy {name!r}; choose from {known}")
            if n not in names:
                names.append(n)
    if not names:
        raise ValueError("--strategies: give at least one strategy, e.g. majority,beam")
    order = list(STRATEGIES)
    return [STRATEGIES[n] for n in sorted(names, key=order.index)]


def parse_budgets(spec: str | Iterable[int | str]) -> list[int]:
    """``"1,4,16,64"`` -> sorted distinct budgets, each an integer >= 1."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: set[int] = set()
    for raw in items:
        text = str(raw).strip()
        if not text:
            continue
        if isinstance(raw, bool) or not text.isdigit() or int(text) < 1:
            raise ValueError(f"--budgets: {text!r} is not an integer >= 1 (e.g. --budgets 1,4,16)")
        out.add(int(text))
    if not out:
        raise ValueError("--budgets: give at least one budget, e.g. --budgets 1,4,16")
    return sorted(out)


@dataclass(frozen=True)
class SweepPlan:
    """The strategies and budgets of one sweep; ``pool_size`` is the largest budget."""

    strategies: tuple[SweepStrategy, ...]
    budgets: tuple[int, ...]

    @property
    def pool_size(self) -> int:
        return max(self.budgets)

    @property
    def needs_verifier(self) -> bool:
        return any(s.needs_verifier for s in self.strategies)

    @property
    def pool_strategy(self) -> str:
        """The registered strategy whose run at N_max is the pool: ``weighted-best-of-n`` scores
        every sample with the PRM; ``majority`` (the same samples, common random numbers) when no
        strategy of this sweep needs a verifier, so none is loaded."""
        return "weighted-best-of-n" if self.needs_verifier else "majority"

    def runs(self, base_options: Mapping[str, Any]
             ) -> tuple[list[tuple[SweepStrategy, int]], dict[str, dict[str, str]]]:
        """The (run strategy, budget) pairs to compute, and the skipped ones with reasons."""
        todo: list[tuple[SweepStrategy, int]] = []
        skipped: dict[str, dict[str, str]] = {}
        for s in self.strategies:
            if s.from_pool:
                continue
            for n in self.budgets:
                reason = s.skip_reason(n, base_options)
                if reason:
                    skipped.setdefault(s.name, {})[str(n)] = reason
                else:
                    todo.append((s, n))
        return todo, skipped
