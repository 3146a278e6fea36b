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


#: ``fixer(wrong_text)`` -> (length of its right prefix in steps, the text that keeps that
#: prefix and fixes its first wrong step), or None when it cannot be fixed locally
Fixer = Callable[[str], "tuple[int, str] | None"]


def local_fixer(steps_of: Callable[[str], list[str]], labels_of: Callable[[list[str]], list[bool]],
                correct: Sequence[list[str]], join: Callable[[list[str]], str]) -> Fixer:
    """A :data:`Fixer` for tasks with step labels: keep the wrong attempt's right prefix (the
    steps before its first wrong one) and continue with a correct solution that shares that
    prefix, so the fix changes the first wrong step and what follows from it, nothing before.
    On the testbed the correct solution is unique, so the fixed text is the reference solution
    and the prefix length says how local the fix is."""

    def fix(text: str) -> tuple[int, str] | None:
        steps = steps_of(text)
        labels = labels_of(steps)
        k = next((i for i, ok in enumerate(labels) if not ok), len(steps))
        for c in correct:
            if c[:k] == steps[:k] and len(c) > k:
                return k, join(steps[:k] + c[k:])
        return None

    return fix


def build_trajectories(problem_id: str, prompt: str, attempts: Sequence[tuple[str, bool]],
                       rng: random.Random, max_previous: int = 4,
                       per_question: int = 4, keep_rate: float = 0.0,
                       fixer: Fixer | None = None,
                       repeat_rate: float = 0.0) -> list[RevisionExample]:
    """Up to ``per_question`` trajectories from ``attempts`` = (solution text, is_correct).

    The number of incorrect attempts is drawn uniformly from 0..max_previous (capped by how many
    distinct incorrect ones exist), so the model also learns to answer with no history.

    ``keep_rate`` (not in the paper; default off): the share of trajectories that also show the
    target itself among the previous attempts, at a random place. The paper's data only ever
    shows wrong attempts, so its model learns to move away from whatever it sees, right answers
    included; with some right ones shown, it can learn to keep an answer it can check.

    ``fixer`` (local correction, tasks with step labels; default off): the last previous attempt
    is the wrong one with the longest right prefix (ties: the closest by edit distance to its
    fix), and the target is that attempt with its right prefix kept and its first wrong step
    fixed (``fixer``), so the model learns to copy what was right and change the step that was
    wrong, rather than to write a different solution. Attempts the fixer cannot fix fall back
    to the rule above.

    ``repeat_rate`` (not in the paper; default off): the share of trajectories whose LAST
    previous attempt is a right one and whose target repeats it. Taught only to fix (above), a
    model learns that there is always a step to change and revises right answers into wrong
    ones; these teach it to keep an answer once it is right, which a sequential chain needs.
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
        fixes = {w: f for w in wrong if fixer is not None
                 for f in [fixer(w)] if f is not None} if k else {}
        if k and fixes:
            closest = min(fixes, key=lambda w: (-fixes[w][0], edit_distance(w, fixes[w][1]), w))
            target = fixes[closest][1]
            previous = [*rng.sample([w for w in wrong if w != closest], k - 1), closest]
        elif k:
            closest = min(wrong, key=lambda w: (edit_distance(w, target), w))
            previous = [*rng.sample([w for w in wrong if w != closest], k - 1), closest]
        if repeat_rate and rng.random() < repeat_rate:
            target = rng.choice(correct)
            previous = [*previous[-(max_previous - 1):], target] if max_previous > 1 \
                else [target]
        elif keep_rate and rng.random() < keep_rate:
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
