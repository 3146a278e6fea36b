"""The procedural testbed task: its arithmetic, parsing, exact step labels, splits and formats."""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter

import pytest

from ttscale.tasks import testbed
from ttscale.tasks.testbed import (
    Question,
    parse_question,
    random_question,
    split_of,
    step_correctness,
)

OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def _by_hand(q: Question) -> list[str]:
    """Gold steps recomputed independently: Python arithmetic, then mod 100, then padding."""
    steps, value = [], q.start
    for label, (op, x) in zip("abcdefgh", q.ops, strict=False):
        new = OPS[op](value, x) % 100
        steps.append(label + ":" + str(value).zfill(2) + op + str(x) + "=" + str(new).zfill(2))
        value = new
    return steps + ["A:" + str(value).zfill(2)]


def test_docstring_example_by_hand():
    q = parse_question("Q:72a-5b-6c*5d*4e-3")
    # 72-5=67, 67-6=61, 61*5=305 -> 05, 05*4=20, 20-3=17
    assert q.gold_steps() == ["a:72-5=67", "b:67-6=61", "c:61*5=05", "d:05*4=20", "e:20-3=17",
                              "A:17"]
    assert q.answer == "17"


def test_wraparound_and_zero_padding():
    assert parse_question("Q:03a-5b+2").gold_steps() == ["a:03-5=98", "b:98+2=00", "A:00"]
    assert parse_question("Q:25a*4").gold_steps() == ["a:25*4=00", "A:00"]


def test_gold_steps_follow_the_arithmetic_on_many_questions():
    problems = testbed.TestbedTask("train", n=300, seed=3).problems()
    for p in problems:
        q = parse_question(p.question)
        gold = q.gold_steps()
        assert gold == _by_hand(q)
        assert all(testbed.STEP_RE.match(s) for s in gold[:-1])
        assert testbed.ANSWER_RE.match(gold[-1])
        assert p.answer == gold[-1][2:] == q.answer


def test_parse_question_round_trip():
    rng = random.Random(7)
    for _ in range(200):
        q = random_question(rng, rng.randint(testbed.MIN_OPS, testbed.MAX_OPS))
        assert parse_question(q.text) == q
        assert parse_question(q.text).text == q.text
    assert parse_question("  Q:10a+1\n").text == "Q:10a+1"  # surrounding whitespace is allowed


@pytest.mark.parametrize("bad", [
    "Q:5a+1",         # start value not two digits
    "Q:12",           # no operations
    "Q:12a/3",        # unknown operator
    "Q:12a+12",       # operand not one digit
    "12a+1",          # no Q:
    "Q:12a+1x",       # trailing junk
    "Q:12b+1a+2",     # labels out of order would parse into a different question
    "Q:12a+1a+2",     # repeated label
    "Q:12a+1c+2",     # skipped label
])
def test_parse_question_rejects_malformed(bad):
    with pytest.raises(ValueError, match="not a testbed question"):
        parse_question(bad)


def test_step_correctness_is_a_prefix_label():
    q = parse_question("Q:10a+5b*3c-4")
    gold = q.gold_steps()  # a:10+5=15, b:15*3=45, c:45-4=41, A:41
    assert step_correctness(q, gold) == [True] * 4
    # b is wrong; c is locally right arithmetic on b's wrong value, and A follows c: all wrong
    wrong = ["a:10+5=15", "b:15*3=44", "c:44-4=40", "A:40"]
    assert step_correctness(q, wrong) == [True, False, False, False]
    # a wrong step followed by the *gold* later steps is still wrong from there on
    assert step_correctness(q, ["a:10+5=16", *gold[1:]]) == [False] * 4
    # a prefix of the gold solution: all right; surrounding whitespace is ignored
    assert step_correctness(q, [" a:10+5=15 ", "b:15*3=45"]) == [True, True]
    # more steps than the gold solution: the extra ones are wrong
    assert step_correctness(q, [*gold, "A:41"]) == [True] * 4 + [False]
    assert step_correctness(q, []) == []


def test_step_labels_method_matches_step_correctness():
    task = testbed.TestbedTask("dev", n=10, seed=0)
    for p in task.problems():
        q = parse_question(p.question)
        steps = q.gold_steps()
        steps[1] = steps[1][:-1] + str((int(steps[1][-1]) + 1) % 10)
        assert task.step_labels(p, steps) == step_correctness(q, steps)
        assert task.step_labels(p, steps)[:2] == [True, False]


def test_split_of_is_the_documented_hash():
    for text in ("Q:10a+1", "Q:72a-5b-6c*5d*4e-3", "Q:99a*9b*9"):
        bucket = int(hashlib.sha256(text.encode()).hexdigest(), 16) % 10
        expected = "train" if bucket < 8 else ("dev" if bucket == 8 else "test")
        assert split_of(text) == expected


