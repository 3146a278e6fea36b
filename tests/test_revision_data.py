"""Revision trajectories (``train.revision_data``) and fine-tuning pairs (``train.revision``)."""

from __future__ import annotations

import random
from collections import Counter
from functools import cache

import pytest
from fakes import FakeGenerator

from ttscale.engines.base import SamplingParams
from ttscale.tasks import testbed
from ttscale.train.revision import build_revision_pairs, is_right
from ttscale.train.revision_data import (
    RevisionExample,
    build_trajectories,
    dedupe,
    edit_distance,
    local_fixer,
)
from ttscale.types import Completion


def _brute_distance(a: str, b: str) -> int:
    @cache
    def d(i: int, j: int) -> int:
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return d(len(a), len(b))


@pytest.mark.parametrize("a,b,expected", [
    ("", "", 0), ("", "abc", 3), ("abc", "abc", 0), ("kitten", "sitting", 3),
    ("flaw", "lawn", 2), ("a:10+5=15\nA:15\n", "a:10+5=16\nA:16\n", 2), ("ab", "ba", 2),
])
def test_edit_distance_known_pairs(a, b, expected):
    assert edit_distance(a, b) == expected
    assert edit_distance(b, a) == expected


def test_edit_distance_matches_brute_force():
    rng = random.Random(0)
    for _ in range(200):
        a = "".join(rng.choice("ab1\n") for _ in range(rng.randint(0, 7)))
        b = "".join(rng.choice("ab1\n") for _ in range(rng.randint(0, 7)))
        assert edit_distance(a, b) == _brute_distance(a, b)


CORRECT = ["a:10+5=15\nb:15*3=45\nA:45\n"]
WRONG = ["a:10+5=15\nb:15*3=44\nA:44\n",   # one character off: the closest
         "a:10+5=16\nb:16*3=48\nA:48\n",
         "a:10+5=17\nb:17*3=51\nA:51\n",
         "a:10+5=99\nb:99*3=97\nA:97\n",
         "a:10+5=1",
         "zz"]


def _attempts() -> list[tuple[str, bool]]:
    return [(t, True) for t in CORRECT * 3] + [(t, False) for t in WRONG * 2]


def test_trajectories_end_correct_after_0_to_4_distinct_wrong_ones():
    rng = random.Random(1)
    lengths = Counter()
    for _ in range(100):
        exs = build_trajectories("p", "Q:10a+5b*3\n", _attempts(), rng)
        assert len(exs) == 4
        for ex in exs:
            assert ex.problem_id == "p" and ex.prompt == "Q:10a+5b*3\n"
            assert ex.target in CORRECT
            assert 0 <= len(ex.previous) <= 4
            assert all(w in WRONG for w in ex.previous)
            assert len(set(ex.previous)) == len(ex.previous)
            if ex.previous:
                assert ex.previous[-1] == WRONG[0]
            lengths[len(ex.previous)] += 1
    assert set(lengths) == {0, 1, 2, 3, 4}  # every history length occurs


def test_last_previous_is_the_closest_to_its_own_target():
    correct = ["a:10+5=15\nb:15*3=45\nA:45\n", "a:10+5=15\nb:15*3=45\nA:45\n\n"]
    wrong = ["a:10+5=15\nb:15*3=45\nA:4\n",     # close to the first target
             "a:10+5=15\nb:15*3=45\nA:45\nA\n\n",  # close to the second
             "zz", "a:1"]
    attempts = [(t, True) for t in correct] + [(t, False) for t in wrong]
    rng = random.Random(2)
    seen_targets = set()
    for _ in range(60):
        for ex in build_trajectories("p", "Q\n", attempts, rng, per_question=2):
            if not ex.previous:
                continue
            best = min(edit_distance(w, ex.target) for w in wrong)
            assert edit_distance(ex.previous[-1], ex.target) == best
            seen_targets.add(ex.target)
    assert seen_targets == set(correct)


def test_history_is_capped_by_distinct_wrong_attempts_and_max_previous():
    rng = random.Random(3)
    two_wrong = [(CORRECT[0], True), (WRONG[1], False), (WRONG[2], False), (WRONG[1], False)]
    lens = {len(ex.previous) for _ in range(50)
            for ex in build_trajectories("p", "Q\n", two_wrong, rng)}
    assert lens == {0, 1, 2}
    lens = {len(ex.previous) for _ in range(50)
            for ex in build_trajectories("p", "Q\n", _attempts(), rng, max_previous=1)}
    assert lens == {0, 1}
    only_correct = [(CORRECT[0], True)]
    assert {ex.previous for ex in build_trajectories("p", "Q\n", only_correct, rng)} == {()}


