"""grade / grade_many: the string/number fast path and math-verify in the worker process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ttscale.grading import GradeResult, Sandbox, extract_answer, grade, grade_many
from ttscale.grading.normalize import as_number, normalize_answer

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox() as sb:
        yield sb


@pytest.mark.parametrize("raw, normal", [
    ("$1,000$", "1000"),
    ("05", "5"),
    ("-007", "-7"),
    ("0", "0"),
    ("\\left( 1, 2 \\right]", "(1,2]"),
    ("\\dfrac{3}{4}", "\\frac{3}{4}"),
    ("\\boxed{\\frac12}", "\\frac{1}{2}"),
    ("\\text{(C)}", "(C)"),
    ("50\\%", "50"),
    ("90^\\circ", "90"),
    ("5.", "5"),
    ("1{,}000", "1000"),
    ("\\$ 12", "12"),
    ("\u22125", "-5"),
    ("1,2,3", "1,2,3"),          # a list, not a number with thousands commas
])
def test_normalize_answer(raw, normal):
    assert normalize_answer(raw) == normal


def test_as_number_only_plain_numbers():
    assert as_number("0.50").value == as_number("1/2").value == as_number("\\frac{1}{2}").value
    assert as_number("1e999999999") is None      # no exponent notation (an exact-fraction bomb)
    assert as_number("\\frac{1}{0}") is None
    assert as_number("x") is None


@pytest.mark.parametrize("pred, gold, reason", [
    ("0.5", "\\frac{1}{2}", "numeric"),
    ("3/4", "\\dfrac{3}{4}", "numeric"),
    ("0.75", "3/4", "numeric"),
    ("05", "5", "exact"),
    ("1,000", "1000", "exact"),
    ("2,500", "2500", "exact"),
    ("3.50", "3.5", "numeric"),
    ("$\\frac{3}{4}$", "\\frac{3}{4}", "exact"),
    ("\\left(1, 2\\right]", "(1,2]", "exact"),
    ("\\text{(B)}", "(B)", "exact"),
    ("17", "17", "exact"),
])
def test_fast_path_equal(pred, gold, reason):
    r = grade(pred, gold)
    assert (r.equal, r.reason) == (True, reason)


@pytest.mark.parametrize("pred, gold", [("3", "4"), ("3.14", "3.1416"), ("-5", "5"), ("50", "0.5")])
def test_fast_path_not_equal_numbers(pred, gold):
    r = grade(pred, gold)
    assert (r.equal, r.reason) == (False, "numeric")


@pytest.mark.parametrize("pred", [None, "", "   "])
def test_no_answer(pred):
    r = grade(pred, "5")
    assert isinstance(r, GradeResult) and (r.equal, r.reason) == (False, "no-answer")


def test_boxed_dfrac_extracted_then_graded():
    pred = extract_answer("so the slope is $\\boxed{\\dfrac{3}{4}}$.")
    assert grade(pred, "3/4").equal


@pytest.mark.parametrize("pred, gold, equal", [
    ("(1, \\frac{4}{2}]", "\\left( 1, 2 \\right]", True),
    ("[1,2)", "(1,2]", False),
    ("(5, \\infty) \\cup (-\\infty, 3)", "(-\\infty,3)\\cup(5,\\infty)", True),
    ("\\{3, \\sqrt2, 1\\}", "\\{1,\\sqrt{2},3\\}", True),   # plain-number sets: fast path
    ("\\{1, \\sqrt2\\}", "\\{1,\\sqrt2,3\\}", False),
    ("\\frac{\\sqrt2}{2}", "\\sqrt{2}/2", True),
    ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}", True),
    ("x=5", "5", True),
    ("\\sqrt{3}", "\\sqrt{2}", False),
    ("2\\pi", "\\pi", False),
])
def test_worker_equivalence(sandbox, pred, gold, equal):
    r = grade(pred, gold, sandbox=sandbox)
    assert (r.equal, r.reason) == (equal, "math-verify")
    assert r.seconds < 5.0


def test_grade_many_batches_and_dedups(sandbox):
    pairs = [("\\frac{\\sqrt2}{2}", "\\sqrt{2}/2"), ("7", "7"), (None, "1"),
             ("\\sqrt{12}", "2\\sqrt{3}"), ("\\sqrt{12}", "2\\sqrt{3}"), ("1/3", "0.3")]
    results = grade_many(pairs, sandbox=sandbox)
    assert [r.equal for r in results] == [True, True, False, True, True, False]
    assert [r.reason for r in results] == ["math-verify", "exact", "no-answer", "math-verify",
                                           "math-verify", "math-verify"]


def test_types_and_timeout_validated():
    with pytest.raises(TypeError, match="gold"):
        grade("1", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pred"):
        grade(1, "1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout_s"):
        grade("1", "1", timeout_s=0)


def test_gsm8k_gold_answers_grade_equal_to_themselves_in_fast_path():
    for line in (FIXTURES / "gsm8k_test_100.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        gold = rec["answer"].rsplit("####", 1)[1].strip()
        r = grade(extract_answer(rec["answer"]), gold)
        assert r.equal and r.reason == "exact"
        # a zero-padded or comma-formatted prediction is the same number
        assert grade("0" + gold, gold).equal


def test_batch_larger_than_one_round_trip(sandbox):
    # ~2 KB per request, 60 requests: more than one 48 KB chunk, answers stay in order
    pad = " " * 2000
    pairs = [(f"\\sqrt{{{k * k}}}{pad}", f"{k + (k % 2)}") for k in range(2, 62)]
    verdicts = sandbox.check_many(pairs)
    assert [v.equal for v in verdicts] == [k % 2 == 0 for k in range(2, 62)]
    assert {v.reason for v in verdicts} == {"math-verify"}
