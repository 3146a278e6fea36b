"""What a sweep runs: the strategies it compares, the budgets, and which (strategy, budget) pairs
are valid.

Why a plan separate from the sweep: the CLI must reject a typo in ``--strategies`` or
``--budgets`` in milliseconds, before any model is loaded, and the report must name the same
strategies the sweep computed.

Two kinds of strategy:

* **pool** strategies (majority, best-of-n, weighted-best-of-n, and the ``oracle`` pass@N
  reference) are read off one pool of ``N_max`` samples per problem, for every budget at once;
* **run** strategies (beam-m4, beam-msqrt, dvts, lookahead and the paper's lookahead grid
  lookahead-k{1,3}-m{4,sqrt} (alias ``lookahead-grid``), the revision ratios revisions-par,
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

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ttscale.strategies.registry import own_options

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
    own way. Whether its runs need the PRM or the revision model is its base strategy's
    declaration (``strategies.registry``), which also decides the run key.
    """

    name: str
    base: str
    pool_method: str | None = None
    width: int | str | None = None
    chain: int | str | None = None
    budget_check: BudgetCheck | None = None
    extra_options: Mapping[str, Any] = field(default_factory=dict)
    #: N is the most it may spend: it stops per question, so curves place its points at the
    #: mean realised cost (generations, FLOPs), not at N
    adaptive_cost: bool = False

    @property
    def needs_verifier(self) -> bool:
        from ttscale.strategies.registry import get_spec

        return get_spec(self.base).needs_verifier

    @property
    def uses_reviser(self) -> bool:
        from ttscale.strategies.registry import get_spec

        return get_spec(self.base).uses_reviser

    @property
    def from_pool(self) -> bool:
        return self.pool_method is not None

    def run_options(self, budget: int, base_options: Mapping[str, Any]) -> dict[str, Any]:
        """The ``options`` of this strategy's run at ``budget`` (raises if the budget is invalid;
        call :meth:`skip_reason` first)."""
        reason = self.skip_reason(budget, base_options)
        if reason:
            raise ValueError(f"{self.name} cannot run at N={budget}: {reason}")
        options = own_options(self.base, {**base_options, **self.extra_options})
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

    The strategy's own options model decides, so a reason here is exactly a run's error."""
    from ttscale.strategies.registry import parse_options

    opts: Any = parse_options("combined", own_options("combined", options))
    n_beam = round(opts.search_share * budget)
    try:
        _, n_rev = opts.split(budget)
    except ValueError:
        return (f"beam search's share round({opts.search_share} x N) = {n_beam} must be a "
                f"multiple of the beam width M={opts.beam_width} and >= M")
    try:
        opts.check_budget(budget)
    except ValueError:
        return (f"the revisions' share N - {n_beam} = {n_rev} must be a multiple of the "
                f"chain length L={opts.chain_length}")
    return None


def any_budget(budget: int, options: Mapping[str, Any]) -> str | None:
    """Strategies that run at every N >= 1 (particle filtering, confidence, adaptive)."""
    return None


ORACLE = SweepStrategy("oracle", "majority", pool_method="pass")

#: every strategy name ``--strategies`` accepts, in display order
STRATEGIES: dict[str, SweepStrategy] = {s.name: s for s in (
    SweepStrategy("majority", "majority", pool_method="majority"),
    SweepStrategy("best-of-n", "best-of-n", pool_method="answered-argmax"),
    SweepStrategy("weighted-best-of-n", "weighted-best-of-n", pool_method="weighted"),
    SweepStrategy("beam-m4", "beam", width=4),
    SweepStrategy("beam-msqrt", "beam", width="sqrt"),
    SweepStrategy("dvts", "dvts"),
    SweepStrategy("lookahead", "lookahead"),
    # the paper's lookahead grid (Fig. 3): k in {1, 3}, M in {sqrt(N), 4}; each point costs
    # N x (k + 1) generations and is compared at that cost
    SweepStrategy("lookahead-k1-m4", "lookahead", width=4, extra_options={"lookahead": 1}),
    SweepStrategy("lookahead-k1-msqrt", "lookahead", width="sqrt",
                  extra_options={"lookahead": 1}),
    SweepStrategy("lookahead-k3-m4", "lookahead", width=4, extra_options={"lookahead": 3}),
    SweepStrategy("lookahead-k3-msqrt", "lookahead", width="sqrt",
                  extra_options={"lookahead": 3}),
    SweepStrategy("revisions-par", "revisions", chain=1),
    SweepStrategy("revisions-l4", "revisions", chain=4),
    SweepStrategy("revisions-sqrt", "revisions", chain="sqrt"),
    SweepStrategy("revisions-seq", "revisions", chain="n"),
    SweepStrategy("combined", "combined", budget_check=combined_skip_reason),
    SweepStrategy("particle-filtering", "particle-filtering", budget_check=any_budget),
    SweepStrategy("confidence-vote", "confidence-vote", budget_check=any_budget),
    SweepStrategy("deepconf-online", "deepconf-online", budget_check=any_budget,
                  adaptive_cost=True),
    SweepStrategy("adaptive", "adaptive", budget_check=any_budget, adaptive_cost=True),
    SweepStrategy("adaptive-prm", "adaptive-prm", budget_check=any_budget, adaptive_cost=True),
)}

#: names that stand for several curves
ALIASES: dict[str, tuple[str, ...]] = {
    "beam": ("beam-m4", "beam-msqrt"),
    "lookahead-grid": ("lookahead-k1-m4", "lookahead-k1-msqrt", "lookahead-k3-m4",
                       "lookahead-k3-msqrt"),
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

    def check_options(self, base_options: Mapping[str, Any]) -> None:
        """A shared option that no strategy of this sweep takes is a typo: one-line error."""
        from ttscale.strategies.registry import get_spec

        bases = {s.base for s in self.strategies} | {self.pool_strategy}
        known = {k for b in bases for k in get_spec(b).options.model_fields}
        for key in base_options:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"option {key!r}: no strategy of this sweep "
                                 f"({', '.join(sorted(bases))}) takes it{hint}")

    def runs(self, base_options: Mapping[str, Any]
             ) -> tuple[list[tuple[SweepStrategy, int]], dict[str, dict[str, str]]]:
        """The (run strategy, budget) pairs to compute, and the skipped ones with reasons."""
        self.check_options(base_options)
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
