"""Accuracy-vs-budget curves from one pool of samples per question.

Best-of-N and majority curves for every N <= pool size come from a single pool of samples:
the pool is cut into disjoint subsets of size N and the accuracies averaged, so a whole curve
costs N_max generations instead of their sum. pass@N uses the unbiased estimator of Chen et al.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from math import comb

from ttscale.strategies import voting


@dataclass(frozen=True)
class PoolSample:
    answer: str | None
    correct: bool
    score: float = 0.0  # aggregated verifier score of the whole solution


def majority_answer(samples: Sequence[PoolSample]) -> str | None:
    """Most frequent answer; ties go to the answer that reached the count first (the majority
    strategy's rule: ``strategies.voting.majority``)."""
    return voting.majority(s.answer for s in samples)[0]


def weighted_answer(samples: Sequence[PoolSample]) -> str | None:
    """Answer with the largest sum of verifier scores (the paper's weighted best-of-N; the
    strategy's rule: ``strategies.voting.weighted``)."""
    return voting.weighted((s.answer, s.score) for s in samples)[0]


def argmax_sample(samples: Sequence[PoolSample]) -> PoolSample:
    return max(samples, key=lambda s: s.score)


def best_answered(samples: Sequence[PoolSample]) -> PoolSample | None:
    """Top-scored sample that states an answer (the first wins ties), as the best-of-N strategy
    chooses (``strategies.voting.best``): a solution without an answer can never be graded
    right, so it is never picked."""
    i = voting.best((s.answer, s.score) for s in samples)
    return None if i is None else samples[i]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from c correct among n samples."""
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


POOL_METHODS = ("majority", "weighted", "argmax", "answered-argmax", "pass")


def _subsets(pool: Sequence[PoolSample], n: int, seed: int,
             max_subsets: int | None = 16) -> list[Sequence[PoolSample]]:
    """Disjoint subsets of size ``n``: one seeded shuffle of the pool cut into consecutive
    blocks (``max_subsets`` caps how many; None keeps all ``len(pool) // n``)."""
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    k = len(pool) // n if max_subsets is None else min(len(pool) // n, max_subsets)
    return [[pool[i] for i in order[j * n:(j + 1) * n]] for j in range(k)]


def pool_accuracy(pool: Sequence[PoolSample], gold_correct_answer: str | None, n: int,
                  method: str, seed: int = 0, max_subsets: int | None = 16) -> float:
    """Expected accuracy of ``method`` at budget ``n`` on one question's pool.

    ``argmax`` takes the top-scored sample even when it states no answer; ``answered-argmax``
    skips those, as the ``best-of-n`` strategy does.
    """
    if n < 1:
        raise ValueError(f"budget must be >= 1, got {n}")
    if method == "pass":
        if len(pool) < n:
            raise ValueError(f"pool of {len(pool)} samples is smaller than budget {n}")
        return pass_at_k(len(pool), sum(s.correct for s in pool), n)
    subsets = _subsets(pool, n, seed, max_subsets)
    if not subsets:
        raise ValueError(f"pool of {len(pool)} samples is smaller than budget {n}")
    hits = 0.0
    for sub in subsets:
        if method == "majority":
            hits += _is_right(majority_answer(sub), sub)
        elif method == "weighted":
            hits += _is_right(weighted_answer(sub), sub)
        elif method == "argmax":
            hits += argmax_sample(sub).correct
        elif method == "answered-argmax":
            best = best_answered(sub)
            hits += best is not None and best.correct
        else:
            raise ValueError(f"unknown pool method {method!r}")
    return hits / len(subsets)


def _is_right(answer: str | None, sub: Sequence[PoolSample]) -> float:
    return float(answer is not None and any(s.correct and s.answer == answer for s in sub))


def within_question_auc(pool: Sequence[PoolSample]) -> float | None:
    """P(score of a correct sample > score of an incorrect one), ties 1/2; None if one side is
    empty. This (not pooled AUC) tells whether a verifier can rank a question's own samples."""
    pos = [s.score for s in pool if s.correct]
    neg = [s.score for s in pool if not s.correct]
    if not pos or not neg:
        return None
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))