def test_no_correct_attempt_gives_no_trajectory():
    rng = random.Random(4)
    assert build_trajectories("p", "Q\n", [(w, False) for w in WRONG], rng) == []
    assert build_trajectories("p", "Q\n", [], rng) == []


def test_trajectories_are_seeded():
    a = build_trajectories("p", "Q\n", _attempts(), random.Random(5), per_question=8)
    b = build_trajectories("p", "Q\n", _attempts(), random.Random(5), per_question=8)
    assert a == b and len(a) == 8


def test_dedupe_keeps_first_of_each_and_order():
    x = RevisionExample("p", "Q\n", ("w1",), "c")
    y = RevisionExample("p", "Q\n", (), "c")
    x_other_id = RevisionExample("q", "Q\n", ("w1",), "c")  # same text: a duplicate
    z = RevisionExample("p", "Q\n", ("w2", "w1"), "c")
    z_swapped = RevisionExample("p", "Q\n", ("w1", "w2"), "c")  # order matters: kept
    assert dedupe([x, y, x, x_other_id, z, y, z_swapped]) == [x, y, z, z_swapped]
    assert dedupe([]) == []


# ---- pairs from a policy's own samples ------------------------------------------------------

class TruncatingGenerator(FakeGenerator):
    """A testbed fake whose even-indexed samples run out of tokens (finish_reason "length")."""

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        out = super().generate(prompts, params)
        return [[Completion(c.text[:5], "length", c.prompt_tokens, 5) if j % 2 == 0 else c
                 for j, c in enumerate(comps)] for comps in out]


def test_build_revision_pairs_on_the_testbed():
    task = testbed.TestbedTask("train", n=12, seed=0, max_ops=4)
    by_prompt_head = {p.question: p for p in task.problems()}
    pairs = build_revision_pairs(task, TruncatingGenerator(accuracy=0.6), samples=8, seed=0)
    assert pairs and len(set(pairs)) == len(pairs)
    n_with_history = 0
    for prompt, target in pairs:
        *lines, head = prompt[:-1].split("\n")
        problem = by_prompt_head[head]
        assert task.extract_answer(target) == problem.answer  # the target is a right answer
        assert all(task.step_labels(problem, target.split()))  # ... and not a lucky one
        assert len(target) > 5  # truncated samples are never used
        assert 0 <= len(lines) <= 4 and all(line.startswith("P:") for line in lines)
        for line in lines:  # earlier attempts are complete solutions that are not right
            assert ";A:" in line
            assert not is_right(task, problem, line[2:].replace(";", "\n") + "\n")
        n_with_history += bool(lines)
        assert prompt == task.revision_prompt(
            problem, [line[2:].replace(";", "\n") + "\n" for line in lines])
    assert n_with_history > 0


def test_build_revision_pairs_needs_a_revision_format():
    class NoRevision:
        name = "plain"

    with pytest.raises(ValueError, match="task 'plain' has no revision prompt format"):
        build_revision_pairs(NoRevision(), FakeGenerator())


def test_reference_targets_keep_questions_no_sample_solved():
    """accuracy=0: no sample is ever right, so the paper's recipe keeps nothing; with
    ``use_reference`` every question yields pairs whose target is its gold solution."""
    task = testbed.TestbedTask("train", n=6, seed=0, max_ops=4)
    gen = FakeGenerator(accuracy=0.0)
    assert build_revision_pairs(task, gen, samples=4, seed=0) == []
    pairs = build_revision_pairs(task, gen, samples=4, seed=0, use_reference=True)
    by_head = {p.question: p for p in task.problems()}
    heads = set()
    for prompt, target in pairs:
        *lines, head = prompt[:-1].split("\n")
        heads.add(head)
        assert target == task.reference_solution(by_head[head])
        assert all(task.step_labels(by_head[head], target.split()))
    assert heads == set(by_head)
    assert any(prompt.startswith("P:") for prompt, _ in pairs)


def test_reference_targets_need_a_reference_solution():
    class NoReference:
        name = "plain"

        def revision_prompt(self, problem, previous):
            return problem.prompt

    with pytest.raises(ValueError, match="no reference solution"):
        build_revision_pairs(NoReference(), FakeGenerator(), use_reference=True)


