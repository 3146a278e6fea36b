"""What a sweep runs: the strategies it compares, the budgets, and which (strategy, budget) pairs
are valid.

Why a plan separate from the sweep: the CLI must reject a typo in ``--strategies`` or
``--budgets`` in milliseconds, before any model is loaded, and the report must name the same
strategies the sweep computed.

Two kinds of strategy:

* **pool** strategies (majority, best-of-n, weighted-best-of-n, and the ``oracle`` pass@N
  reference) are read off one pool of ``N_max`` samples per problem, for every budget at once;
* **run** strategies (beam-m4, beam-msqrt, dvts, lookahead, the revision ratios revisions-par,
  revisions-l4, revisions-sqrt, revisions-seq, combined, particle-filtering, confidence-vote,
  and the adaptive ones: deepconf-online, adaptive, adaptive-prm) search per budget, each
  (strategy, budget) a stored run that resumes like ``ttscale run``. For the adaptive ones N is
  a cap: their points sit at their mean realised cost (``adaptive_cost``).

A run strategy fixes how its budget is split, and so which budgets it has a point at: ``width``
is a beam width M (N a multiple of M), ``chain`` a revision chain length L (N/L chains of L
attempts: the paper's sequential:parallel ratio), ``budget_check`` any other rule (combined's
split between beam search and revisions). The fixed value goes into the run's options, so the
stored run, its key and a compute-optimal replay all see it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: ``SweepStrategy.budget_check``: why a strategy has no run at N with these options (or None)
BudgetCheck = Callable[[int, Mapping[str, Any]], str | None]


@dataclass(frozen=True)
class SweepStrategy:
    """One curve of the sweep.

    ``base`` is the registered strategy a run uses; ``pool_method`` the ``analysis.pools`` method
    that reads it off the pool (None for run strategies); ``width`` fixes the beam width
    (an int, ``"sqrt"`` for M = sqrt(N), or None to take ``options.beam_width``, default 4);
    ``chain`` fixes a revision chain length instead (an int, ``"sqrt"`` for L = sqrt(N), ``"n"``
    for L = N); ``budget_check`` replaces both rules for strategies that split the budget their
    own way. ``uses_reviser``: its runs need the revision model (must agree with
    ``runner.uses_reviser``, which decides the run key).
    """

    name: str
    base: str
    pool_method: str | None = None
    width: int | str | None = None
    chain: int | str | None = None
    budget_check: BudgetCheck | None = None
    needs_verifier: bool = True
    uses_reviser: bool = False
    extra_options: Mapping[str, Any] = field(default_factory=dict)
    #: N is the most it may spend: it stops per question, so curves place its points at the
    #: mean realised cost (generations, FLOPs), not at N
    adaptive_cost: bool = False

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
        if self.chain is not None:
            options["chain_length"] = self.chain_length(budget)
        elif self.width is not None:  # else the strategy reads options.beam_width itself, and a
            # `ttscale run` with the same flags shares this run's key
            options["beam_width"] = self.beam_width(budget, base_options)
        return options

    def chain_length(self, budget: int) -> int | None:
        """The revision chain length L at ``budget`` (None: not a fixed-ratio revision curve)."""
        if self.chain == "n":
            return budget
        if self.chain == "sqrt":
            return math.isqrt(budget)
        return self.chain if isinstance(self.chain, int) else None

    def beam_width(self, budget: int, base_options: Mapping[str, Any]) -> int | None:
        if self.from_pool or self.chain is not None or self.budget_check is not None:
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
        if self.budget_check is not None:
            return self.budget_check(budget, {**base_options, **self.extra_options})
        if self.chain is not None:
            return self._chain_skip_reason(budget)
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

    def _chain_skip_reason(self, budget: int) -> str | None:
        if self.chain == "sqrt":
            root = math.isqrt(budget)
            return None if root * root == budget else "L = sqrt(N) needs N to be a square"
        length = self.chain_length(budget)
        assert length is not None
        if budget < length or budget % length:
            return f"N must be a multiple of the chain length L={length} and >= L"
        return None


def combined_skip_reason(budget: int, options: Mapping[str, Any]) -> str | None:
    """Why ``combined`` has no run at ``budget``: its beam search share ``round(search_share x
    N)`` must be a multiple of the beam width and at least one beam, and the revision share a
    multiple of the chain length. Bad option values raise (they are wrong at every budget).

    The strategy's own option readers are used, so a reason here is exactly a run's error."""
    from types import SimpleNamespace

    from ttscale.strategies.combined import search_share_option
    from ttscale.strategies.common import int_option
    from ttscale.strategies.revisions import window_option

    ctx: Any = SimpleNamespace(options=dict(options))
    share, width = search_share_option(ctx), int_option(ctx, "beam_width", 4, 1)
    window_option(ctx)  # a bad revision_window is wrong at every budget: raise now
    n_beam = round(share * budget)
    if n_beam < width or n_beam % width:
        return (f"beam search's share round({share} x N) = {n_beam} must be a multiple of the "
                f"beam width M={width} and >= M")
    n_rev = budget - n_beam
    if n_rev and "chain_length" in options:
        length = int_option(ctx, "chain_length", 1, 1)
        if n_rev % length:
            return (f"the revisions' share N - {n_beam} = {n_rev} must be a multiple of the "
                    f"chain length L={length}")
    return None  # the default L (a divisor of N - N_b) always fits


def any_budget(budget: int, options: Mapping[str, Any]) -> str | None:
    """Strategies that run at every N >= 1 (particle filtering, confidence, adaptive)."""
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
    SweepStrategy("revisions-par", "revisions", chain=1, uses_reviser=True),
    SweepStrategy("revisions-l4", "revisions", chain=4, uses_reviser=True),
    SweepStrategy("revisions-sqrt", "revisions", chain="sqrt", uses_reviser=True),
    SweepStrategy("revisions-seq", "revisions", chain="n", uses_reviser=True),
    SweepStrategy("combined", "combined", budget_check=combined_skip_reason, uses_reviser=True),
    SweepStrategy("particle-filtering", "particle-filtering", budget_check=any_budget),
    SweepStrategy("confidence-vote", "confidence-vote", budget_check=any_budget,
                  needs_verifier=False),
    SweepStrategy("deepconf-online", "deepconf-online", budget_check=any_budget,
                  needs_verifier=False, adaptive_cost=True),
    SweepStrategy("adaptive", "adaptive", budget_check=any_budget, needs_verifier=False,
                  adaptive_cost=True),
    SweepStrategy("adaptive-prm", "adaptive-prm", budget_check=any_budget, adaptive_cost=True),
)}

#: names that stand for several curves
ALIASES: dict[str, tuple[str, ...]] = {
    "beam": ("beam-m4", "beam-msqrt"),
    "revisions": ("revisions-par", "revisions-l4", "revisions-sqrt", "revisions-seq"),
}

#: the revision curves are left out: they need a revision model (the testbed ships one; a
#: policy that never saw the revision prompt cannot revise its own attempts)
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
    def uses_reviser(self) -> bool:
        return any(s.uses_reviser for s in self.strategies)

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
