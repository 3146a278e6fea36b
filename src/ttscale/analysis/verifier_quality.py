"""How well a verifier ranks a policy's own samples: the numbers that decide whether search works.

Pooled step AUC is reported but not trusted: a table of correctness rates by difficulty and step
position reaches a high pooled AUC with no notion of correctness (../shared/TESTBED_FACTS.md).
What matters is AUC *within* a question (and within a question at the same step), which a
difficulty-only predictor cannot beat 0.5 on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class ScoredSample:
    """One sampled solution of a question with per-step verifier scores and labels."""

    problem_id: str
    difficulty: int
    steps: list[str]
    scores: list[float]
    step_labels: list[bool]  # exact prefix-correctness of each step (testbed)
    answer: str | None
    correct: bool
    extra: dict = field(default_factory=dict)


def auc(pos: Sequence[float], neg: Sequence[float]) -> float | None:
    """Mann-Whitney AUC with ties counted 1/2 (O(n log n))."""
    if not pos or not neg:
        return None
    allv = sorted([(v, 1) for v in pos] + [(v, 0) for v in neg])
    rank_sum, i = 0.0, 0
    while i < len(allv):
        j = i
        while j < len(allv) and allv[j][0] == allv[i][0]:
            j += 1
        avg_rank = (i + j + 1) / 2  # 1-based average rank of the tie block
        rank_sum += avg_rank * sum(1 for k in range(i, j) if allv[k][1] == 1)
        i = j
    n_pos, n_neg = len(pos), len(neg)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def within_question_final_auc(samples: Sequence[ScoredSample]) -> tuple[float, int]:
    """Correct vs incorrect final answers of the same question, by last-step score."""
    groups: dict[str, list[ScoredSample]] = defaultdict(list)
    for s in samples:
        groups[s.problem_id].append(s)
    aucs = []
    for group in groups.values():
        a = auc([s.scores[-1] for s in group if s.correct and s.scores],
                [s.scores[-1] for s in group if not s.correct and s.scores])
        if a is not None:
            aucs.append(a)
    return _mean(aucs), len(aucs)


def within_question_step_auc(samples: Sequence[ScoredSample]) -> tuple[float, int]:
    """Right vs wrong step prefixes of the same question at the same step index."""
    groups: dict[tuple[str, int], tuple[list[float], list[float]]] = defaultdict(
        lambda: ([], []))
    for s in samples:
        for k, (score, ok) in enumerate(zip(s.scores, s.step_labels, strict=False)):
            groups[(s.problem_id, k)][0 if ok else 1].append(score)
    aucs = [a for a in (auc(p, n) for p, n in groups.values()) if a is not None]
    return _mean(aucs), len(aucs)


def pooled_step_auc(samples: Sequence[ScoredSample]) -> float | None:
    pos = [sc for s in samples for sc, ok in zip(s.scores, s.step_labels, strict=False) if ok]
    neg = [sc for s in samples for sc, ok in zip(s.scores, s.step_labels, strict=False)
           if not ok]
    return auc(pos, neg)


def position_baseline(train: Sequence[ScoredSample]) -> dict[tuple[int, int], float]:
    """Correctness rate by (difficulty, step index): a verifier that knows no arithmetic."""
    table: dict[tuple[int, int], list[bool]] = defaultdict(list)
    for s in train:
        for k, ok in enumerate(s.step_labels):
            table[(s.difficulty, k)].append(ok)
    return {key: _mean([float(x) for x in v]) for key, v in table.items()}


def with_baseline_scores(samples: Sequence[ScoredSample],
                         table: dict[tuple[int, int], float]) -> list[ScoredSample]:
    return [ScoredSample(s.problem_id, s.difficulty, s.steps,
                         [table.get((s.difficulty, k), 0.5) for k in range(len(s.steps))],
                         s.step_labels, s.answer, s.correct) for s in samples]


def distinct_texts_per_question(samples: Sequence[ScoredSample]) -> dict[str, float]:
    """Mean distinct correct / incorrect solution texts per question (why argmax can fail)."""
    right: dict[str, set] = defaultdict(set)
    wrong: dict[str, set] = defaultdict(set)
    for s in samples:
        (right if s.correct else wrong)[s.problem_id].add(tuple(s.steps))
    ids = {s.problem_id for s in samples}
    return {"correct": _mean([len(right[i]) for i in ids]),
            "incorrect": _mean([len(wrong[i]) for i in ids])}


def quality_report(samples: Sequence[ScoredSample],
                   baseline_table: dict[tuple[int, int], float] | None = None) -> dict:
    final_auc, n_final = within_question_final_auc(samples)
    step_auc, n_step = within_question_step_auc(samples)
    report = {
        "within_question_auc": final_auc, "questions_with_both": n_final,
        "within_question_step_auc": step_auc, "step_groups_with_both": n_step,
        "pooled_step_auc": pooled_step_auc(samples),
        "distinct_texts": distinct_texts_per_question(samples),
    }
    if baseline_table is not None:
        base = with_baseline_scores(samples, baseline_table)
        report["baseline"] = {
            "within_question_auc": within_question_final_auc(base)[0],
            "within_question_step_auc": within_question_step_auc(base)[0],
            "pooled_step_auc": pooled_step_auc(base),
        }
    return report
