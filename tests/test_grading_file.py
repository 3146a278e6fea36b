"""grade_file: JSONL in, JSONL out with equal/reason/seconds; bad lines name file and line."""

from __future__ import annotations

import json

import pytest

from ttscale.grading import grade_file


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_grade_file_round_trip(tmp_path):
    rows = [
        {"pred": "0.5", "gold": "\\frac{1}{2}", "id": "a"},
        {"pred": "\\frac{\\sqrt2}{2}", "gold": "\\sqrt{2}/2", "id": "b", "extra": [1, 2]},
        {"pred": None, "gold": "3", "id": "c"},
        {"pred": 42, "gold": 42.0, "id": "d"},
        {"pred": "2**30**5", "gold": "7", "id": "e"},
    ]
    src = write_lines(tmp_path / "in.jsonl", [json.dumps(r) for r in rows])
    out = tmp_path / "out.jsonl"
    records = grade_file(src, out)
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert written == records
    assert [r["id"] for r in written] == ["a", "b", "c", "d", "e"]
    assert [r["equal"] for r in written] == [True, True, False, True, False]
    assert [r["reason"] for r in written] == ["numeric", "math-verify", "no-answer", "numeric",
                                              "rejected: pred exponent tower"]
    assert written[1]["extra"] == [1, 2]
    assert all(isinstance(r["seconds"], float) and r["seconds"] >= 0 for r in written)


def test_grade_file_without_output_path(tmp_path):
    src = write_lines(tmp_path / "in.jsonl", ['{"pred": "05", "gold": "5"}'])
    (rec,) = grade_file(src)
    assert {k: rec[k] for k in ("pred", "gold", "equal", "reason")} == {
        "pred": "05", "gold": "5", "equal": True, "reason": "exact"}
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("bad, message", [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"gold": "1"}', "missing field 'pred'"),
    ('{"pred": "1"}', "missing field 'gold'"),
    ('{"pred": "1", "gold": null}', "field 'gold' must be a string or number"),
    ('{"pred": ["1"], "gold": "1"}', "field 'pred' must be a string or number"),
    ('{"pred": true, "gold": "1"}', "field 'pred' must be a string or number"),
    ("", "empty line"),
])
def test_grade_file_bad_line_names_file_and_line(tmp_path, bad, message):
    src = write_lines(tmp_path / "in.jsonl", ['{"pred": "1", "gold": "1"}', bad])
    with pytest.raises(ValueError, match=rf"in\.jsonl:2: {message}"):
        grade_file(src, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()  # nothing half-written