def test_splits_are_disjoint_and_stable():
    questions = {}
    for split in ("train", "dev", "test"):
        texts = set()
        for seed in (0, 1):
            task = testbed.TestbedTask(split, n=150, seed=seed)
            probs = task.problems()
            assert [p.question for p in probs] == \
                [p.question for p in testbed.TestbedTask(split, n=150, seed=seed).problems()]
            assert len({p.question for p in probs}) == len(probs)  # no repeats within a split
            assert all(split_of(p.question) == split for p in probs)
            assert len({p.id for p in probs}) == len(probs)
            texts |= {p.question for p in probs}
        questions[split] = texts
    assert not questions["train"] & questions["dev"]
    assert not questions["train"] & questions["test"]
    assert not questions["dev"] & questions["test"]


def test_split_proportions_are_roughly_80_10_10():
    rng = random.Random(0)
    counts = Counter(split_of(random_question(rng, 4).text) for _ in range(5000))
    assert 0.77 < counts["train"] / 5000 < 0.83
    assert 0.08 < counts["dev"] / 5000 < 0.12
    assert 0.08 < counts["test"] / 5000 < 0.12


def test_difficulty_is_balanced():
    task = testbed.TestbedTask("test", n=70, seed=2)
    counts = Counter(p.difficulty for p in task.problems())
    assert counts == {k: 10 for k in range(testbed.MIN_OPS, testbed.MAX_OPS + 1)}
    for p in task.problems():
        assert p.difficulty == p.meta["n_ops"] == len(parse_question(p.question).ops)
        assert p.prompt == p.question + "\n"
    narrow = testbed.TestbedTask("dev", n=9, seed=0, min_ops=3, max_ops=5)
    assert Counter(p.difficulty for p in narrow.problems()) == {3: 3, 4: 3, 5: 3}


@pytest.mark.parametrize("kwargs,match", [
    ({"split": "val"}, "unknown split"),
    ({"min_ops": 1}, "min_ops"),
    ({"max_ops": 9}, "min_ops"),
    ({"min_ops": 5, "max_ops": 4}, "min_ops"),
])
def test_bad_task_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        testbed.TestbedTask(**kwargs)


def test_revision_prompt_format():
    task = testbed.TestbedTask("test", n=1)
    p = task.problems()[0]
    first = "a:10+5=16\nb:16*3=48\nA:48\n"
    second = "a:10+5=15\n\nb:15*3=44\nA:44"  # blank lines and a missing final newline
    assert task.revision_prompt(p, []) == p.prompt
    assert task.revision_prompt(p, [first, second]) == (
        "P:a:10+5=16;b:16*3=48;A:48\nP:a:10+5=15;b:15*3=44;A:44\n" + p.prompt)


def test_extract_answer():
    task = testbed.TestbedTask("test", n=1)
    assert task.extract_answer("a:10+5=15\nA:15\n") == "15"
    assert task.extract_answer("A:15\na:1\nA:07  \n\n") == "07"  # the last answer line wins
    assert task.extract_answer("a:10+5=15\nb:15*3=45\n") is None
    assert task.extract_answer("A:5\n") is None  # not two digits
    assert task.extract_answer("A:123\n") is None
    assert task.extract_answer("xA:12\n") is None
    assert task.extract_answer("") is None


def test_solution_text_and_final_step():
    task = testbed.TestbedTask("test", n=1)
    steps = ["a:10+5=15", "A:15"]
    assert task.solution_text(steps) == "a:10+5=15\nA:15\n"
    assert re.fullmatch(r"(?:[^\n]+\n)+", task.solution_text(steps))
    assert task.is_final_step("A:15") and not task.is_final_step("a:10+5=15")


def test_gold_pairs_are_train_split_gold_solutions():
    from itertools import islice

    from ttscale.testbed.data import gold_pairs

    pairs = list(islice(gold_pairs(seed=0), 300))
    assert pairs == list(islice(gold_pairs(seed=0), 300))  # seeded
    assert pairs != list(islice(gold_pairs(seed=1), 300))
    ops = Counter()
    for prompt, completion in pairs:
        assert prompt.endswith("\n") and split_of(prompt[:-1]) == "train"
        q = parse_question(prompt)
        assert completion == "".join(s + "\n" for s in _by_hand(q))
        ops[len(q.ops)] += 1
    assert set(ops) == set(range(testbed.MIN_OPS, testbed.MAX_OPS + 1))


@pytest.mark.parametrize("accuracy", [0.0, 1.0])
def test_dev_accuracy_with_a_fake_policy(accuracy):
    from fakes import FakeGenerator

    from ttscale.testbed.data import dev_accuracy

    gen = FakeGenerator(accuracy=accuracy)
    overall, by_ops = dev_accuracy(gen, n_questions=14, samples=2)
    assert overall == accuracy
    assert by_ops == {k: accuracy for k in range(testbed.MIN_OPS, testbed.MAX_OPS + 1)}
    [(prompts, params)] = gen.calls
    assert all(split_of(p[:-1]) == "dev" for p in prompts) and params.n == 2
