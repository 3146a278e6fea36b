"""The compute-optimal frontier against best-of-N: matching budget, efficiency ratio, bootstrap.

The question the paper answers: with what budget does the compute-optimal policy reach the
accuracy that best-of-N reaches at N = 64 (or 16)? Here the compute-optimal curve is the
cross-validated one (``selection``) and its cost includes the difficulty probe, so:

* **matching budget**: walk the compute-optimal points in budget order (x = mean generations
  per question, probe included; y = accuracy) and take the first one that reaches best-of-N's
  accuracy; between two points the crossing is interpolated linearly in log2(generations) (and
  FLOPs likewise in log FLOPs). If the cheapest point already reaches it, the matching budget
  is at most that point's (``bound`` says so: the ratio is then a lower bound). If no point
  reaches it, there is no match (ratio ``None``);
* **efficiency ratio** = best-of-N's budget / matching budget (in generations), and the same in
  FLOPs (best-of-N's mean FLOPs / the compute-optimal FLOPs at the match);
* **bootstrap spread**: questions are resampled with replacement and the ratio recomputed on
  each resample, with the per-question cross-validated outcomes held fixed (the selection is
  not redone per resample). A resample where the policy never reaches best-of-N counts as ratio
  0, so the lower percentile stays honest; ``reached`` is the share of resamples with a match.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ttscale.optimal.data import Points
from ttscale.optimal.selection import Outcome

#: accuracies within this of each other count as equal (means of floats)
EPS = 1e-9


@dataclass(frozen=True)
class CurvePoint:
    budget: int
    accuracy: float
    generations: float
    flops: float


@dataclass(frozen=True)
class Match:
    generations: float
    flops: float
    #: True when the cheapest point already reaches the target: the true match is at most this
    bound: bool


def match(curve: Sequence[CurvePoint], target: float) -> Match | None:
    """Where ``curve`` (in budget order) first reaches accuracy ``target`` (module docstring)."""
    for i, p in enumerate(curve):
        if p.accuracy + EPS < target:
            continue
        if i == 0:
            return Match(p.generations, p.flops, bound=True)
        a = curve[i - 1]
        t = (target - a.accuracy) / (p.accuracy - a.accuracy)
        return Match(_log_interp(a.generations, p.generations, t),
                     _log_interp(a.flops, p.flops, t), bound=False)
    return None


def _log_interp(x0: float, x1: float, t: float) -> float:
    if x0 <= 0 or x1 <= 0:
        return x0 + t * (x1 - x0)
    return 2 ** (math.log2(x0) + t * (math.log2(x1) - math.log2(x0)))


class Frontier:
    """Per-question matrices of the compute-optimal outcomes and of the baseline, so that the
    curve of any (re)sample of questions is a weighted mean."""

    def __init__(self, outcomes: Mapping[int, Outcome], points: Points, baseline: str,
                 budgets: Sequence[int], ids: Sequence[str]) -> None:
        self.budgets = list(budgets)
        self.ids = list(ids)
        self.baseline = baseline
        self.co = {k: np.array([[getattr(outcomes[n], k)[q] for q in self.ids]
                                for n in self.budgets]) for k in ("acc", "gens", "flops")}
        self.base_budgets = [n for n in self.budgets if (baseline, n) in points]
        self.base = {k: np.array([[getattr(points[(baseline, n)], k)[q] for q in self.ids]
                                  for n in self.base_budgets]) for k in ("acc", "gens", "flops")}

    def _curve(self, mats: Mapping[str, np.ndarray], budgets: Sequence[int],
               w: np.ndarray) -> list[CurvePoint]:
        total = w.sum()
        means = {k: (m @ w) / total for k, m in mats.items()}
        return [CurvePoint(n, float(means["acc"][i]), float(means["gens"][i]),
                           float(means["flops"][i])) for i, n in enumerate(budgets)]

    def co_curve(self, w: np.ndarray | None = None) -> list[CurvePoint]:
        return self._curve(self.co, self.budgets, self._w(w))

    def base_curve(self, w: np.ndarray | None = None) -> list[CurvePoint]:
        return self._curve(self.base, self.base_budgets, self._w(w))

    def _w(self, w: np.ndarray | None) -> np.ndarray:
        return np.ones(len(self.ids)) if w is None else w

    def efficiency(self, target: int, w: np.ndarray | None = None) -> dict[str, Any]:
        """Matching budget and ratios against the baseline at budget ``target``."""
        if target not in self.base_budgets:
            raise ValueError(f"the sweep has no {self.baseline} point at N={target} "
                             f"(budgets: {', '.join(map(str, self.base_budgets))})")
        base = self.base_curve(w)[self.base_budgets.index(target)]
        m = match(self.co_curve(w), base.accuracy)
        out: dict[str, Any] = {
            "target_budget": target, "baseline": self.baseline,
            "baseline_accuracy": base.accuracy, "baseline_flops": base.flops,
            "matched_generations": None, "matched_flops": None, "ratio": None,
            "flops_ratio": None, "bound": False,
        }
        if m is not None:
            out.update(matched_generations=m.generations, matched_flops=m.flops,
                       ratio=target / m.generations,
                       flops_ratio=base.flops / m.flops if m.flops > 0 else None,
                       bound=m.bound)
        return out

    def bootstrap(self, target: int, n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
        """Spread of the ratios over ``n_boot`` resamples of the questions (module docstring)."""
        if n_boot < 1:
            return {"n": 0}
        rng = np.random.default_rng(seed)
        n = len(self.ids)
        ratios, flops_ratios, reached = [], [], 0
        for _ in range(n_boot):
            w = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
            e = self.efficiency(target, w)
            reached += e["ratio"] is not None
            ratios.append(e["ratio"] or 0.0)
            flops_ratios.append(e["flops_ratio"] or 0.0)
        r, fr = np.array(ratios), np.array(flops_ratios)
        return {"n": n_boot, "seed": seed, "reached": reached / n_boot,
                "ratio_median": float(np.median(r)), "ratio_p05": float(np.percentile(r, 5)),
                "ratio_p95": float(np.percentile(r, 95)),
                "flops_ratio_median": float(np.median(fr)),
                "flops_ratio_p05": float(np.percentile(fr, 5)),
                "flops_ratio_p95": float(np.percentile(fr, 95))}


def curve_dicts(curve: Sequence[CurvePoint]) -> list[dict[str, float]]:
    return [{"budget": p.budget, "accuracy": p.accuracy, "generations": p.generations,
             "flops": p.flops} for p in curve]
