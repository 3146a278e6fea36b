"""The voting rules, in one place: used by the strategies (``ttscale run``) and by the sweep's
pool curves (``analysis.pools``), so a curve read off a pool answers exactly as a run would.

Every rule takes ``(answer, score)`` pairs in sampling order; a sample without an answer never
wins (it can never be graded right), and ties go to the answer seen first:

* :func:`majority`: the most frequent answer (a tie goes to the answer that reached the winning
  count first);
* :func:`weighted`: the answer with the largest sum of scores (Snell et al.'s weighted best-of-N);
* :func:`best`: the index of the top-scored sample that states an answer (best-of-N).
"""

from __future__ import annotations

from collections.abc import Iterable


def majority(answers: Iterable[str | None]) -> tuple[str | None, dict[str, int]]:
    """Most frequent answer and the vote counts; a tie goes to the answer that reached the
    winning count first."""
    counts: dict[str, int] = {}
    winner, top = None, 0
    for a in answers:
        if a is None:
            continue
        counts[a] = counts.get(a, 0) + 1
        if counts[a] > top:
            winner, top = a, counts[a]
    return winner, counts


def weighted(pairs: Iterable[tuple[str | None, float]]) -> tuple[str | None, dict[str, float]]:
    """Answer with the largest sum of scores, and the sums; a tie goes to the first answer
    seen."""
    totals: dict[str, float] = {}
    for a, score in pairs:
        if a is not None:
            totals[a] = totals.get(a, 0.0) + score
    if not totals:
        return None, totals
    return max(totals, key=totals.__getitem__), totals


def best(pairs: Iterable[tuple[str | None, float]]) -> int | None:
    """Index of the top-scored sample that states an answer (the first wins ties), or None."""
    index, top = None, float("-inf")
    for i, (a, score) in enumerate(pairs):
        if a is not None and score > top:
            index, top = i, score
    return index
