"""Is a predicted answer equal to the gold one? Fast string/number checks, then a sandbox.

The main process never parses model text as maths: it normalises strings and compares plain
numbers exactly (``Fraction``). Anything that needs real maths (``\\sqrt{2}/2`` vs
``\\frac{\\sqrt2}{2}``, intervals, sets, equations) goes to math-verify inside the killable,
resource-limited worker of ``sandbox.py``, after a pre-check has turned away absurd input.

Reasons in a ``GradeResult``: ``exact``, ``numeric``, ``math-verify``, ``no-answer``,
``timeout``, ``rejected: <why>``, ``worker-error: <why>``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ttscale.grading.normalize import MAX_CHARS, as_number, normalize_answer, precheck
from ttscale.grading.sandbox import Sandbox, default_sandbox

__all__ = ["GradeResult", "grade", "grade_many", "grade_file"]


@dataclass(frozen=True)
class GradeResult:
    equal: bool
    reason: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Verdicts of math-verify, keyed by (pred, gold): search strategies grade the same few answers
# hundreds of times. Timeouts and worker errors are not cached (they depend on load).
_CACHE: OrderedDict[tuple[str, str], bool] = OrderedDict()
_CACHE_SIZE = 20_000
_cache_lock = threading.Lock()


def _cache_get(key: tuple[str, str]) -> bool | None:
    with _cache_lock:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    return None


def _cache_put(key: tuple[str, str], equal: bool) -> None:
    with _cache_lock:
        _CACHE[key] = equal
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)


def _check_types(pred: object, gold: object) -> None:
    if pred is not None and not isinstance(pred, str):
        raise TypeError(f"pred must be a str or None, got {type(pred).__name__}")
    if not isinstance(gold, str):
        raise TypeError(f"gold must be a str, got {type(gold).__name__}")


def _fast(pred: str | None, gold: str) -> tuple[bool, str] | None:
    """Decide without the sandbox when possible: returns (equal, reason) or None."""
    if pred is None or not pred.strip():
        return False, "no-answer"
    if pred.strip() == gold.strip():
        return True, "exact"
    for side, s in (("pred", pred), ("gold", gold)):
        if len(s) > MAX_CHARS:
            return False, f"rejected: {side} too long ({len(s)} chars > {MAX_CHARS})"
    p, g = normalize_answer(pred), normalize_answer(gold)
    if p == g and p:
        return True, "exact"
    if not p:
        return False, "no-answer"
    pn, gn = as_number(p), as_number(g)
    if pn is not None and gn is not None:
        if pn.value == gn.value:
            return True, "numeric"
        if pn.kind == gn.kind == "decimal":
            return False, "numeric"
        # a fraction against a rounded decimal (1/3 vs 0.3333): math-verify knows the rules
    for side, s in (("pred", pred), ("gold", gold)):
        why = precheck(s)
        if why:
            return False, f"rejected: {side} {why}"
    return None


def grade_many(pairs: list[tuple[str | None, str]], timeout_s: float = 5.0,
               sandbox: Sandbox | None = None) -> list[GradeResult]:
    """Grade ``(pred, gold)`` pairs; the ones that need math-verify go in one batch.

    Each math-verify check is bounded by ``timeout_s`` seconds of wall clock (a check that runs
    over is killed and graded ``equal=False, reason="timeout"``).
    """
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    out: list[GradeResult | None] = [None] * len(pairs)
    todo: dict[tuple[str, str], list[int]] = {}
    for i, (pred, gold) in enumerate(pairs):
        _check_types(pred, gold)
        t0 = time.perf_counter()
        fast = _fast(pred, gold)
        if fast is None:
            assert pred is not None
            key = (pred, gold)
            cached = _cache_get(key)
            if cached is None:
                todo.setdefault(key, []).append(i)
                continue
            fast = (cached, "math-verify")
        out[i] = GradeResult(fast[0], fast[1], time.perf_counter() - t0)
    if todo:
        keys = list(todo)
        verdicts = (sandbox or default_sandbox()).check_many(keys, timeout_s)
        for key, verdict in zip(keys, verdicts, strict=True):
            if verdict.reason == "math-verify":
                _cache_put(key, verdict.equal)
            for i in todo[key]:
                out[i] = GradeResult(verdict.equal, verdict.reason, verdict.seconds)
    return [r for r in out if r is not None]


def grade(pred: str | None, gold: str, timeout_s: float = 5.0,
          sandbox: Sandbox | None = None) -> GradeResult:
    """Grade one predicted answer (already extracted, e.g. by ``extract_answer``) against gold."""
    return grade_many([(pred, gold)], timeout_s, sandbox)[0]


def _as_answer(value: object, field: str, where: str, allow_none: bool) -> str | None:
    if value is None and allow_none:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{where}: field {field!r} must be a string or number, "
                     f"got {type(value).__name__}")


def grade_file(in_path: str | Path, out_path: str | Path | None = None,
               timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """Grade a JSONL file of ``{"pred": ..., "gold": ...}`` lines (other keys are kept).

    Returns the records with ``equal``, ``reason`` and ``seconds`` added, and writes them as
    JSONL to ``out_path`` when given. Every line must be a JSON object with both keys (``pred``
    may be null); anything else raises ``ValueError("FILE:LINE: why")`` before grading starts.
    """
    in_path = Path(in_path)
    records: list[dict[str, Any]] = []
    pairs: list[tuple[str | None, str]] = []
    with in_path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            where = f"{in_path}:{lineno}"
            if not line.strip():
                raise ValueError(f"{where}: empty line")
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
            for key in ("pred", "gold"):
                if key not in rec:
                    raise ValueError(f"{where}: missing field {key!r}")
            pred = _as_answer(rec["pred"], "pred", where, allow_none=True)
            gold = _as_answer(rec["gold"], "gold", where, allow_none=False)
            assert gold is not None
            records.append(rec)
            pairs.append((pred, gold))
    for rec, res in zip(records, grade_many(pairs, timeout_s), strict=True):
        rec.update(res.to_dict())
    if out_path is not None:
        with Path(out_path).open("w", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return records
