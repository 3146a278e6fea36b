"""Issue 13's behaviours, each with several cases of our own: extraction (what comes last, math
spans whole, no digits from words, lists and fractions kept), multi-part answers, the
thousands rule of the fast path, the wrapper fallbacks, normaliser gaps, and the policy options."""

from __future__ import annotations

import pytest

from ttscale.grading import (
    GradeOptions,
    Sandbox,
    SandboxPool,
    extract_answer,
    extract_response,
    extract_with_source,
    grade,
    grade_many,
)
from ttscale.grading.normalize import clean_answer, normalize_answer


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox() as sb:
        yield sb


# -- 1. extraction without a box ----------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("so the point is $(3, -4)$.", "(3, -4)"),                          # a pair, not "-4"
    ("The slope is $\\frac{p}{q}$ here.", "\\frac{p}{q}"),               # a fraction, not "q"
    ("Hence the solution set is \\(x \\le 7\\).", "x \\le 7"),           # relation and variable
    ("We get \\[\\begin{pmatrix} 2 & 0 \\\\ 1 & 5 \\end{pmatrix}\\]",  # a matrix whole
     "\\begin{pmatrix} 2 & 0 \\\\ 1 & 5 \\end{pmatrix}"),
    ("its coordinates are (7, 8)", "(7, 8)"),                           # a bare tuple kept whole
    ("the roots are 2, 5 and 9", "2, 5, 9"),                            # a bare list kept whole
    ("that is 3/8 of the cake", "3/8"),
    ("in total 12,500 people came", "12500"),
])
def test_last_math_span_or_number_is_taken_whole(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Call it X7Q and move on.", None),                 # digits inside a word are not a number
    ("model gpt4o says hi", None),
    ("id AB12CD, then 5 apples", "5"),
    ("v2 of the plan gives 40", "40"),
])
def test_no_number_is_taken_from_inside_a_word(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("First $\\boxed{12}$, but that was wrong. The final answer is $15$.", "15"),
    ("Try \\boxed{3}.\nAnswer: 4", "4"),
    ("The answer is 4. Checking again gives \\boxed{6}.", "6"),       # the box is later: it wins
    ("Final Answer: The final answer is $\\frac{2}{3}$. I hope it is correct.", "\\frac{2}{3}"),
    ("Final Answer: The number of cats is 14. I hope it is correct.", "14"),
    ("Final Answer: She needs 6 more hours. I hope it is correct.", "6"),
    ("Answer: Tuesday", "Tuesday"),
])
def test_last_of_box_clause_and_answer_line_wins(text, expected):
    assert extract_answer(text) == expected


def test_extraction_reports_its_source():
    assert extract_with_source("\\boxed{1}").source == "boxed"
    assert extract_with_source("the answer is 5").source == "clause"
    assert extract_with_source("#### 5").source == "gsm8k"
    assert extract_with_source("we get $x^2$").source == "math-span"
    assert extract_with_source("we get 5").source == "number"
    assert extract_with_source("no answer here") == (None, None)


def test_math_verify_is_a_second_opinion_for_lone_numbers(sandbox):
    # only a lone bare number (or nothing) is checked against math-verify's own extractor
    assert extract_response("so it costs $5.00 in total", sandbox) in ("5.00", "5")
    assert extract_response("no maths at all", sandbox) is None
    assert extract_response("so \\boxed{7}", sandbox) == "7"  # strong: no second opinion
    assert extract_response("so it is 7", sandbox, second_opinion=False) == "7"


