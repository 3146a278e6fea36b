"""Verifier-quality metrics (``ttscale.analysis.verifier_quality``)."""

from __future__ import annotations

import math
import random

import pytest

from ttscale.analysis.verifier_quality import (
    ScoredSample,
    auc,
    distinct_texts_per_question,
    pooled_step_auc,
    position_baseline,
    quality_report,
    with_baseline_scores,
    within_question_final_auc,
    within_question_step_auc,
)


def _brute_auc(pos, neg) -> float:
    """P(score of a positive > score of a negative), ties counted 1/2, over every pair."""
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auc_equals_pairwise_count_with_ties():
    rng = random.Random(0)
    for trial in range(300):
        levels = rng.choice([3, 10, 1000])  # few levels: many ties
        pos = [rng.randrange(levels) / levels for _ in range(rng.randint(1, 15))]
        neg = [rng.randrange(levels) / levels for _ in range(rng.randint(1, 15))]
        assert auc(pos, neg) == pytest.approx(_brute_auc(pos, neg), abs=1e-12), trial


def test_auc_edge_cases():
    assert auc([], [0.1]) is None and auc([0.1], []) is None
    assert auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert auc([0.1], [0.9, 0.8]) == 0.0
    assert auc([0.5, 0.5], [0.5]) == 0.5


def _sample(pid, difficulty, scores, labels, correct, steps=None) -> ScoredSample:
    steps = steps or [f"s{k}" for k in range(len(scores))]
    return ScoredSample(pid, difficulty, steps, scores, labels, "x" if correct else "y", correct)


def _difficulty_only() -> list[ScoredSample]:
    """An easy question (mostly right) scored high everywhere, a hard one (mostly wrong) scored
    low everywhere: the scores know the question's difficulty and nothing else."""
    easy = [_sample("easy", 2, [0.9, 0.9], [True, True], True, ["a", f"A{i}"])
            for i in range(3)]
    easy.append(_sample("easy", 2, [0.9, 0.9], [True, False], False, ["a", "B"]))
    hard = [_sample("hard", 8, [0.1, 0.1], [False, False], False, [f"b{i}", "C"])
            for i in range(3)]
    hard.append(_sample("hard", 8, [0.1, 0.1], [True, True], True, ["c", "D"]))
    return easy + hard


def test_within_question_auc_ignores_differences_across_questions():
    samples = _difficulty_only()
    pooled = pooled_step_auc(samples)
    pos = [sc for s in samples for sc, ok in zip(s.scores, s.step_labels, strict=True) if ok]
    neg = [sc for s in samples for sc, ok in zip(s.scores, s.step_labels, strict=True) if not ok]
    assert pooled == pytest.approx(_brute_auc(pos, neg))
    assert pooled > 0.75
    assert within_question_final_auc(samples) == (0.5, 2)
    step_auc, groups = within_question_step_auc(samples)
    assert step_auc == 0.5
    assert groups == 3  # (easy, step 1), (hard, step 0), (hard, step 1) have both kinds


def test_within_question_auc_sees_ranking_inside_a_question():
    good = [_sample("q", 3, [0.8, 0.7], [True, True], True),
            _sample("q", 3, [0.8, 0.2], [True, False], False),
            _sample("r", 3, [0.3], [True], True),
            _sample("r", 3, [0.4], [False], False),
            _sample("only-right", 3, [0.5], [True], True)]  # no pair: not counted
    assert within_question_final_auc(good) == (pytest.approx(0.5), 2)  # 1.0 and 0.0
    assert within_question_step_auc(good) == (pytest.approx(0.5), 2)


def test_position_baseline_table_and_its_within_question_auc():
    rng = random.Random(1)
    train, test = [], []
    for name, pool in (("train", train), ("test", test)):
        for q in range(20):
            d = 2 + q % 4
            for _ in range(6):
                n_steps = d + 1
                ok, labels = True, []
                for _k in range(n_steps):
                    ok = ok and rng.random() < 1.0 - 0.08 * d
                    labels.append(ok)
                pool.append(_sample(f"{name}-{q}", d, [rng.random() for _ in labels],
                                    labels, labels[-1]))
    table = position_baseline(train)
    for (d, k), rate in table.items():
        rows = [s.step_labels[k] for s in train if s.difficulty == d and len(s.step_labels) > k]
        assert rate == pytest.approx(sum(rows) / len(rows))
    base = with_baseline_scores(test, table)
    for s, b in zip(test, base, strict=True):
        assert b.scores == [table[(s.difficulty, k)] for k in range(len(s.steps))]
        assert (b.step_labels, b.correct, b.problem_id) == (s.step_labels, s.correct, s.problem_id)
    final, n_final = within_question_final_auc(base)
    step, n_step = within_question_step_auc(base)
    assert n_final > 0 and n_step > 0
    assert final == 0.5 and step == 0.5
    assert pooled_step_auc(base) > 0.5  # it does know difficulty and position
    unseen = with_baseline_scores([_sample("z", 99, [0.3], [True], True)], table)
    assert unseen[0].scores == [0.5]


def test_distinct_texts_and_report():
    samples = _difficulty_only()
    assert distinct_texts_per_question(samples) == {"correct": 2.0, "incorrect": 2.0}
    table = position_baseline(samples)
    rep = quality_report(samples, table)
    assert rep["within_question_auc"] == 0.5 and rep["questions_with_both"] == 2
    assert rep["within_question_step_auc"] == 0.5 and rep["step_groups_with_both"] == 3
    assert rep["pooled_step_auc"] == pooled_step_auc(samples)
    assert set(rep["baseline"]) == {"within_question_auc", "within_question_step_auc",
                                    "pooled_step_auc"}
    assert rep["baseline"]["within_question_auc"] == 0.5
    assert "baseline" not in quality_report(samples)
    # no question with both right and wrong samples: the mean is undefined, and says so
    only_right = [s for s in samples if s.correct]
    final, n = within_question_final_auc(only_right)
    assert math.isnan(final) and n == 0
