"""``ttscale grade``'s file format: JSONL in, one graded JSONL line out per input line.

Each line holds ``pred`` (an extracted answer) or ``response`` (a whole model output, extracted
by ``extract_response`` exactly as ``ttscale run`` extracts), and ``gold`` (an answer) or
``gold_solution`` (a whole reference solution: its final answer is extracted, all boxes of a
multi-part answer kept). Every other field is echoed. A bad line does not stop the file: its
output line carries ``error`` (``FILE:LINE: why``) and ``equal: false``, so nothing is lost.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ttscale.grading.equivalence import grade_many
from ttscale.grading.extract import extract_responses
from ttscale.grading.options import GradeOptions
from ttscale.grading.sandbox import CHECK_TIMEOUT_S, EXTRACT_TIMEOUT_S

__all__ = ["grade_file", "grade_records"]


def _as_text(rec: dict[str, Any], key: str, allow_none: bool) -> str | None:
    value = rec[key]
    if value is None and allow_none:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"field {key!r} must be a string or number, got {type(value).__name__}")


def _one_of(rec: dict[str, Any], plain: str, whole: str) -> str:
    if plain in rec and whole in rec:
        raise ValueError(f"give either {plain!r} or {whole!r}, not both")
    if plain not in rec and whole not in rec:
        raise ValueError(f"missing field {plain!r} (or {whole!r})")
    return plain if plain in rec else whole


def json_object_line(line: str) -> dict[str, Any]:
    """One JSONL line as an object; ValueError saying what is wrong (empty, not JSON, not an
    object), for the caller to prefix with file and line."""
    if not line.strip():
        raise ValueError("empty line")
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON ({e.msg})") from None
    if not isinstance(rec, dict):
        raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
    return rec


def _read(line: str) -> tuple[dict[str, Any], str, str | None, str, str]:
    """One input line -> (record, pred key, pred text, gold key, gold text); ValueError if bad."""
    rec = json_object_line(line)
    pkey, gkey = _one_of(rec, "pred", "response"), _one_of(rec, "gold", "gold_solution")
    pred = _as_text(rec, pkey, allow_none=True)
    gold = _as_text(rec, gkey, allow_none=False)
    assert gold is not None
    return rec, pkey, pred, gkey, gold


def grade_records(lines: list[str], where: str = "<input>", timeout_s: float = CHECK_TIMEOUT_S,
                  options: GradeOptions | None = None,
                  sandbox: Any = None) -> list[dict[str, Any]]:
    """Grade JSONL lines (see the module docstring); one output record per line, in order."""
    out: list[dict[str, Any]] = [{} for _ in lines]
    good: list[tuple[int, dict[str, Any], str, str | None, str, str]] = []
    for i, line in enumerate(lines):
        try:
            good.append((i, *_read(line)))
        except ValueError as e:
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            base = dict(rec) if isinstance(rec, dict) else {"raw": line.rstrip("\n")}
            out[i] = {**base, "error": f"{where}:{i + 1}: {e}", "equal": False,
                      "reason": "bad-line", "seconds": 0.0}
    t0 = time.perf_counter()
    whole = [(k, pred) for k, (_, _, pkey, pred, _, _) in enumerate(good) if pkey == "response"]
    whole += [(k, gold) for k, (_, _, _, _, gkey, gold) in enumerate(good)
              if gkey == "gold_solution"]
    extracted = extract_responses([t for _, t in whole], sandbox,
                                  timeout_s=min(timeout_s, EXTRACT_TIMEOUT_S))
    per_line = (time.perf_counter() - t0) / max(1, len(good))
    preds = [p for _, _, _, p, _, _ in good]
    golds: list[str | None] = [g for _, _, _, _, _, g in good]
    n_resp = sum(1 for _, _, pkey, _, _, _ in good if pkey == "response")
    for j, ((k, _), answer) in enumerate(zip(whole, extracted, strict=True)):
        if j < n_resp:
            preds[k] = answer
        else:
            golds[k] = answer
    pairs = [(p, g) for p, g in zip(preds, golds, strict=True) if g is not None]
    results = iter(grade_many(pairs, timeout_s, sandbox, options))
    for (i, rec, _, _, _, _), pred, gold in zip(good, preds, golds, strict=True):
        if gold is None:
            res = {"equal": False, "reason": "no-gold-answer", "seconds": 0.0}
        else:
            res = next(results).to_dict()
        res["seconds"] += per_line
        out[i] = {**rec, **res, "pred": pred, "gold": gold}
    return out


def grade_file(in_path: str | Path, out_path: str | Path | None = None,
               timeout_s: float = CHECK_TIMEOUT_S, options: GradeOptions | None = None,
               sandbox: Any = None) -> list[dict[str, Any]]:
    """Grade a JSONL file; writes the records to ``out_path`` (JSONL) when given.

    Records of bad lines carry ``error``; the caller decides what a bad line means for the
    exit status (``ttscale grade`` exits 1 after writing everything).
    """
    in_path = Path(in_path)
    with in_path.open(encoding="utf-8") as f:
        lines = f.read().splitlines()
    records = grade_records(lines, str(in_path), timeout_s, options, sandbox)
    if out_path is not None:
        with Path(out_path).open("w", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return records