# -- 2. multi-part answers --------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("The roots are $\\boxed{-1}$ and $\\boxed{6}$.", "-1, 6"),
    ("So $x = \\boxed{4}$, $y = \\boxed{-3}$.", "4, -3"),
    ("$\\boxed{(0,1)}$ and $\\boxed{(2,5)}$", "(0,1), (2,5)"),
    ("\\boxed{a} \\quad \\boxed{b} \\quad \\boxed{c}", "a, b, c"),
    ("\\boxed{1}, \\boxed{2}, or \\boxed{3}", "1, 2, 3"),
    ("We first get \\boxed{2}; since that fails we try \\boxed{3}.", "3"),  # words between: one
])
def test_boxes_separated_only_by_connectives_are_one_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("response, gold, equal", [
    ("The roots are $\\boxed{-1}$ and $\\boxed{6}$.", "6, -1", True),
    ("The roots are $\\boxed{-1}$ and $\\boxed{6}$.", "6", False),
    ("So $x = \\boxed{4}$, $y = \\boxed{-3}$.", "4,-3", True),
    ("$\\boxed{(0,1)}$ and $\\boxed{(2,5)}$", "(2,5),(0,1)", True),
])
def test_multi_part_answers_are_graded_together(sandbox, response, gold, equal):
    assert grade(extract_answer(response), gold, sandbox=sandbox).equal is equal


# -- 3. the thousands rule of the fast path ----------------------------------------------------

@pytest.mark.parametrize("raw, normal", [
    ("1,234", "1234"), ("12,345,678", "12345678"), ("-3,000.5", "-3000.5"),
    ("1, 234", "1,234"), ("1 ,234", "1,234"),       # a space around the comma: a list
    ("0,123", "0,123"), ("012,345", "012,345"),     # led by zero: not an integer
    ("1,23", "1,23"), ("1234,567", "1234,567"),     # groups of the wrong size
])
def test_comma_is_a_thousands_separator_only_in_that_shape(raw, normal):
    assert normalize_answer(raw) == normal


@pytest.mark.parametrize("pred, gold", [("1, 234", "1234"), ("3, 500", "3500"),
                                        ("0,750", "750"), ("07,000", "7000")])
def test_lists_and_zero_led_groups_are_not_big_integers(sandbox, pred, gold):
    assert grade(pred, gold, sandbox=sandbox).equal is False


# -- 4. the wrapper: trailing backslash, units, words, decimal comma ---------------------------

@pytest.mark.parametrize("pred, gold", [
    ("42\\", "42"), ("42 \\\\", "42"), ("\\frac{1}{2}\\newline", "0.5"),
    ("5 cm", "5"), ("5\\text{ cm}", "5"), ("15\\mbox{ cm}^2", "15"), ("12 square units", "12"),
    ("\\$30", "30"), ("30 dollars", "30"), ("2.5\\text{ hours}", "\\frac{5}{2}"),
    ("Yes", "\\text{yes}"), ("\\textbf{NO}", "no"), ("Evelyn", "\\text{evelyn}"),
    ("3,5", "3.5"), ("0,25", "0.25"),
])
def test_wrapper_fallbacks_accept(sandbox, pred, gold):
    assert grade(pred, gold, sandbox=sandbox).equal is True


@pytest.mark.parametrize("pred, gold", [("5 cm", "6"), ("Yes", "no"), ("3,5", "3.6"),
                                        ("2 hours", "3")])
def test_wrapper_fallbacks_do_not_accept_wrong_answers(sandbox, pred, gold):
    assert grade(pred, gold, sandbox=sandbox).equal is False


# -- 5. normaliser gaps -------------------------------------------------------------------------

@pytest.mark.parametrize("raw, cleaned", [
    ("\\sqrt[3]8", "\\sqrt[3]{8}"), ("\\sqrt[4]x", "\\sqrt[4]{x}"), ("\\sqrt2", "\\sqrt{2}"),
    ("7 3/4", "31/4"), ("-2 1/2", "-5/2"), ("918\\frac{1}{2}", "1837/2"),
    ("2\\frac{3}{2}", "2\\frac{3}{2}"),  # not a proper fraction: a product, left alone
])
def test_clean_answer(raw, cleaned):
    assert clean_answer(raw) == cleaned


