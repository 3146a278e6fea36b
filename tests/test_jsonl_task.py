"""JsonlTask (MATH-500 / GSM8K style files) and load_task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ttscale.grading import extract_answer, grade
from ttscale.tasks import load_task, testbed
from ttscale.tasks.jsonl import DEFAULT_PROMPT_TEMPLATE, JsonlTask

FIXTURES = Path(__file__).parent / "fixtures"
MATH = FIXTURES / "math500_style.jsonl"
GSM = FIXTURES / "gsm8k_style.jsonl"
GSM_REAL = FIXTURES / "gsm8k_test_100.jsonl"


def test_math500_style_fields():
    task = JsonlTask(MATH)
    assert task.name == "math500_style"
    assert task.step_delimiter == "\n\n"
    probs = task.problems()
    assert [p.id for p in probs] == [
        "test/prealgebra/1.json", "test/algebra/2.json", "test/algebra/3.json",
        "test/prealgebra/4.json", "test/algebra/5.json", "test/number_theory/6.json"]
    assert [p.answer for p in probs] == [
        "\\frac{3}{4}", "(2,3)", "\\{-1, 0, 1\\}", "5\\sqrt{2}", "\\dfrac{3}{4}", "6"]
    assert [p.difficulty for p in probs] == [1, 3, 4, 2, 2, 5]
    assert probs[0].meta["subject"] == "Prealgebra"
    assert probs[0].meta["level"] == 1
    assert "\\boxed{\\frac{3}{4}}" in probs[0].meta["solution"]
    first = json.loads(MATH.read_text(encoding="utf-8").splitlines()[0])
    assert probs[0].question == first["problem"]
    assert probs[0].prompt == DEFAULT_PROMPT_TEMPLATE.replace("{question}", first["problem"])
    assert probs[0].prompt.endswith("\n\n") and "\\boxed{}" in probs[0].prompt


def test_answers_from_solutions_grade_equal_to_given_answers():
    for p in JsonlTask(MATH).problems():
        from_solution = JsonlTask(MATH).extract_answer(p.meta["solution"])
        assert grade(from_solution, p.answer).equal, p.id


def test_gsm8k_style_fields():
    probs = JsonlTask(GSM).problems()
    assert [p.id for p in probs] == ["gsm-style-1", "gsm-style-2", "gsm-style-3"]
    assert [p.answer for p in probs] == ["38", "2,500", "3.5"]
    assert probs[0].meta["solution"].endswith("#### 38")
    assert probs[0].difficulty is None
    assert grade("2500", probs[1].answer).equal


def test_real_gsm8k_sample_all_answers():
    task = JsonlTask(GSM_REAL)
    probs = task.problems()
    assert len(probs) == 100
    for line, p in zip(GSM_REAL.read_text(encoding="utf-8").splitlines(), probs, strict=True):
        rec = json.loads(line)
        assert p.answer == rec["answer"].rsplit("####", 1)[1].strip()
        assert p.meta["id_orig"] == rec["id_orig"]
        assert p.id == f"gsm8k_test_100-{probs.index(p)}"
        assert task.extract_answer(p.meta["solution"]) == p.answer


def test_steps_join_and_final_step():
    task = JsonlTask(GSM)
    steps = ["The baker makes 12 * 24 = 288 cookies.", "So 288 - 250 = \\boxed{38} are left."]
    text = task.solution_text(steps)
    assert text == steps[0] + "\n\n" + steps[1] + "\n\n"
    assert task.solution_text([]) == ""
    assert not task.is_final_step(steps[0])
    assert task.is_final_step(steps[1])
    assert task.extract_answer(task.problems()[0].prompt + text) == "38"


def test_prompt_template_and_limit():
    task = JsonlTask(MATH, prompt_template="Q: {question}\nA:", limit=2)
    probs = task.problems()
    assert len(probs) == 2
    assert probs[1].prompt == "Q: " + probs[1].question + "\nA:"
    with pytest.raises(ValueError, match="\\{question\\}"):
        JsonlTask(MATH, prompt_template="no placeholder")
    with pytest.raises(ValueError, match="limit"):
        JsonlTask(MATH, limit=0)


GOOD = '{"problem": "1+1?", "answer": "2"}'


@pytest.mark.parametrize("bad, message", [
    ("{oops", "invalid JSON"),
    ("", "empty line"),
    ('"just a string"', "expected a JSON object"),
    ('{"answer": "2"}', "missing field 'problem'"),
    ('{"problem": "", "answer": "2"}', "field 'problem' must be a non-empty string"),
    ('{"problem": "1+1?"}', "missing field 'answer'"),
    ('{"problem": "1+1?", "solution": "it is two"}', "no 'answer' field and no \\\\boxed"),
    ('{"question": "1+1?", "answer": "so 2 ####  "}', "field 'answer' has nothing after '####'"),
    ('{"problem": "1+1?", "answer": "2", "level": "hard"}', "field 'level'"),
    ('{"problem": "1+1?", "answer": "2", "level": 7}', "field 'level' must be 1..5"),
    ('{"problem": "1+1?", "answer": true}', "field 'answer'"),
    ('{"problem": "1+1?", "answer": "2", "id": "x"}\n{"problem": "2+2?", "answer": "4", "id": "x"}',
     "duplicate id 'x'"),
])
def test_bad_lines_name_file_and_line(tmp_path, bad, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(GOOD + "\n" + bad + "\n", encoding="utf-8")
    line = 3 if "duplicate" in message else 2
    with pytest.raises(ValueError, match=rf"bad\.jsonl:{line}: {message}"):
        JsonlTask(path)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="empty file"):
        JsonlTask(empty)
    with pytest.raises(ValueError, match="no such file"):
        JsonlTask(tmp_path / "missing.jsonl")


def test_level_forms(tmp_path):
    path = tmp_path / "levels.jsonl"
    rows = [{"problem": f"q{i}", "answer": "1", "level": lv}
            for i, lv in enumerate(["Level 5", 1, "level 2", "Level ?"])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert [p.difficulty for p in JsonlTask(path).problems()] == [5, 1, 2, None]
    assert [p.id for p in JsonlTask(path).problems()] == [f"levels-{i}" for i in range(4)]


def test_load_task():
    tb = load_task("testbed", split="dev", n=3, seed=1)
    assert isinstance(tb, testbed.TestbedTask) and len(tb.problems()) == 3 and tb.split == "dev"
    js = load_task(str(MATH), limit=1)
    assert isinstance(js, JsonlTask) and len(js.problems()) == 1
    with pytest.raises(ValueError, match="not found"):
        load_task("nope/missing.jsonl")
    with pytest.raises(ValueError, match="choose 'testbed' or a path to a .jsonl file"):
        load_task("math500")


def test_testbed_answers_extract_with_the_shared_extractor():
    tb = testbed.TestbedTask(n=5)
    for p in tb.problems():
        solution = tb.solution_text(testbed.parse_question(p.question).gold_steps())
        assert extract_answer(solution) == tb.extract_answer(solution) == p.answer
