"""Per-bin strategy selection with 2-fold cross-validation over questions (Snell et al. 2024).

For every (difficulty bin, budget) the arm (strategy + hyper-parameters) with the highest mean
accuracy on the selection questions of that bin is chosen; ties go to the cheaper arm (mean
FLOPs), then to the label in alphabetical order, so a selection is deterministic. The chosen
policy is then scored on questions it never saw:

* questions are split into two halves (a seeded shuffle of the sorted ids);
* fold f: select on half f, evaluate on the other half; every question is evaluated exactly
  once, by the policy of the fold it was NOT in;
* bins are fitted on the selection half only (``Binner``), and the evaluation half is binned the
  way a deployment would bin it (the oracle bins of its own pool, or the online probe against
  the selection half's cut points). Nothing of the evaluation half reaches the selection.

A bin with no selection question (tiny sets) falls back to the choice over all selection
questions at that budget, and says so (``fallback``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ttscale.analysis.bins import oracle_bins, sort_labels
from ttscale.optimal.data import Point, Points
from ttscale.optimal.difficulty import fit_thresholds, predicted_bins


@dataclass(frozen=True)
class Choice:
    """The arm chosen for one (bin, budget), and how it did on the selection questions."""

    label: str
    accuracy: float
    flops: float
    n_questions: int
    fallback: bool = False


Policy = dict[int, dict[int, Choice]]


def split_folds(ids: Sequence[str], seed: int = 0) -> tuple[list[str], list[str]]:
    """Two halves of the questions (sizes differ by at most one), from a seeded shuffle of the
    sorted ids: the split depends on the question set and the seed only."""
    order = sorted(set(ids))
    if len(order) != len(ids):
        raise ValueError("question ids must be unique to split them into folds")
    if len(order) < 2:
        raise ValueError(f"2-fold cross-validation needs at least 2 questions, got {len(order)}")
    random.Random(seed).shuffle(order)
    half = (len(order) + 1) // 2
    return order[:half], order[half:]


def _mean(values: Mapping[str, float], qs: Sequence[str]) -> float:
    return sum(values[q] for q in qs) / len(qs)


def choose(points: Points, budget: int, questions: Sequence[str]) -> Choice:
    """The best arm at ``budget`` over ``questions`` (every arm with a result for all of them)."""
    if not questions:
        raise ValueError("cannot choose a strategy on zero questions")
    best: tuple[float, float, str] | None = None
    for (label, n), pt in points.items():
        if n != budget or any(q not in pt.acc for q in questions):
            continue
        key = (-_mean(pt.acc, questions), _mean(pt.flops, questions), label)
        if best is None or key < best:
            best = key
    if best is None:
        raise ValueError(f"no strategy has results at N={budget} for these questions")
    return Choice(best[2], -best[0], best[1], len(questions))


def select_policy(points: Points, budgets: Sequence[int], questions: Sequence[str],
                  bins: Mapping[str, int], n_bins: int) -> Policy:
    """Choose an arm per (bin 1..n_bins, budget) using ``questions`` only."""
    policy: Policy = {}
    for b in range(1, n_bins + 1):
        qs = [q for q in questions if bins.get(q) == b]
        per: dict[int, Choice] = {}
        for n in budgets:
            if qs:
                per[n] = choose(points, n, qs)
            else:
                c = choose(points, n, questions)
                per[n] = Choice(c.label, c.accuracy, c.flops, 0, fallback=True)
        policy[b] = per
    return policy


# ---- evaluation ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """Per-question result of applying a policy at one budget."""

    acc: dict[str, float] = field(default_factory=dict)
    gens: dict[str, float] = field(default_factory=dict)
    flops: dict[str, float] = field(default_factory=dict)
    bins: dict[str, int] = field(default_factory=dict)
    label: dict[str, str] = field(default_factory=dict)

    def update(self, other: Outcome) -> None:
        for name in ("acc", "gens", "flops", "bins", "label"):
            getattr(self, name).update(getattr(other, name))


def apply_policy(policy: Policy, points: Points, budget: int, questions: Sequence[str],
                 bins: Mapping[str, int]) -> Outcome:
    """Each question gets the arm of its bin at ``budget``; its accuracy and cost are read off
    that arm's point (a question binned beyond the policy's bins takes the hardest bin)."""
    out = Outcome()
    last = max(policy)
    for q in questions:
        b = min(bins[q], last)
        label = policy[b][budget].label
        pt: Point = points[(label, budget)]
        out.acc[q], out.gens[q], out.flops[q] = pt.acc[q], pt.gens[q], pt.flops[q]
        out.bins[q], out.label[q] = b, label
    return out


def summarize_outcome(budget: int, o: Outcome, qs: Sequence[str] | None = None) -> dict:
    """Mean accuracy, generations and FLOPs (overall and per bin) of an outcome."""
    qs = list(o.acc) if qs is None else list(qs)
    by_bin: dict[str, list[str]] = {}
    for q in qs:
        by_bin.setdefault(str(o.bins[q]), []).append(q)
    choices: dict[str, int] = {}
    for q in qs:
        choices[o.label[q]] = choices.get(o.label[q], 0) + 1
    order = sort_labels(by_bin)
    return {
        "budget": budget, "n": len(qs),
        "accuracy": _mean(o.acc, qs), "generations": _mean(o.gens, qs),
        "flops": _mean(o.flops, qs),
        "accuracy_by_bin": {b: _mean(o.acc, by_bin[b]) for b in order},
        "flops_by_bin": {b: _mean(o.flops, by_bin[b]) for b in order},
        "generations_by_bin": {b: _mean(o.gens, by_bin[b]) for b in order},
        "n_by_bin": {b: len(by_bin[b]) for b in order},
        "choices": dict(sorted(choices.items())),
    }


# ---- bins fitted on one fold -------------------------------------------------------------


class Binner(Protocol):
    """How questions are binned: fitted on the selection questions only."""

    kind: str

    def fit(self, questions: Sequence[str]) -> FittedBins: ...

    def assign(self, fitted: FittedBins, questions: Sequence[str]) -> dict[str, int]: ...


@dataclass
class FittedBins:
    #: bins of the selection questions (what the policy is chosen on)
    train: dict[str, int]
    n_bins: int
    #: cut points of the predicted statistic (None for oracle bins)
    thresholds: list[float] | None
    binner: Binner

    def assign(self, questions: Sequence[str]) -> dict[str, int]:
        """Bins of new (evaluation) questions, as a deployment would get them."""
        return self.binner.assign(self, questions)


@dataclass
class OracleBinner:
    """Oracle bins: quantiles of pool pass@1 (gold used), within each set of questions: the
    selection half is binned among itself and the evaluation half among itself."""

    pass1: Mapping[str, float]
    n_bins: int = 5
    kind: str = "oracle"

    def fit(self, questions: Sequence[str]) -> FittedBins:
        train = oracle_bins({q: self.pass1[q] for q in questions}, self.n_bins)
        return FittedBins(train, max(train.values()), None, self)

    def assign(self, fitted: FittedBins, questions: Sequence[str]) -> dict[str, int]:
        return oracle_bins({q: self.pass1[q] for q in questions}, self.n_bins)


@dataclass
class PredictedBinner:
    """Predicted bins: cut points of the pool-mean PRM score fitted on the selection half; new
    questions are binned by ``assign_scores`` (the online probe's ``k``-sample mean) against
    those cut points, as a deployment does."""

    pool_mean: Mapping[str, float]
    assign_scores: Mapping[str, float]
    n_bins: int = 5
    kind: str = "predicted"

    def fit(self, questions: Sequence[str]) -> FittedBins:
        cuts = fit_thresholds({q: self.pool_mean[q] for q in questions}, self.n_bins)
        train = predicted_bins({q: self.pool_mean[q] for q in questions}, cuts)
        return FittedBins(train, len(cuts) + 1, cuts, self)

    def assign(self, fitted: FittedBins, questions: Sequence[str]) -> dict[str, int]:
        assert fitted.thresholds is not None
        return predicted_bins({q: self.assign_scores[q] for q in questions}, fitted.thresholds)


# ---- cross-validation ----------------------------------------------------------------------


@dataclass
class FoldResult:
    selection: list[str]
    evaluation: list[str]
    fitted: FittedBins
    policy: Policy
    outcomes: dict[int, Outcome]


@dataclass
class CrossValidation:
    folds: list[FoldResult]
    #: every question evaluated once, by the policy of the other fold
    pooled: dict[int, Outcome]
    budgets: list[int]

    def curve(self, fold: int | None = None) -> list[dict]:
        """Per budget: the summary of one fold's evaluation (None: all questions pooled)."""
        out = []
        for n in self.budgets:
            o = self.pooled[n] if fold is None else self.folds[fold].outcomes[n]
            out.append(summarize_outcome(n, o))
        return out


def cross_validate(points: Points, budgets: Sequence[int], ids: Sequence[str], binner: Binner,
                   seed: int = 0) -> CrossValidation:
    """2-fold cross-validated compute-optimal selection (module docstring)."""
    halves = split_folds(ids, seed)
    folds: list[FoldResult] = []
    pooled = {n: Outcome() for n in budgets}
    for f in (0, 1):
        sel, ev = halves[f], halves[1 - f]
        fitted = binner.fit(sel)
        policy = select_policy(points, budgets, sel, fitted.train, fitted.n_bins)
        ev_bins = fitted.assign(ev)
        outcomes = {n: apply_policy(policy, points, n, ev, ev_bins) for n in budgets}
        for n in budgets:
            pooled[n].update(outcomes[n])
        folds.append(FoldResult(sel, ev, fitted, policy, outcomes))
    return CrossValidation(folds, pooled, list(budgets))


def policy_to_dict(policy: Policy) -> dict[str, dict[str, dict]]:
    return {str(b): {str(n): {"label": c.label, "accuracy": c.accuracy, "flops": c.flops,
                              "n_questions": c.n_questions, "fallback": c.fallback}
                     for n, c in per.items()} for b, per in policy.items()}