@pytest.mark.parametrize("pred, gold, equal", [
    ("\\sqrt[3]8", "2", True), ("\\sqrt[3]27", "3", False), ("7 3/4", "7.75", True),
    ("7 3/4", "\\frac{31}{4}", True), ("7 3/4", "7", False), ("1 1/2", "1.5", True),
])
def test_normaliser_gaps_graded(sandbox, pred, gold, equal):
    assert grade(pred, gold, sandbox=sandbox).equal is equal


# -- 6. policy options ----------------------------------------------------------------------------

def test_unreduced_fractions_option(sandbox):
    assert grade("\\frac{2}{4}", "\\frac{1}{2}", sandbox=sandbox).equal  # default: the value
    strict = GradeOptions(require_reduced=True)
    r = grade("\\frac{2}{4}", "\\frac{1}{2}", sandbox=sandbox, options=strict)
    assert (r.equal, r.reason) == (False, "unreduced")
    assert grade("6/8", "0.75", options=strict).equal is False
    assert grade("3/4", "0.75", options=strict).equal is True


def test_rounding_options(sandbox):
    assert grade("0.33", "\\frac{1}{3}", sandbox=sandbox).equal is False     # default: exact
    assert grade("0.33", "1/3", options=GradeOptions(accept_rounded=True)).equal
    assert grade("0.34", "1/3", options=GradeOptions(accept_rounded=True)).equal is False
    assert grade("0.667", "2/3", options=GradeOptions(accept_rounded=True)).equal
    assert grade("3.1416", "3.14159", options=GradeOptions(rel_tol=1e-4)).equal
    assert grade("3.15", "3.14159", options=GradeOptions(rel_tol=1e-4)).equal is False
    with pytest.raises(ValueError, match="rel_tol"):
        GradeOptions(rel_tol=-1)


def test_reordered_lists_option(sandbox):
    assert grade("3, 1, 2", "1, 2, 3").equal                                 # default: a set
    ordered = GradeOptions(ordered_lists=True)
    assert grade("3, 1, 2", "1, 2, 3", options=ordered).equal is False
    assert grade("1, 2, 3", "1,2,3", options=ordered).equal
    assert grade("\\sqrt2, 1", "1, \\sqrt{2}", sandbox=sandbox).equal
    assert grade("\\sqrt2, 1", "1, \\sqrt{2}", sandbox=sandbox, options=ordered).equal is False
    assert grade("(2, 1)", "(1, 2)", sandbox=sandbox).equal is False        # tuples: ordered


@pytest.mark.parametrize("pred, gold, equal", [
    ("(B) 12", "B", True), ("B. 12", "B", True), ("B", "(B)", True), ("\\text{(C)}", "C", True),
    ("(D) 12", "B", False), ("B", "(B) 12", True),
])
def test_choice_letters_option(pred, gold, equal):
    assert grade(pred, gold).equal is equal


def test_choice_letters_can_be_switched_off(sandbox):
    off = GradeOptions(choice_letters=False)
    assert grade("(B) 12", "B", sandbox=sandbox, options=off).equal is False


# -- the pool keeps the sandbox's guarantees -----------------------------------------------------

def test_pool_splits_a_batch_and_bounds_each_check():
    pairs = [(f"\\sqrt{{{k * k}}}", str(k)) for k in range(2, 26)] + [("(10^{10})!", "1")]
    with SandboxPool(size=2) as pool:
        results = grade_many(pairs, timeout_s=2.0, sandbox=pool)
        assert pool.starts >= 2                          # both workers were used
    assert all(r.equal for r in results[:-1])
    assert (results[-1].equal, results[-1].reason) == (False, "timeout")
    assert results[-1].seconds < 2.0 + 5.0


@pytest.mark.parametrize("pred, gold", [
    ("$\\boxed{28}$ pct", "28\\%"),                                 # a box left in an answer
    ("x \\in \\boxed{[0, 7)}.$", "[0,7)"),
    ("3", "so the count is \\boxed{3}."),                          # a gold that is a solution
])
def test_answers_still_holding_boxes_are_graded_on_their_boxes(sandbox, pred, gold):
    assert grade(pred, gold, sandbox=sandbox).equal is True
