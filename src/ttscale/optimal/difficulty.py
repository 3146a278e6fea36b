"""Question difficulty for compute-optimal scaling: predicted bins and the online probe.

Snell et al. 2024 bin questions into five difficulty quantiles and pick a strategy per bin. Two
kinds of bins are used here:

* **oracle** bins: the policy's pass@1 estimated from the sweep's pool, which needs the gold
  answer (``ttscale.analysis.bins.oracle_bins``; reused, not duplicated here);
* **predicted** bins: the mean PRM final-step score over the question's pool; no gold answer is
  used. Five equal-count bins, 1 easiest (highest mean score); the four cut points between them
  are saved in the policy table so that new questions can be binned.

A deployed policy cannot look at a pool of 64 samples per question, so it uses the **online
probe**: sample ``k`` (default 4) full solutions, score them with the PRM, and bin the mean
final-step score with the saved cut points (the mean of ``k`` samples estimates the pool mean,
so the same cut points apply). Everything the probe spends is charged: its policy and PRM FLOPs
go to ``Cost.difficulty_flops`` (not ``policy_flops``/``prm_flops``), its tokens to the token
counters and its ``k`` samples to ``generations``.

Which probe samples are reused (``REUSABLE``): when the chosen strategy draws independent full
solutions from the problem prompt (majority, best-of-N, weighted best-of-N), the probe's ``k``
samples ARE ``min(N, k)`` of its ``N`` samples, so the probe costs only what exceeds the budget
(``max(N, k)`` generations in all). Tree searches and revisions cannot use finished samples
(their first step is sampled fresh, revisions read a different prompt), so for them the probe
is ``k`` generations on top of ``N``. The same rule is applied by the ``compute-optimal``
strategy and by the offline analysis (``optimal.data``), so both count the same cost.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ttscale.analysis.bins import N_BINS, oracle_bins
from ttscale.engines.base import SamplingParams
from ttscale.types import Candidate, Completion, Cost, Problem

if TYPE_CHECKING:
    from ttscale.strategies.base import SearchContext

#: default number of probe samples
PROBE_K = 4
#: strategies whose N samples are independent full solutions of the problem prompt: the probe's
#: samples can be reused as part of them
REUSABLE = frozenset({"majority", "best-of-n", "weighted-best-of-n"})
#: what predicted bins and the probe measure (recorded in the policy table)
STATISTIC = "mean PRM final-step score"


def final_score(scores: Sequence[float]) -> float:
    """A sample's final-step PRM score; a sample without steps (nothing scored) counts as 0,
    the same convention as ``verifiers.base.aggregate`` for an empty solution."""
    return float(scores[-1]) if scores else 0.0


def mean_final_score(samples: Sequence[Sequence[float]]) -> float:
    """Mean final-step score of a question's samples (each a list of per-step scores)."""
    if not samples:
        raise ValueError("cannot estimate difficulty from zero samples")
    return sum(final_score(s) for s in samples) / len(samples)


def fit_thresholds(values: Mapping[str, float], n_bins: int = N_BINS) -> list[float]:
    """Ascending cut points that split ``values`` (question id -> mean score) into equal-count
    bins, the same ranking as the oracle bins (``oracle_bins``: higher value = easier, ties
    broken by a hash of the id). Fewer bins when there are fewer questions than bins.

    A cut lies halfway between the lowest value of bin ``b`` and the highest of bin ``b + 1``;
    a value equal to a cut goes to the easier bin (see :func:`bin_of`).
    """
    if not values:
        raise ValueError("cannot fit difficulty bins on zero questions")
    for pid, v in values.items():
        if not math.isfinite(v):
            raise ValueError(f"question {pid!r}: difficulty score {v!r} is not a finite number")
    bins = oracle_bins(values, n_bins)
    k = max(bins.values())
    cuts = []
    for b in range(1, k):
        low_easier = min(values[q] for q, x in bins.items() if x == b)
        high_harder = max(values[q] for q, x in bins.items() if x == b + 1)
        cuts.append((low_easier + high_harder) / 2.0)
    return sorted(cuts)


def bin_of(value: float, thresholds: Sequence[float]) -> int:
    """Bin 1 (easiest: above every cut) .. ``len(thresholds) + 1`` (hardest: below every cut)."""
    return len(thresholds) + 1 - bisect_right(list(thresholds), value)


def predicted_bins(values: Mapping[str, float], thresholds: Sequence[float]) -> dict[str, int]:
    return {pid: bin_of(v, thresholds) for pid, v in values.items()}


def reused_samples(strategy: str, budget: int, k: int, reuse: bool = True) -> int:
    """How many of the probe's ``k`` samples the chosen strategy reuses at ``budget``."""
    return min(budget, k) if reuse and strategy in REUSABLE else 0


def charged_generations(strategy: str, budget: int, k: int, reuse: bool = True) -> int:
    """Generations of probe + chosen strategy: ``max(N, k)`` when the probe's samples are
    reused, ``N + k`` otherwise."""
    return budget + k - reused_samples(strategy, budget, k, reuse)


# ---- the online probe ----------------------------------------------------------------------


@dataclass
class Probe:
    """What the online probe saw and spent on one question."""

    score: float
    k: int
    completions: list[Completion]
    candidates: list[Candidate]
    #: the probe's own cost: tokens and generations as measured, FLOPs all in difficulty_flops
    cost: Cost
    params: SamplingParams


def run_probe(ctx: SearchContext, problem: Problem, k: int, seed: int) -> Probe:
    """Sample ``k`` full solutions (one call, the sampling settings of ``sample_solutions``),
    score them against the problem prompt (one verifier call) and return their mean final-step
    score. ``ctx`` is a fresh ``SearchContext``: its meters hold exactly the probe's cost."""
    from ttscale.strategies.common import score_sequences
    from ttscale.strategies.revisions import attempt_candidate

    if k < 1:
        raise ValueError(f"difficulty probe: k must be >= 1, got {k}")
    params = SamplingParams(n=k, temperature=ctx.temperature, top_p=ctx.top_p,
                            max_tokens=ctx.max_solution_tokens, seed=seed)
    out = ctx.sample([problem.prompt], params)
    if len(out) != 1 or len(out[0]) != k:
        raise RuntimeError(f"difficulty probe: generator returned {[len(c) for c in out]} "
                           f"completions, expected {k}")
    comps = list(out[0])
    cands = [attempt_candidate(ctx, c) for c in comps]
    todo = [c for c in cands if c.steps]
    for c, s in zip(todo, score_sequences(ctx, problem, [c.steps for c in todo]), strict=True):
        c.scores = s
    cost = Cost.from_dict(ctx.cost.to_dict())
    cost.difficulty_flops += cost.policy_flops + cost.prm_flops
    cost.policy_flops = cost.prm_flops = 0.0
    return Probe(mean_final_score([c.scores for c in cands]), k, comps, cands, cost, params)
