"""Is a predicted answer equal to the gold one? Fast string/number checks, then a sandbox.

The main process never parses model text as maths: it normalises strings and compares plain
numbers exactly (``Fraction``). Anything that needs real maths (``\\sqrt{2}/2`` vs
``\\frac{\\sqrt2}{2}``, intervals, sets, equations) goes to math-verify inside the killable,
resource-limited worker of ``sandbox.py``, after a pre-check has turned away absurd input.

Reasons in a ``GradeResult``: ``exact``, ``exact-words`` (word answers, any case), ``numeric``,
``numeric-list``, ``numeric-tolerance``/``numeric-rounded`` (only with those options),
``choice`` (multiple-choice letters), ``unreduced`` (only with ``require_reduced``),
``math-verify``, ``no-answer``, ``timeout``, ``rejected: <why>``, ``worker-error: <why>``.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

from ttscale.grading.extract import boxed_answer
from ttscale.grading.normalize import (
    MAX_CHARS,
    Number,
    _unwrap_commands,
    as_number,
    clean_answer,
    normalize_answer,
    precheck,
)
from ttscale.grading.options import DEFAULT_OPTIONS, GradeOptions
from ttscale.grading.sandbox import CHECK_TIMEOUT_S, Sandbox, SandboxPool, default_sandbox

__all__ = ["GradeResult", "grade", "grade_many"]


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


_WORDS = re.compile(r"[A-Za-z][A-Za-z' -]*[A-Za-z]")  # two letters at least: "x" is a variable
_CHOICE = re.compile(r"\(?([A-E])\)?")
_CHOICE_LEAD = re.compile(r"(?:\(([A-E])\)|([A-E])[.):])\s*\S")
_BARE_PERCENT = re.compile(r"(?<!\\)%")
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")
_PLAIN_FRACTION = re.compile(r"[+-]?(?:\\frac\{(\d+)\}\{(\d+)\}|(\d+)/(\d+))")


def _choice_letter(raw: str, normal: str, bare: bool) -> str | None:
    """``B``/``(B)`` (bare) or ``(B) 12``/``B. 12`` (a labelled choice) -> ``B``."""
    if bare:
        m = _CHOICE.fullmatch(normal)
        return m.group(1) if m else None
    text = raw.strip().strip("$").strip()
    if "\\" in text:
        text = _unwrap_commands(text).strip()
    m = _CHOICE_LEAD.match(text)
    return (m.group(1) or m.group(2)) if m else None


def _choices(pred: str, gold: str, p: str, g: str) -> bool | None:
    gb, pb = _choice_letter(gold, g, True), _choice_letter(pred, p, True)
    if gb and pb:
        return gb == pb
    if gb:
        lead = _choice_letter(pred, p, False)
        return None if lead is None else lead == gb
    if pb:
        lead = _choice_letter(gold, g, False)
        return None if lead is None else lead == pb
    return None


def _unreduced(s: str) -> bool:
    m = _PLAIN_FRACTION.fullmatch(s)
    if not m:
        return False
    num, den = int(m.group(1) or m.group(3)), int(m.group(2) or m.group(4))
    return den != 0 and math.gcd(num, den) > 1


def _rounds_to(pred: str, pred_value: Fraction, gold_value: Fraction) -> bool:
    """Is ``pred`` (a decimal) the gold value rounded half-up to the digits ``pred`` shows?"""
    digits = len(pred.split(".", 1)[1]) if "." in pred else 0
    if digits == 0 or digits > 12:
        return False
    q = Decimal(1).scaleb(-digits)
    gold_dec = Decimal(gold_value.numerator) / Decimal(gold_value.denominator)
    return gold_dec.quantize(q, rounding=ROUND_HALF_UP) == Decimal(pred.lstrip("+"))


def _numbers_equal(pn: Number, gn: Number, p: str, opts: GradeOptions) -> tuple[bool, str] | None:
    if pn.value == gn.value:
        return True, "numeric"
    if opts.rel_tol and abs(pn.value - gn.value) <= Fraction(opts.rel_tol) * abs(gn.value):
        return True, "numeric-tolerance"
    if opts.accept_rounded and pn.kind == "decimal" and _rounds_to(p, pn.value, gn.value):
        return True, "numeric-rounded"
    if pn.kind == gn.kind == "decimal" or not (opts.rel_tol or opts.accept_rounded):
        # a fraction against a rounded decimal (1/3 vs 0.3333): math-verify knows the rules
        return (False, "numeric") if pn.kind == gn.kind == "decimal" else None
    return None


def _bare_list(s: str) -> list[str] | None:
    """``1,2,3`` (normalised, no brackets anywhere) -> items; None if not a bare list."""
    if "," not in s or any(ch in s for ch in "()[]{}\\"):
        return None
    items = s.split(",")
    return items if all(items) else None


_OPENERS = {"\\{": "\\}", "(": ")", "[": "]"}


def _bracketed(s: str) -> tuple[str, list[str]] | None:
    """``\\{1,2\\}`` / ``(1,2)`` / ``[1,2)`` (normalised) -> (brackets, items); plain items only."""
    for op in _OPENERS:
        if s.startswith(op):
            close = s[-2:] if s.endswith("\\}") else s[-1:]
            inner = s[len(op):len(s) - len(close)]
            if close not in ("\\}", ")", "]") or (op == "\\{") != (close == "\\}"):
                return None
            items = inner.split(",")
            if any(ch in inner for ch in "()[]{}\\") or not all(items):
                return None
            return op + close, items
    return None


def _lists(p: str, g: str, opts: GradeOptions) -> tuple[bool, str] | None:
    """Two lists of plain numbers, bare or in the same brackets: decided here. Bare lists and
    ``\\{...\\}`` compare as sets (bare ones in order with ``ordered_lists``), tuples and
    intervals in order."""
    pl, gl = _bare_list(p), _bare_list(g)
    if pl is None or gl is None:
        pb, gb = _bracketed(p), _bracketed(g)
        if pb is None or gb is None or pb[0] != gb[0]:
            return None
        pv, gv = [as_number(x) for x in pb[1]], [as_number(x) for x in gb[1]]
        if any(x is None for x in pv) or any(x is None for x in gv):
            return None
        pvals = [x.value for x in pv if x is not None]
        gvals = [x.value for x in gv if x is not None]
        if pb[0] == "\\{\\}":
            return set(pvals) == set(gvals), "numeric-list"
        return pvals == gvals, "numeric-list"
    pv, gv = [as_number(x) for x in pl], [as_number(x) for x in gl]
    if any(x is None for x in pv) or any(x is None for x in gv):
        return None
    pvals = [x.value for x in pv if x is not None]
    gvals = [x.value for x in gv if x is not None]
    if opts.ordered_lists:
        return pvals == gvals, "numeric-list"
    return set(pvals) == set(gvals), "numeric-list"


def _fast(pred: str | None, gold: str, opts: GradeOptions) -> tuple[bool, str] | None:
    """Decide without the sandbox when possible: returns (equal, reason) or None."""
    if pred is None or not pred.strip():
        return False, "no-answer"
    if pred.strip() == gold.strip():
        return True, "exact"
    for side, s in (("pred", pred), ("gold", gold)):
        if len(s) > MAX_CHARS:
            return False, f"rejected: {side} too long ({len(s)} chars > {MAX_CHARS})"
    p, g = normalize_answer(pred), normalize_answer(gold)
    if not p:
        return False, "no-answer"
    if opts.require_reduced and _unreduced(p) and not _unreduced(g):
        return False, "unreduced"
    if p == g:
        return True, "exact"
    if _WORDS.fullmatch(p) and _WORDS.fullmatch(g) and p.casefold() == g.casefold():
        return True, "exact-words"
    if opts.choice_letters:
        same = _choices(pred, gold, p, g)
        if same is not None:
            return same, "choice"
    pn, gn = as_number(p), as_number(g)
    if pn is None and gn is not None and "." in g and _DECIMAL_COMMA.fullmatch(p):
        pn = as_number(p.replace(",", "."))  # decimal comma: "1,22" against "1.22"
    if gn is None and pn is not None and "." in p and _DECIMAL_COMMA.fullmatch(g):
        gn = as_number(g.replace(",", "."))
    if pn is not None and gn is not None:
        decided = _numbers_equal(pn, gn, p, opts)
        if decided is not None:
            return decided
    listed = _lists(p, g, opts)
    if listed is not None:
        return listed
    for side, s in (("pred", pred), ("gold", gold)):
        why = precheck(s)
        if why:
            return False, f"rejected: {side} {why}"
    return None


def _unbox(s: str) -> str:
    """An answer that still holds boxes (``x \\in \\boxed{[0,1)}.``) is its boxed part."""
    if len(s) <= MAX_CHARS and ("\\boxed" in s or "\\fbox" in s):
        return boxed_answer(s) or s
    return s


def _for_parser(s: str, opts: GradeOptions) -> str:
    """What math-verify gets: the cleaned answer; a bare list as a tuple when order counts."""
    s = _BARE_PERCENT.sub(r"\\%", clean_answer(s))  # a bare "%" starts a LaTeX comment
    if opts.ordered_lists and "," in s and not s.startswith(("(", "[", "\\{", "\\left")):
        depth = 0
        top_comma = False
        for ch in s:
            depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(ch, 0)
            top_comma = top_comma or (ch == "," and depth == 0)
        if top_comma:
            s = "(" + s + ")"
    return s


def grade_many(pairs: list[tuple[str | None, str]], timeout_s: float = CHECK_TIMEOUT_S,
               sandbox: Sandbox | SandboxPool | None = None,
               options: GradeOptions | None = None) -> list[GradeResult]:
    """Grade ``(pred, gold)`` pairs; the ones that need math-verify go in one batch.

    Each math-verify check is bounded by ``timeout_s`` seconds of wall clock (a check that runs
    over is killed and graded ``equal=False, reason="timeout"``). ``options`` (default
    ``GradeOptions()``) sets the policy on lists, fractions, rounding and choice letters.
    """
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    opts = options or DEFAULT_OPTIONS
    out: list[GradeResult | None] = [None] * len(pairs)
    todo: dict[tuple[str, str], list[int]] = {}
    for i, (pred, gold) in enumerate(pairs):
        _check_types(pred, gold)
        t0 = time.perf_counter()
        pred, gold = (_unbox(pred) if pred else pred), _unbox(gold)
        fast = _fast(pred, gold, opts)
        if fast is None:
            assert pred is not None
            key = (_for_parser(pred, opts), _for_parser(gold, opts))
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


def grade(pred: str | None, gold: str, timeout_s: float = CHECK_TIMEOUT_S,
          sandbox: Sandbox | SandboxPool | None = None,
          options: GradeOptions | None = None) -> GradeResult:
    """Grade one predicted answer (already extracted, e.g. by ``extract_answer``) against gold."""
    return grade_many([(pred, gold)], timeout_s, sandbox, options)[0]