def test_keep_rate_shows_the_target_within_the_window():
    attempts = [(f"w{i}", False) for i in range(6)] + [("right", True)]
    examples = build_trajectories("q", "Q\n", attempts, random.Random(0), max_previous=4,
                                  per_question=400, keep_rate=0.5)
    shown = [ex for ex in examples if "right" in ex.previous]
    assert 120 < len(shown) < 280  # about half
    assert all(len(ex.previous) <= 4 and ex.previous.count("right") == 1 for ex in shown)
    assert {len(ex.previous) for ex in shown} == {1, 2, 3, 4}
    assert all(ex.target == "right" for ex in examples)
    # off by default, and then the draws are exactly those of the paper's recipe
    plain = build_trajectories("q", "Q\n", attempts, random.Random(0), per_question=50)
    assert plain == build_trajectories("q", "Q\n", attempts, random.Random(0), per_question=50,
                                       keep_rate=0.0)
    assert not any("right" in ex.previous for ex in plain)


def test_repeat_rate_ends_histories_with_a_right_attempt_that_the_target_repeats():
    attempts = [(f"w{i}", False) for i in range(6)] + [("right", True), ("also right", True)]
    examples = build_trajectories("q", "Q\n", attempts, random.Random(0), max_previous=4,
                                  per_question=400, repeat_rate=0.3)
    repeats = [ex for ex in examples if ex.previous and ex.previous[-1] == ex.target]
    assert 70 < len(repeats) < 170  # about 30 %
    assert all(len(ex.previous) <= 4 for ex in repeats)
    assert {len(ex.previous) for ex in repeats} == {1, 2, 3, 4}  # 0-3 wrong ones before it
    assert all(p.startswith("w") for ex in repeats for p in ex.previous[:-1])
    # every other history ends with a wrong attempt, as in the paper's recipe
    others = [ex for ex in examples if ex not in repeats]
    assert all(not ex.previous or ex.previous[-1].startswith("w") for ex in others)
    assert build_trajectories("q", "Q\n", attempts, random.Random(0), per_question=50) == \
        build_trajectories("q", "Q\n", attempts, random.Random(0), per_question=50,
                           repeat_rate=0.0)


def test_local_fixer_keeps_the_right_prefix_and_fixes_the_first_wrong_step():
    gold = ["a", "b", "c", "d"]

    def labels(steps):
        out, ok = [], True
        for i, st in enumerate(steps):
            ok = ok and i < len(gold) and st == gold[i]
            out.append(ok)
        return out

    fix = local_fixer(lambda t: t.split(), labels, [gold], " ".join)
    assert fix("a b x y") == (2, "a b c d")
    assert fix("z b c d") == (0, "a b c d")
    # a prefix no correct solution shares cannot be fixed locally
    assert local_fixer(lambda t: t.split(), labels, [["q", "r"]], " ".join)("a b x") is None
    attempts = [("a x y z", False), ("a b c x", False), ("z z z z", False), ("a b c d", True)]
    examples = build_trajectories("q", "Q\n", attempts, random.Random(0), per_question=60,
                                  fixer=fix)
    with_history = [ex for ex in examples if ex.previous]
    assert with_history
    # the last attempt shown is the wrong one with the longest right prefix
    assert all(ex.previous[-1] == "a b c x" and ex.target == "a b c d" for ex in with_history)
    # without a fixer, the draws are exactly the earlier recipe's
    assert build_trajectories("q", "Q\n", attempts, random.Random(0), per_question=20) == \
        build_trajectories("q", "Q\n", attempts, random.Random(0), per_question=20, fixer=None)


def test_local_correction_pairs_on_the_testbed():
    task = testbed.TestbedTask("train", n=10, seed=0, min_ops=4, max_ops=6)
    by_head = {p.question: p for p in task.problems()}
    pairs = build_revision_pairs(task, FakeGenerator(accuracy=0.75), samples=12, seed=0,
                                 use_reference=True, local_correction=True)
    assert pairs
    shown = 0
    for prompt, target in pairs:
        *lines, head = prompt[:-1].split("\n")
        problem = by_head[head]
        assert all(task.step_labels(problem, target.split()))
        if not lines:
            continue
        shown += 1
        def prefix(line, problem=problem):
            steps = [st for st in line[2:].split(";") if st]
            labels = task.step_labels(problem, steps)
            return next((i for i, ok in enumerate(labels) if not ok), len(steps)), steps

        k, last = prefix(lines[-1])
        assert target.split()[:k] == last[:k], "the right prefix is kept"
        assert all(prefix(line)[0] <= k for line in lines), "the longest right prefix is last"
    assert shown
    with pytest.raises(ValueError, match="no step labels"):
        build_revision_pairs(type("T", (), {"name": "plain", "revision_prompt": None})(),
                             FakeGenerator(), local_correction=True)
