"""Question difficulty for compute-optimal scaling, offline: predicted bins fitted on a sweep.

Snell et al. 2024 bin questions into five difficulty quantiles and pick a strategy per bin. Two
kinds of bins are used here:

* **oracle** bins: the policy's pass@1 estimated from the sweep's pool, which needs the gold
  answer (``ttscale.analysis.bins.oracle_bins``; reused, not duplicated here);
* **predicted** bins: the mean PRM final-step score over the question's pool; no gold answer is
  used. Five equal-count bins, 1 easiest (highest mean score); the four cut points between them
  are saved in the policy table so that new questions can be binned.

New questions are binned online by the difficulty probe against the saved cut points
(``ttscale.strategies.difficulty_probe``: the probe, its charge and the probe-reuse rule, which
this module re-exports for the offline analysis).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ttscale.analysis.bins import N_BINS, oracle_bins
from ttscale.strategies.difficulty_probe import (  # noqa: F401  (the offline analysis' names)
    PROBE_K,
    STATISTIC,
    Probe,
    bin_of,
    charged_generations,
    final_score,
    mean_final_score,
    reused_samples,
    reuses_probe,
    run_probe,
)


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



def predicted_bins(values: Mapping[str, float], thresholds: Sequence[float]) -> dict[str, int]:
    return {pid: bin_of(v, thresholds) for pid, v in values.items()}
