"""Pull the final answer out of a model's solution text.

Model text is untrusted and can be huge (a runaway generation is easily 1 MB), so every step here
is a linear scan: plain ``str`` methods, one pass over the braces, and regexes without nested
quantifiers (the few lazy span searches only look at a capped tail). Nothing is parsed as math
here; equivalence is decided later by ``grading.grade``.

Order of preference:

1. whichever comes **last** among: a ``\\boxed{...}``/``\\fbox{...}`` group (several boxes in the
   closing part separated only by connectives, punctuation, spacing or ``x =`` become one list,
   ``"2, 3"``), a final-answer clause (``the final answer is X``, ``answer is X``, ``Answer: X``)
   and a testbed ``A: X`` line. So an intermediate box loses to a later "the final answer is";
2. GSM8K's ``#### N``;
3. the last math span (``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``) taken whole, unless a
   bare number comes after it;
4. the last bare number, never taken from inside a word (``AZYUK2A``), never splitting a
   fraction (``3/4``), a thousands group (``1,234``) or a list (``1, 2`` / ``(3, 4)``).

``extract_response`` adds math-verify's own extractor (run in the sandbox worker on the capped
tail of the text) as a second opinion where this module only found a lone bare number or
nothing; it is what ``ttscale run`` (MATH-style tasks) and ``ttscale grade`` both use.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ttscale.grading.sandbox import EXTRACT_TIMEOUT_S

__all__ = ["Extraction", "boxed_answer", "extract_answer", "extract_response",
           "extract_responses", "extract_with_source", "find_boxed", "find_boxes", "last_number"]

# "\boxed" or "\fbox" not followed by a letter (so "\boxedx" is not a box), then optional spaces;
# or an escaped brace "\{" (a literal, not a group: skipped); or a single brace. No nested
# quantifiers: linear.
_BOX_TOKEN = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])[ \t]*|\\[{}]|[{}]")
# "\boxed 5" (no braces): the answer is the next token, capped so that a text made of thousands
# of bare "\boxed" cannot make this quadratic. It does not start with a backslash: "\boxed\boxed"
# is not an answer.
_BARE_BOX_ARG = re.compile(r"[^\s${}\\][^\s${}]{0,99}")
# What may stand between two boxes of one multi-part answer: spacing, punctuation, math
# delimiters, "and"/"or", \quad, and a short "y =" naming the next part. Matched on a capped gap.
_GAP = re.compile(
    r"(?:\s+|[,;.&$]|\\[,;:! ]|\\q?quad(?![A-Za-z])|\\\\|\\[()\[\]]|and\b|or\b"
    r"|\\(?:text|mathrm|textrm)\{\s*(?:and|or|,)?\s*\}"
    r"|[A-Za-z](?:_\{?\w{1,3}\}?)?\s*=)*")
_MAX_GAP = 60
_NONSPACE = re.compile(r"\S")
_MAX_LIST = 10  # a longer run of comma-separated numbers is not an answer list
# "the final answer is", "answer is", "Answer:" (any case). Testbed "A:" is case-sensitive and
# at a line start: its steps start with "a:".
_CLAUSE = re.compile(r"(?i:answer)\s{0,3}(?:(?i:is)\b|:)")
_TESTBED_LINE = re.compile(r"(?m)^[ \t]*A[ \t]{0,10}:")
_MAX_TAIL = 300  # characters read after "####" / "answer is"
_MAX_CLAUSES = 20  # clause candidates tried, from the last one back
_SPAN_TAIL = 4000  # characters searched for math spans and bare numbers
_MV_TAIL = 2000  # characters of a response handed to math-verify's extractor
_SPAN = re.compile(r"\$\$(.+?)\$\$|\$([^$]+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_NUM = (r"-?(?:\d+ \d+/\d+(?![\d/])|(?:\d{1,3}(?:,\d{3})+(?![\d])|\d+)(?:\.\d+)?"
        r"(?:\s?/\s?\d+)?)")
_NUM_RE = re.compile(_NUM)
# a bare number (or list of them) not glued to a letter, digit, "." or "_" on its left
_NUMBER_LIST = re.compile(rf"(?<![A-Za-z0-9_.\\]){_NUM}(?:(?:\s*,\s*|\s+and\s+){_NUM})*")
_MIXED = re.compile(r"-?\d+ \d+/\d+")
_SENTENCE_END = re.compile(r"\.(?:\s|$)|\bI hope\b|<\|")
_LEADING_NUMBER = re.compile(rf"({_NUM})\s+[A-Za-z][A-Za-z ]*$")
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")


class Extraction(NamedTuple):
    """An extracted answer and where it came from (``boxed``, ``clause`` (a final-answer
    clause, an ``Answer:`` or testbed ``A:`` line), ``gsm8k``, ``math-span``, ``number``,
    ``list``; ``None`` when nothing was found)."""

    answer: str | None
    source: str | None


def find_boxes(text: str) -> list[tuple[int, int, int, int]]:
    """Every complete box as ``(start of "\\boxed", end, content start, content end)``, ordered
    by content start (offsets only: nested boxes must not copy the text once per level).

    One pass over the braces with a stack: a box whose closing brace never comes (a truncated
    generation) is skipped. Empty boxes are skipped.
    """
    first = min((i for i in (text.find("\\boxed"), text.find("\\fbox")) if i >= 0), default=-1)
    if first < 0:
        return []
    found: list[tuple[int, int, int, int]] = []  # content start, box start, end, content end
    stack: list[tuple[int, int]] = []  # (content start, box start) or (-1, -1) for a plain brace
    pending_box, pending_start = -1, -1  # end of a "\\boxed" token whose "{" is expected there
    for m in _BOX_TOKEN.finditer(text, first):
        tok = m.group()
        if tok == "{":
            stack.append((m.end(), pending_start) if m.start() == pending_box else (-1, -1))
            pending_box = -1
        elif tok == "}":
            pending_box = -1
            start, box_start = stack.pop() if stack else (-1, -1)
            if start >= 0 and _NONSPACE.search(text, start, m.start()):
                found.append((start, box_start, m.end(), m.start()))
        elif tok[0] == "\\" and len(tok) == 2:
            pending_box = -1  # "\{" or "\}"
        elif m.end() < len(text) and text[m.end()] == "{":
            pending_box, pending_start = m.end(), m.start()
        else:
            pending_box = -1
            bare = _BARE_BOX_ARG.match(text, m.end())
            if bare:
                found.append((m.end(), m.start(), bare.end(), bare.end()))
    found.sort()
    return [(box_start, end, start, content_end) for start, box_start, end, content_end in found]


def find_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}``/``\\fbox{...}``, or None.

    Among complete boxes the one whose content starts last wins, like the usual
    ``rfind("\\boxed")`` convention (``\\boxed{\\boxed{2}}`` -> ``2``).
    """
    boxes = find_boxes(text)
    return text[boxes[-1][2]:boxes[-1][3]].strip() if boxes else None


