"""String-only answer normalisation, plain-number comparison and the pre-check for absurd input.

Everything here runs in the main process on untrusted model text, so it is deliberately dumb:
string replacement and linear regexes. No sympy, no ``eval``, no LaTeX parser. A number is only
ever built from a string that a regex has already shown to be a short run of digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

__all__ = ["MAX_CHARS", "MAX_NESTING", "Number", "as_number", "clean_answer", "normalize_answer",
           "precheck", "strip_units"]

#: longer answers are not normalised or parsed; only an exact string match can make them equal
MAX_CHARS = 10_000
#: deeper nesting of {[( is rejected before parsing. Real answers stay under ~6 levels; the LaTeX
#: parser of math-verify is exponential in bare nested braces (measured: 12 levels ~2 s, 14 over
#: 3 s), and recursive parsers blow the stack on thousands. Slower cases below it hit the timeout.
MAX_NESTING = 20
#: a literal exponent with more digits than this (9^{1234567}) is rejected as a "huge power"
MAX_EXPONENT_DIGITS = 6
_MAX_NUMBER_CHARS = 1000

_WRAPPER_RE = re.compile(r"\\(?:text|textbf|textrm|textit|mathrm|mathbf|mbox|operatorname)"
                         r"[ \t]*\{")
_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?![A-Za-z])")
_SPACES = re.compile(r"\\[,;:! ]|\\q?quad(?![A-Za-z])|~|\s+")
_DEGREES = re.compile(r"\^\{?\\circ\}?")
_FRAC_SHORT = re.compile(r"\\frac(\d)(\d)")
# a thousands separator: no space around the comma (checked on the unspaced text), a first group
# of 1-3 digits not led by 0, exactly three digits after every comma
_THOUSANDS = re.compile(r"[+-]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?")
_NEG_SPACE = re.compile(r"\s*\\!\s*")
_SPACED_COMMA = re.compile(r"\s,|,\s|,\\[ ,;:]|,~")
_MIXED_NUMBER = re.compile(r"([+-]?)(\d{1,9})(?:\s+(\d{1,9})/(\d{1,9})"
                           r"|\s*\\[dt]?frac\s*\{(\d{1,9})\}\s*\{(\d{1,9})\})")
_SQRT_UNBRACED = re.compile(r"\\sqrt\s*(\[[^\]{}]{1,10}\])?\s*([0-9A-Za-z]|\\[A-Za-z]+)")
_TRAILING_BREAKS = re.compile(r"(?:\s|\\\\|\\newline(?![A-Za-z])|\\(?![A-Za-z{}$%&_#,;:! ]))+$")
_TEXT_UNIT = re.compile(r"\\(?:text|textnormal|textrm|mbox|mathrm|textbf|textit)\s*\{\s*"
                        r"(?:[A-Za-z][A-Za-z.]*\s*){1,3}\}(?:\s*\^\s*\{?[23]\}?)?\s*$")
_UNIT_WORDS = (
    "units?|square units|cubic units|sq units|cm|centimeters?|centimetres?|mm|millimeters?|"
    "m|meters?|metres?|km|kilometers?|kilometres?|inch(?:es)?|in|feet|foot|ft|yards?|yd|"
    "miles?|mi|mph|km/h|degrees?|deg|dollars?|cents?|euros?|pounds?|lbs?|ounces?|oz|"
    "hours?|hrs?|h|minutes?|mins?|seconds?|secs?|s|days?|weeks?|months?|years?|"
    "kg|kilograms?|g|grams?|mg|liters?|litres?|l|ml|gallons?|gal"
)
_PERCENT_WORD = re.compile(r"(?<=[0-9}$])\s*(?:percentage|percent|pct)\.?$", re.IGNORECASE)
_PLAIN_UNIT = re.compile(rf"(?<=[0-9}}).$])\s*(?:sq\.?\s*|square\s+|cubic\s+)?(?:{_UNIT_WORDS})"
                         r"(?:\s*\^\s*\{?[23]\}?|[²³])?\.?$", re.IGNORECASE)
_INTEGER = re.compile(r"([+-]?)0*(\d+)")
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
_FRACTION = re.compile(r"([+-]?)(?:\\frac\{([+-]?\d+)\}\{([+-]?\d+)\}|(\d+)/(\d+))")

# Python-looking code in an answer: never maths, and the one thing a grader must not run.
# ("\lambda" is LaTeX, so a backslash before the word exempts it.)
_CODE_LIKE = re.compile(
    r"__|(?<![\\\w])(?:import|lambda)(?!\w)"
    r"|(?<![\\\w])(?:eval|exec|compile|open|system|popen|getattr|setattr|globals|locals|"
    r"vars|input|breakpoint)\s*\("
)
_NUMERIC_BASE_BEFORE = re.compile(r"\d[})\]]*$")


def _unwrap_commands(s: str) -> str:
    """``\\text{cm}`` -> ``cm`` (and the other wrappers), keeping the content.

    Braces are matched once for the whole string, so deeply nested wrappers stay linear (and no
    recursion: a 5,000-deep ``\\text{\\text{...}}`` must not blow the stack here).
    """
    wrappers = list(_WRAPPER_RE.finditer(s))
    if not wrappers:
        return s
    closing: dict[int, int] = {}
    stack: list[int] = []
    for i, ch in enumerate(s):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            closing[stack.pop()] = i
    drop = [False] * len(s)
    for m in wrappers:
        end = closing.get(m.end() - 1)
        if end is not None:  # an unclosed wrapper is left as it is
            drop[m.start():m.end()] = [True] * (m.end() - m.start())
            drop[end] = True
    return "".join(ch for ch, d in zip(s, drop, strict=True) if not d)


def _unwrap_box(s: str) -> str:
    for cmd in ("\\boxed", "\\fbox"):
        if s.startswith(cmd + "{") and s.endswith("}"):
            inner = s[len(cmd) + 1:-1]
            depth = 0
            for ch in inner:
                depth += {"{": 1, "}": -1}.get(ch, 0)
                if depth < 0:
                    return s  # "\boxed{1}+\boxed{2}": the braces do not wrap the whole string
            return inner if depth == 0 else s
    return s


def strip_units(s: str) -> str:
    """Drop a trailing unit: ``15\\mbox{ cm}^2`` -> ``15``, ``5 cm`` -> ``5``, ``$12$ dollars``.

    A ``\\text{...}`` unit goes when something with a digit stays; a plain unit word only after
    a number (``x m`` keeps its ``m``: there it may be a variable).
    """
    s = _PERCENT_WORD.sub("\\\\%", s)  # a percentage stays one: 28 percent = 28\\%
    for _ in range(2):
        m = _TEXT_UNIT.search(s)
        if m and any(ch.isdigit() for ch in s[:m.start()]):
            s = s[:m.start()].rstrip()
        m = _PLAIN_UNIT.search(s)
        if m and len(s) - m.start() <= 40:
            s = s[:m.start()].rstrip()
    return s


def clean_answer(s: str) -> str:
    """The light clean-up both the fast path and the parser get (value never changes).

    Strips ``$`` delimiters, trailing backslashes and line-break tokens (a trailing ``\\``
    would escape the ``\\boxed{...}`` wrapper's closing brace), units, braces an unbraced
    ``\\sqrt[n]X`` argument, and reads a mixed number ``7 3/4`` or ``7\\frac{3}{4}`` (exactly that
    shape, proper fraction) as 31/4.
    """
    s = s.strip()
    if len(s) > MAX_CHARS:
        return s
    if len(s) >= 2 and s[0] == s[-1] == "$":
        s = s.strip("$").strip()
    s = _TRAILING_BREAKS.sub("", s)
    s = _TRAILING_BREAKS.sub("", strip_units(s))
    if "\\sqrt" in s:
        s = _SQRT_UNBRACED.sub(lambda m: f"\\sqrt{m.group(1) or ''}{{{m.group(2)}}}", s)
    m = _MIXED_NUMBER.fullmatch(s)
    if m:
        whole = int(m.group(2))
        num, den = int(m.group(3) or m.group(5)), int(m.group(4) or m.group(6))
        if 0 < num < den or (m.group(3) and den):  # "918\frac{1}{2}"; "7 3/4"
            s = f"{m.group(1)}{whole * den + num}/{den}"
    return s


def normalize_answer(s: str) -> str:
    """A canonical string form of an answer, for the exact-match fast path.

    Strips what never changes the value: ``$``, whitespace and LaTeX spacing, ``\\left``/
    ``\\right``, ``\\text{}``-style wrappers (keeping their content), ``\\dfrac``/``\\tfrac``,
    degree signs, ``%``, a trailing ``.``, thousands commas in a plain number and leading zeros
    of an integer (``05`` -> ``5``). Inputs over ``MAX_CHARS`` are returned stripped only.
    """
    s = clean_answer(s)
    if len(s) > MAX_CHARS:
        return s
    s = s.replace("\\$", "").replace("$", "").replace("\u2212", "-")  # U+2212 minus sign
    s = _NEG_SPACE.sub("", s).replace("{,}", ",")  # "11,\\! 111": source spaces, not gaps
    spaced_comma = bool(_SPACED_COMMA.search(s))
    s = _SPACES.sub("", s)
    s = _unwrap_box(s)
    s = _LEFT_RIGHT.sub("", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    if "\\" in s:
        s = _unwrap_commands(s)
        s = _SPACES.sub("", s)
    s = _DEGREES.sub("", s).replace("\\%", "").replace("%", "")
    s = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = s.replace("{,}", ",")
    while s.endswith(".") and not s.endswith(".."):
        s = s[:-1]
    if not spaced_comma and _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    m = _INTEGER.fullmatch(s)
    if m:
        digits = m.group(2)
        s = digits if m.group(1) != "-" or digits == "0" else "-" + digits
    return s


@dataclass(frozen=True)
class Number:
    """A plain number read from a normalised answer; ``kind`` is "decimal" or "fraction"."""

    value: Fraction
    kind: str


def as_number(s: str) -> Number | None:
    """``"0.50"``, ``"-3"``, ``"3/4"``, ``"\\frac{3}{4}"`` -> exact value; anything else None.

    Only digit strings the regexes accept reach ``Decimal``/``Fraction`` (no exponent notation:
    ``1e999999999`` would be a memory bomb as an exact fraction).
    """
    if len(s) > _MAX_NUMBER_CHARS:
        return None
    if _DECIMAL.fullmatch(s):
        return Number(Fraction(Decimal(s)), "decimal")
    m = _FRACTION.fullmatch(s)
    if m:
        sign, num, den = m.group(1), m.group(2) or m.group(4), m.group(3) or m.group(5)
        if int(den) == 0:
            return None
        value = Fraction(int(num), int(den))
        return Number(-value if sign == "-" else value, "fraction")
    return None


def _nesting_depth(s: str) -> int:
    depth = deepest = 0
    for ch in s:
        if ch in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "})]" and depth:
            depth -= 1
    return deepest


def _power_problem(s: str) -> str | None:
    """Find an exponent tower of numbers (``2**30**5``, ``9^{9^{9}}``) or a huge literal power.

    A power of a number *inside* an exponent is what turns a short string into a number with
    billions of digits; symbolic ones such as ``e^{x^2}`` are fine and are not rejected. Linear:
    one left-to-right pass that tracks which open groups are exponents.
    """
    s = s.replace("**", "^")
    if "^" not in s:
        return None
    exp_groups: list[bool] = []  # for each open bracket: does it start an exponent?
    bare_exp = False  # inside an unbracketed exponent such as the "30" of "2^30"
    after_exp_group = False  # right after the closing bracket of an exponent: "2^{3}^{4}"
    i, n = 0, len(s)
    while i < n:
        ch = s[i]
        if ch == "^":
            in_exponent = bare_exp or after_exp_group or any(exp_groups)
            j = i + 1
            while j < n and s[j] in " {(+-":
                j += 1
            k = j
            while k < n and s[k].isdigit():
                k += 1
            numeric_exp = k > j
            numeric_base = bool(_NUMERIC_BASE_BEFORE.search(s, max(0, i - 8), i))
            if numeric_exp and k - j > MAX_EXPONENT_DIGITS:
                return f"huge power ({k - j}-digit exponent)"
            if in_exponent and numeric_base and numeric_exp:
                return "exponent tower"
            if i + 1 < n and s[i + 1] in "{(":
                exp_groups.append(True)
                i += 2
                bare_exp = after_exp_group = False
                continue
            bare_exp, after_exp_group = True, False
        elif ch in "{([":
            exp_groups.append(False)
            bare_exp = after_exp_group = False
        elif ch in "})]":
            after_exp_group = exp_groups.pop() if exp_groups else False
            bare_exp = False
            i += 1
            continue
        elif not (ch.isalnum() or ch == "."):
            bare_exp = False
            after_exp_group = False
        elif after_exp_group:
            after_exp_group = False
        i += 1
    return None


def precheck(s: str) -> str | None:
    """Why ``s`` is too absurd to hand to a parser (``None`` when it is fine).

    This is a cheap first line only; the sandbox's timeout and memory limit are the real bound.
    """
    if len(s) > MAX_CHARS:
        return f"too long ({len(s)} chars > {MAX_CHARS})"
    depth = _nesting_depth(s)
    if depth > MAX_NESTING:
        return f"nesting depth {depth} > {MAX_NESTING}"
    if _CODE_LIKE.search(s):
        return "looks like code"
    return _power_problem(s)
