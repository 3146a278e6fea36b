"""Revision trajectories as in Snell et al. 2024 (section 6.1).

From many high-temperature samples per question, build chains of 0-4 incorrect attempts followed
by a correct one. The last incorrect attempt is the one closest to the correct answer by
character edit distance, so the model learns to fix small mistakes rather than to start over;
the earlier ones are drawn at random. A training example is (question + previous attempts) ->
the correct attempt.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (two-row dynamic programme; strings here are short)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


@dataclass(frozen=True)
class RevisionExample:
    problem_id: str
    prompt: str
    previous: tuple[str, ...]  # earlier attempts, oldest first (solution texts)
    target: str  # the correct attempt


def build_trajectories(problem_id: str, prompt: str, attempts: Sequence[tuple[str, bool]],
                       rng: random.Random, max_previous: int = 4,
                       per_question: int = 4, keep_rate: float = 0.0) -> list[RevisionExample]:
    """Up to ``per_question`` trajectories from ``attempts`` = (solution text, is_correct).

    The number of incorrect attempts is drawn uniformly from 0..max_previous (capped by how many
    distinct incorrect ones exist), so the model also learns to answer with no history.

    ``keep_rate`` (not in the paper; default off): the share of trajectories that also show the
    target itself among the previous attempts, at a random place. The paper's data only ever
    shows wrong attempts, so its model learns to move away from whatever it sees, right answers
    included; with some right ones shown, it can learn to keep an answer it can check.
    """
    correct = sorted({t for t, ok in attempts if ok})
    wrong = sorted({t for t, ok in attempts if not ok})
    if not correct:
        return []
    out = []
    for _ in range(per_question):
        target = rng.choice(correct)
        k = rng.randint(0, min(max_previous, len(wrong)))
        previous: list[str] = []
        if k:
            closest = min(wrong, key=lambda w: (edit_distance(w, target), w))
            previous = [*rng.sample([w for w in wrong if w != closest], k - 1), closest]
        if keep_rate and rng.random() < keep_rate:
            previous = previous[-(max_previous - 1):] if max_previous > 1 else []
            previous.insert(rng.randint(0, len(previous)), target)
        out.append(RevisionExample(problem_id, prompt, tuple(previous), target))
    return out


def dedupe(examples: list[RevisionExample]) -> list[RevisionExample]:
    seen, out = set(), []
    for ex in examples:
        key = (ex.prompt, ex.previous, ex.target)
        if key not in seen:
            seen.add(key)
            out.append(ex)
    return out


PromptFormat = Callable[[str, Sequence[str]], str]