def _box_group(text: str) -> tuple[int, str] | None:
    """The last box and the boxes right before it that form one multi-part answer."""
    boxes = find_boxes(text)
    if not boxes:
        return None
    start, _, a, b = boxes[-1]
    parts = [text[a:b].strip()]
    for prev_start, prev_end, a, b in reversed(boxes[:-1]):
        if prev_end > start:  # a box around this box: not a separate part
            continue
        if start - prev_end > _MAX_GAP or not _GAP.fullmatch(text, prev_end, start):
            break
        parts.append(text[a:b].strip())
        start = prev_start
    return start, ", ".join(reversed(parts))


def boxed_answer(text: str) -> str | None:
    """The last box with the boxes of the same multi-part answer before it (``"2, 3"``)."""
    group = _box_group(text)
    return group[1] if group else None


def _spans(text: str) -> list[tuple[int, int, str]]:
    out = []
    for m in _SPAN.finditer(text):
        content = next(g for g in m.groups() if g is not None).strip()
        if content.strip("$\x00"):
            out.append((m.start(), m.end(), content))
    return out


def _leading_spans(rest: str) -> str | None:
    """``$a$ and $b$, ...`` at the start of ``rest`` -> ``"a, b"`` (None if no span leads)."""
    parts: list[str] = []
    pos = 0
    for start, end, content in _spans(rest):
        gap = rest[pos:start]
        if parts and (len(gap) > 12 or not _GAP.fullmatch(gap)):
            break
        if not parts and gap.strip():
            return None
        parts.append(content)
        pos = end
    return ", ".join(parts) if parts else None


def _reduce(rest: str, depth: int = 0) -> str | None:
    """The answer stated at the start of ``rest`` (the text right after an answer marker)."""
    rest = rest.lstrip(" \t\r\n*:").replace("\\$", "\x00")
    leading = _leading_spans(rest)
    if leading is not None:
        return leading.replace("\x00", "\\$")
    line = rest.split("\n", 1)[0]
    cut = _SENTENCE_END.search(line)
    if cut:
        line = line[:cut.start()]
    line = line.strip().rstrip(".").strip().strip("*").strip()
    if not line:
        return None
    if depth == 0:
        low = line.lower()
        i = low.rfind(" is ")
        if i >= 0:
            return _reduce(line[i + 4:], depth + 1)
    spans = _spans(line)
    if spans:
        return spans[-1][2].replace("\x00", "\\$")
    m = _LEADING_NUMBER.fullmatch(line)
    if m:  # "12 apples"
        return m.group(1)
    line = line.replace("\x00", "\\$")
    if len(line) <= 80 and len(_WORD.findall(line)) < 3:  # "Evelyn", "x = 5", "(B) 12"
        return line
    found = _last_number(line)  # prose: "Jane started it 3 hours ago"
    return found[1] if found else (line if len(line) <= 80 else None)


