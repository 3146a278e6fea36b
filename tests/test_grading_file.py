"""grade_file / grade_records: pred|response and gold|gold_solution in, graded lines out; a bad
line gets an error record of its own and every other line is still graded."""

from __future__ import annotations

import json

import pytest

from ttscale.grading import Sandbox, extract_response, grade_file, grade_records
from ttscale.tasks.jsonl import JsonlTask


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox() as sb:
        yield sb


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_grade_file_round_trip(tmp_path, sandbox):
    rows = [
        {"pred": "0.5", "gold": "\\frac{1}{2}", "id": "a"},
        {"pred": "\\frac{\\sqrt2}{2}", "gold": "\\sqrt{2}/2", "id": "b", "extra": [1, 2]},
        {"pred": None, "gold": "3", "id": "c"},
        {"pred": 42, "gold": 42.0, "id": "d"},
        {"pred": "2**30**5", "gold": "7", "id": "e"},
    ]
    src = write_lines(tmp_path / "in.jsonl", [json.dumps(r) for r in rows])
    out = tmp_path / "out.jsonl"
    records = grade_file(src, out, sandbox=sandbox)
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert written == records
    assert [r["id"] for r in written] == ["a", "b", "c", "d", "e"]
    assert [r["equal"] for r in written] == [True, True, False, True, False]
    assert [r["reason"] for r in written] == ["numeric", "math-verify", "no-answer", "numeric",
                                              "rejected: pred exponent tower"]
    assert written[1]["extra"] == [1, 2]
    assert [r["pred"] for r in written] == ["0.5", "\\frac{\\sqrt2}{2}", None, "42", "2**30**5"]
    assert all(isinstance(r["seconds"], float) and r["seconds"] >= 0 for r in written)


def test_responses_and_gold_solutions_are_extracted(sandbox):
    lines = [json.dumps(r) for r in [
        {"response": "so $x = \\boxed{\\dfrac{3}{4}}$.", "gold": "0.75", "id": 1},
        {"pred": "2, 3", "gold_solution": "The roots are $\\boxed{3}$ and $\\boxed{2}$.", "id": 2},
        {"response": "We get \\boxed{2}. Then the final answer is 5.",
         "gold_solution": "Hence $\\boxed{5}$.", "id": 3},
        {"response": "The pair is $(1, 2)$.", "gold": "(1,2)", "id": 4},
        {"response": "I could not solve it.", "gold": "7", "id": 5},
    ]]
    out = grade_records(lines, "mem", sandbox=sandbox)
    assert [(r["pred"], r["gold"]) for r in out] == [
        ("\\dfrac{3}{4}", "0.75"), ("2, 3", "3, 2"), ("5", "5"), ("(1, 2)", "(1,2)"),
        (None, "7")]
    assert [r["equal"] for r in out] == [True, True, True, True, False]
    assert [r["id"] for r in out] == [1, 2, 3, 4, 5]
    assert "response" in out[0] and "gold_solution" in out[1]  # inputs echoed


@pytest.mark.parametrize("bad, message", [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"gold": "1"}', "missing field 'pred' (or 'response')"),
    ('{"pred": "1"}', "missing field 'gold' (or 'gold_solution')"),
    ('{"pred": "1", "response": "1", "gold": "1"}', "either 'pred' or 'response'"),
    ('{"pred": "1", "gold": null}', "field 'gold' must be a string or number"),
    ('{"pred": ["1"], "gold": "1"}', "field 'pred' must be a string or number"),
    ('{"pred": true, "gold": "1"}', "field 'pred' must be a string or number"),
    ('{"response": 5, "gold_solution": {}}', "field 'gold_solution' must be a string"),
    ("", "empty line"),
])
def test_bad_line_gets_its_own_error_and_nothing_is_lost(tmp_path, bad, message):
    src = write_lines(tmp_path / "in.jsonl",
                      ['{"pred": "1", "gold": "1", "id": 0}', bad, '{"pred": "2", "gold": "3"}'])
    out = tmp_path / "out.jsonl"
    records = grade_file(src, out)
    assert len(records) == 3 and len(out.read_text(encoding="utf-8").splitlines()) == 3
    assert records[0]["equal"] is True and records[2]["equal"] is False
    assert "error" not in records[0] and "error" not in records[2]
    assert records[1]["error"].startswith(f"{src}:2: ") and message in records[1]["error"]
    assert records[1]["equal"] is False and records[1]["reason"] == "bad-line"


def test_run_and_grade_extract_with_one_function(tmp_path, sandbox):
    # `ttscale run` on a MATH-style task extracts exactly as `ttscale grade` does for "response"
    path = write_lines(tmp_path / "t.jsonl", [json.dumps(
        {"problem": "Find both roots.", "solution": "They are $\\boxed{1}$ and $\\boxed{-2}$."})])
    task = JsonlTask(path)
    assert task.problems()[0].answer == "1, -2"  # every box of a multi-part gold answer kept
    texts = ["Thus \\boxed{4}. The final answer is $\\frac{1}{2}$.", "x is 1,000.5 metres",
             "Answer: (B) 12", "the roots are $\\boxed{1}$, $\\boxed{-2}$"]
    for text in texts:
        got = grade_records([json.dumps({"response": text, "gold": "0"})], sandbox=sandbox)
        assert task.extract_answer(text) == extract_response(text) == got[0]["pred"]


def test_grade_cli_takes_responses_and_policy_options(capsys, tmp_path):
    from cli_helpers import run_cli

    src = write_lines(tmp_path / "in.jsonl", [json.dumps(r) for r in [
        {"response": "The roots are $\\boxed{3}$ and $\\boxed{1}$.", "gold": "1, 3", "id": "a"},
        {"pred": "\\frac{2}{4}", "gold_solution": "So it is $\\boxed{\\frac12}$.", "id": "b"},
    ]])
    code, stdout, err = run_cli(capsys, ["grade", "--in", str(src)])
    assert code == 0, err
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert [(x["id"], x["pred"], x["gold"], x["equal"]) for x in lines] == [
        ("a", "3, 1", "1, 3", True), ("b", "\\frac{2}{4}", "\\frac12", True)]
    code, stdout, err = run_cli(capsys, ["grade", "--in", str(src), "--ordered-lists",
                                         "--require-reduced"])
    assert code == 0, err
    assert [json.loads(line)["equal"] for line in stdout.splitlines()] == [False, False]
    code, _, err = run_cli(capsys, ["grade", "--in", str(src), "--rel-tol", "2"])
    assert code != 0 and "rel_tol" in err


def test_bracketed_lists_of_plain_numbers_are_decided_in_process():
    from ttscale.grading import grade

    assert grade("\\{3,1,2\\}", "\\{1, 2, 3\\}").reason == "numeric-list"
    assert grade("\\{3,1,2\\}", "\\{1, 2, 3\\}").equal
    assert grade("(1, 2)", "(2, 1)").equal is False                 # tuples keep their order
    assert grade("(0.5, 2)", "(1/2, 2)").equal
