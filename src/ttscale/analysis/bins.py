"""Difficulty bins: which questions are easy or hard for this policy.

Snell et al. bin questions by the policy's own pass@1 (estimated from many samples) into five
quantiles; the compute-optimal strategy differs by bin, so every curve is also reported per bin.
Bin 1 holds the easiest questions (highest pass@1), bin 5 the hardest.

Why equal-count bins with a hashed tie-break instead of value cut points: pass@1 of a small pool
takes few distinct values (0, 1/16, ...), and many questions share pass@1 = 0 or 1; cut points
would leave bins empty or lump half the questions into one. Ranking with ties broken by a hash of
the question id keeps the bins equal in size and unrelated to the task's own problem order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

N_BINS = 5


def _tie_break(problem_id: str) -> str:
    return hashlib.sha256(problem_id.encode()).hexdigest()


def oracle_bins(pass1: Mapping[str, float], n_bins: int = N_BINS) -> dict[str, int]:
    """Question id -> bin 1 (easiest) .. ``n_bins`` (hardest), equal counts (sizes differ by at
    most one; fewer bins when there are fewer questions than bins)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    ids = sorted(pass1, key=lambda pid: (-pass1[pid], _tie_break(pid)))
    k = min(n_bins, len(ids))
    out: dict[str, int] = {}
    for rank, pid in enumerate(ids):
        out[pid] = rank * k // len(ids) + 1
    return out


def bin_ranges(pass1: Mapping[str, float], bins: Mapping[str, int]) -> dict[str, dict[str, float]]:
    """Per bin: how many questions, and the pass@1 range they span (for the report)."""
    out: dict[str, dict[str, float]] = {}
    for b in sorted(set(bins.values())):
        values = [pass1[pid] for pid, v in bins.items() if v == b]
        out[str(b)] = {"n": len(values), "pass1_min": min(values), "pass1_max": max(values),
                       "pass1_mean": sum(values) / len(values)}
    return out


def group_mean(values: Mapping[str, float], groups: Mapping[str, int | str | None]
               ) -> dict[str, float]:
    """Mean of ``values`` per group label (questions without a label or a value are left out),
    keys sorted numerically where they are numbers."""
    acc: dict[str, list[float]] = {}
    for pid, v in values.items():
        g = groups.get(pid)
        if g is None:
            continue
        acc.setdefault(str(g), []).append(v)
    return {k: sum(acc[k]) / len(acc[k]) for k in sort_labels(acc)}


def sort_labels(labels: Sequence[str] | Mapping[str, object]) -> list[str]:
    """Bin labels in natural order: numbers by value, then the rest alphabetically."""
    return sorted(labels, key=lambda s: (not str(s).lstrip("-").isdigit(),
                                         int(s) if str(s).lstrip("-").isdigit() else 0, str(s)))
