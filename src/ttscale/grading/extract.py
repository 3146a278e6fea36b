"""Pull the final answer out of a model's solution text.

Model text is untrusted and can be huge (a runaway generation is easily 1 MB), so every step here
is a linear scan: plain ``str`` methods, one pass over the braces, and regexes without nested
quantifiers. Nothing is parsed as math here; equivalence is decided later by ``grading.grade``.

Order of preference (first that finds something wins):

1. the last complete ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces allowed; ``\\boxed 5`` too),
2. the last line starting with ``A:`` / ``Answer:`` / ``Final answer:`` (testbed style ``A:17``),
3. GSM8K's ``#### N``,
4. ``... the answer is X``,
5. the last number in the text.
"""

from __future__ import annotations

import re

__all__ = ["extract_answer", "find_boxed", "last_number"]

# "\boxed" or "\fbox" not followed by a letter (so "\boxedx" is not a box), then optional spaces;
# or an escaped brace "\{" (a literal, not a group: skipped); or a single brace. No nested
# quantifiers: linear.
_BOX_TOKEN = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])[ \t]*|\\[{}]|[{}]")
# "\boxed 5" (no braces): the answer is the next token, capped so that a text made of thousands
# of bare "\boxed" cannot make this quadratic. It does not start with a backslash: "\boxed\boxed"
# is not an answer.
_BARE_BOX_ARG = re.compile(r"[^\s${}\\][^\s${}]{0,99}")
# "A" is case-sensitive: testbed steps start with "a:".
_ANSWER_LINE = re.compile(r"(?:A|(?i:answer|final answer))[ \t]{0,10}:")
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")
_MAX_TAIL = 300  # characters kept after "####" / "the answer is"


def find_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}``/``\\fbox{...}``, or None.

    One pass over the braces with a stack: a box whose closing brace never comes (a truncated
    generation) is skipped in favour of the last one that did close. Among complete boxes the one
    that starts last wins, like the usual ``rfind("\\boxed")`` convention.
    """
    first = min((i for i in (text.find("\\boxed"), text.find("\\fbox")) if i >= 0), default=-1)
    if first < 0:
        return None
    best_start, best = -1, None
    stack: list[int] = []  # start offset of a box's content, or -1 for an ordinary brace
    pending_box = -1  # end of a "\\boxed" token whose "{" is expected right there
    for m in _BOX_TOKEN.finditer(text, first):
        tok = m.group()
        if tok == "{":
            stack.append(m.end() if m.start() == pending_box else -1)
            pending_box = -1
        elif tok == "}":
            pending_box = -1
            start = stack.pop() if stack else -1
            if start > best_start:
                content = text[start:m.start()].strip()
                if content:
                    best_start, best = start, content
        elif tok[0] == "\\" and len(tok) == 2:
            pending_box = -1  # "\{" or "\}"
        elif m.end() < len(text) and text[m.end()] == "{":
            pending_box = m.end()
        else:
            pending_box = -1
            bare = _BARE_BOX_ARG.match(text, m.end())
            if bare and m.end() > best_start:
                best_start, best = m.end(), bare.group()
    return best


def _answer_line(text: str) -> str | None:
    for line in reversed(text.splitlines()):
        line = line.strip()
        m = _ANSWER_LINE.match(line)
        if m:
            rest = line[m.end():].strip()
            if rest:
                return rest
    return None


def _gsm8k(text: str) -> str | None:
    i = text.rfind("####")
    if i < 0:
        return None
    rest = text[i + 4:i + 4 + _MAX_TAIL].split("\n", 1)[0].strip().rstrip(".").strip()
    return rest or None


def _answer_is(text: str) -> str | None:
    i = text.lower().rfind("answer is")
    if i < 0:
        return None
    rest = text[i + len("answer is"):i + len("answer is") + _MAX_TAIL].split("\n", 1)[0]
    rest = rest.strip().lstrip(":").strip()
    rest = rest.split(". ", 1)[0].strip().rstrip(".").strip()
    if len(rest) >= 2 and rest[0] == rest[-1] == "$":
        rest = rest.strip("$").strip()
    return rest or None


def last_number(text: str) -> str | None:
    """The last number in ``text`` (``-1,234.5`` -> ``-1234.5``, ``3/4`` kept), or None."""
    last = None
    for last in _NUMBER.finditer(text):  # noqa: B007 - we want the final match
        pass
    return last.group().replace(",", "") if last else None


def extract_answer(text: str | None) -> str | None:
    """The final answer stated in ``text`` (see module docstring for the order), or None."""
    if not text or not text.strip():
        return None
    for finder in (find_boxed, _answer_line, _gsm8k, _answer_is, last_number):
        found = finder(text)
        if found:
            return found
    return None