def _clauses(text: str) -> list[tuple[int, str]]:
    """(position, answer) of final-answer clauses and testbed ``A:`` lines, last first."""
    marks = [(m.start(), m.end()) for m in _CLAUSE.finditer(text)][-_MAX_CLAUSES:]
    marks += [(m.start(), m.end()) for m in _TESTBED_LINE.finditer(text)][-_MAX_CLAUSES:]
    out = []
    for start, end in sorted(marks, reverse=True):
        answer = _reduce(text[end:end + _MAX_TAIL])
        if answer and not (_CLAUSE.search(answer) or _TESTBED_LINE.match(answer)):
            out.append((start, answer))
    return out


def _gsm8k(text: str) -> str | None:
    i = text.rfind("####")
    if i < 0:
        return None
    rest = text[i + 4:i + 4 + _MAX_TAIL].split("\n", 1)[0].strip().rstrip(".").strip()
    return rest or None


def _last_number(text: str) -> tuple[int, str, str] | None:
    """(end, answer, "number"|"list") of the last bare number or list of numbers."""
    last = None
    for last in _NUMBER_LIST.finditer(text):  # noqa: B007 - we want the final match
        pass
    if last is None:
        return None
    a, b = last.start(), last.end()
    seg = last.group()
    if len(seg) > 40 * _MAX_LIST and ("," in seg[-200:] or " and " in seg[-200:]):
        seg = seg[-200:]  # far too long for an answer list: only its last number matters
        a = b - len(seg)
    tokens = [t.group() for t in _NUM_RE.finditer(seg)]
    tokens = [t if _MIXED.fullmatch(t) else t.replace(",", "").replace(" ", "") for t in tokens]
    if len(tokens) == 1 or len(tokens) > _MAX_LIST:
        return b, tokens[-1], "number"
    body = ", ".join(tokens)
    if a > 0 and b < len(text) and text[a - 1] + text[b] in ("()", "[]", "(]", "[)"):
        body = text[a - 1] + body + text[b]
        b += 1
    return b, body, "list"


def last_number(text: str) -> str | None:
    """The last bare number in ``text`` (``-1,234.5`` -> ``-1234.5``; ``3/4``, ``1, 2`` kept)."""
    found = _last_number(text)
    return found[1] if found else None


def extract_with_source(text: str | None) -> Extraction:
    """The final answer stated in ``text`` and which rule found it (see the module docstring)."""
    if not text or not text.strip():
        return Extraction(None, None)
    candidates: list[tuple[int, str, str]] = []
    group = _box_group(text)
    if group:
        candidates.append((group[0], group[1], "boxed"))
    clauses = _clauses(text)
    if clauses:
        pos, answer = clauses[0]
        candidates.append((pos, answer, "clause"))
    if candidates:
        _, answer, source = max(candidates, key=lambda c: c[0])
        return Extraction(answer, source)
    found = _gsm8k(text)
    if found:
        return Extraction(found, "gsm8k")
    offset = max(0, len(text) - _SPAN_TAIL)
    tail = text[offset:].replace("\\$", "\x00")
    spans = _spans(tail)
    span = spans[-1] if spans else None
    number = _last_number(text)
    if span and not (number and number[0] > offset + span[1]):
        return Extraction(span[2].replace("\x00", "\\$"), "math-span")
    if number:
        return Extraction(number[1], number[2])
    return Extraction(None, None)


def extract_answer(text: str | None) -> str | None:
    """The final answer stated in ``text`` (module docstring: the order), in this process only."""
    return extract_with_source(text).answer


def extract_response(text: str | None, sandbox: object | None = None,
                     second_opinion: bool = True,
                     timeout_s: float = EXTRACT_TIMEOUT_S) -> str | None:
    """The final answer of a whole response, as ``ttscale run`` and ``ttscale grade`` take it.

    This module's rules first; where they found only a lone bare number or nothing,
    math-verify's own extractor (in the sandbox worker, on the last ``_MV_TAIL`` characters)
    gives a second opinion and wins when it finds something.
    """
    return extract_responses([text], sandbox, second_opinion, timeout_s)[0]


def extract_responses(texts: list[str | None], sandbox: object | None = None,
                      second_opinion: bool = True,
                      timeout_s: float = EXTRACT_TIMEOUT_S) -> list[str | None]:
    """``extract_response`` for many texts; the second opinions go to the sandbox as one batch."""
    found = [extract_with_source(t) for t in texts]
    ask = [i for i, e in enumerate(found)
           if second_opinion and e.source in (None, "number") and texts[i]]
    answers = [e.answer for e in found]
    if ask:
        from ttscale.grading.sandbox import default_sandbox

        box = sandbox or default_sandbox()
        tails = [str(texts[i])[-_MV_TAIL:] for i in ask]
        for i, mv in zip(ask, box.extract_many(tails, timeout_s), strict=True):  # type: ignore[attr-defined]
            if mv:
                answers[i] = mv
    return answers
