"""Answer extraction: formats, precedence, GSM8K gold answers, and bounded time on hostile text."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ttscale.grading import extract_answer, find_boxed

FIXTURES = Path(__file__).parent / "fixtures"
# Safety bound only (the design is linear; 1 MB takes well under a second): catches a
# catastrophic regex or a quadratic scan, not a performance target.
SAFETY_BOUND_S = 15.0


@pytest.mark.parametrize("text, expected", [
    ("so the answer is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),                  # nested braces
    ("first \\boxed{1}, then \\boxed{2}", "2"),                                 # last box wins
    ("\\boxed{1} and a truncated \\boxed{\\frac{1}{2}", "1"),                   # unclosed skipped
    ("\\fbox{7}", "7"),
    ("\\boxed 5$.", "5"),
    ("$x \\in \\boxed{\\{-1, 0, 1\\}}$", "\\{-1, 0, 1\\}"),                      # escaped braces
    ("\\boxed{\\left( 1, 2 \\right]}", "\\left( 1, 2 \\right]"),
    ("\\boxed{}\nthe answer is 3", "3"),                                        # empty box ignored
    ("Q:72a-5b-6\na:72-5=67\nb:67-6=61\nA:61", "61"),                           # testbed
    ("A: 17", "17"),
    ("Final Answer: 12", "12"),
    ("a:72-5=67\nb:67-6=61", "61"),                         # "a:" is a testbed step, not "A:"
    ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "72"),
    ("#### 1,000", "1,000"),
    ("The answer is $\\frac{1}{2}$.", "\\frac{1}{2}"),
    ("The final answer is 42. So we are done.", "42"),
    ("she has 3 apples and 1,234 pears", "1234"),
    ("it costs -2.5 dollars", "-2.5"),
    ("about 3/4 of them", "3/4"),
    ("\\boxed{3} but #### 4", "3"),                                            # boxed first
    ("A:5\n#### 4", "5"),                                                     # A: before ####
])
def test_extract_answer_formats(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text", ["", "   \n", "no digits here", None, "\\boxed{}"])
def test_extract_answer_none(text):
    assert extract_answer(text) is None


def test_find_boxed_only_boxes():
    assert find_boxed("#### 5") is None
    assert find_boxed("\\boxed{\\boxed{2}}") == "2"
    assert find_boxed("\\boxedx{3}") is None


def test_all_gsm8k_gold_answers_extracted():
    lines = (FIXTURES / "gsm8k_test_100.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 100
    for line in lines:
        rec = json.loads(line)
        gold = rec["answer"].rsplit("####", 1)[1].strip()
        assert extract_answer(rec["answer"]) == gold, rec["id_orig"]
        # the same number stated MATH style and as a bare last number
        assert extract_answer(f"so the total is \\boxed{{{gold}}}.") == gold
        assert extract_answer(f"In total that makes {gold}") == gold


HOSTILE_1MB = {  # name: (text, what extract_answer must return)
    "open boxes": ("\\boxed{" * 150_000, None),
    "bare boxes": ("\\boxed" * 170_000, None),
    "box then braces": ("\\boxed{" + "{" * 1_000_000, None),
    "nested closed boxes": ("\\boxed{" * 60_000 + "7" + "}" * 60_000, "7"),
    "box then spaces": ("\\boxed" + " " * 1_000_000 + "x", "x"),
    "number commas": ("1," * 500_000, "1"),
    "digits": ("9" * 1_000_000, "9" * 1_000_000),
    "answer is": ("the answer is " * 75_000, None),
    "answer lines": ("A:\n" * 330_000, None),
    "hashes": ("#" * 1_000_000, None),
    "dollars": ("$" * 1_000_000, None),
}


@pytest.mark.parametrize("name", list(HOSTILE_1MB))
def test_extract_is_bounded_on_1mb_hostile_text(name):
    text, expected = HOSTILE_1MB[name]
    t0 = time.perf_counter()
    out = extract_answer(text)
    assert time.perf_counter() - t0 < SAFETY_BOUND_S
    assert out == expected
