"""Stopping rules of per-question adaptive sampling, as pure functions of the votes so far.

* ``beta`` (Adaptive-Consistency, Aggarwal et al. 2023): with ``v1``/``v2`` the votes of the two
  leading answers, the leader's share ``p`` of their votes has the posterior Beta(v1+1, v2+1)
  under a uniform prior; stop once ``P(p > 1/2) >= confidence``. Weighted votes enter as
  effective counts (each answer's share of the weight times the number of answered samples).
* ``esc`` (Early-Stopping Self-Consistency, Li et al. 2024): stop once every sample of the last
  window (one round) states the same answer.
* ``score``: stop once the best single sample's verifier score reaches ``threshold`` (a
  calibrated PRM says "this one is right"; the answer is then that sample's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def beta_leader_prob(v1: float, v2: float) -> float:
    """``P(p > 1/2)`` for ``p ~ Beta(v1 + 1, v2 + 1)``.

    Exact for whole counts (``I_x(a, b) = P(Binomial(a + b - 1, x) >= a)``), else by Simpson's
    rule on the log-density (weighted, effective counts).
    """
    if v1 < 0 or v2 < 0:
        raise ValueError(f"vote counts must be >= 0, got {v1}, {v2}")
    a, b = v1 + 1.0, v2 + 1.0
    if float(a).is_integer() and float(b).is_integer():
        n = int(a + b - 1)
        # P(Bin(n, 1/2) <= a - 1) = P(p > 1/2)
        return math.fsum(math.comb(n, j) for j in range(int(a))) / 2.0 ** n
    log_norm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    m = 2000  # even number of intervals over [1/2, 1]
    h = 0.5 / m
    total = 0.0
    for i in range(m + 1):
        x = 0.5 + i * h
        if x >= 1.0:
            dens = 0.0 if b > 1 else math.exp(log_norm) * (1.0 if b == 1 else 0.0)
        else:
            dens = math.exp(log_norm + (a - 1) * math.log(x) + (b - 1) * math.log1p(-x))
        w = 1 if i in (0, m) else (4 if i % 2 else 2)
        total += w * dens
    return min(1.0, total * h / 3.0)


def effective_counts(totals: Mapping[str, float], answered: int) -> list[float]:
    """Vote totals rescaled to sum to the number of answered samples, largest first."""
    s = sum(totals.values())
    if s <= 0 or not answered:
        return []
    return sorted((answered * v / s for v in totals.values()), reverse=True)


def beta_stop(totals: Mapping[str, float], answered: int, confidence: float) -> bool:
    """Adaptive-Consistency's Beta rule on (possibly weighted) votes."""
    counts = effective_counts(totals, answered)
    if not counts:
        return False
    v1 = counts[0]
    v2 = counts[1] if len(counts) > 1 else 0.0
    return beta_leader_prob(v1, v2) >= confidence


def esc_stop(window_answers: Sequence[str | None]) -> bool:
    """ESC's rule: the whole window states one answer (a sample without one breaks it)."""
    return bool(window_answers) and window_answers[0] is not None \
        and all(a == window_answers[0] for a in window_answers)


def score_stop(best_score: float | None, threshold: float) -> bool:
    """Stop once the best sample's verifier score reaches the threshold."""
    return best_score is not None and best_score >= threshold
