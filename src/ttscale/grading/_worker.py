"""The math-verify worker process: the only place where answer text meets a math parser.

It is started by ``ttscale.grading.sandbox`` as ``python -c <bootstrap>`` running this file by
path, so it imports nothing from ttscale (a stray module on the user's path or a heavy package
``__init__`` cannot get in). It first limits itself (address space, no core dumps, no files
written, no child processes), then imports math-verify and answers one JSON line per request::

    -> {"g": gold, "p": pred, "t": seconds}      <- {"equal": bool, "s": seconds}
                                                  <- {"error": "TypeName", "s": seconds}
    -> {"x": text, "t": seconds}                  <- {"answer": str | null, "s": seconds}

The second kind is math-verify's own answer *extraction* from a whole response (a second
opinion for ``grading.extract``); the text has already been capped to its tail by the parent.

The first line it writes is ``{"ready": true}`` or ``{"fatal": "..."}``. math-verify's own
``signal.alarm`` timeouts are disabled (``None``): the parent enforces the wall clock by killing
this process, and ``RLIMIT_CPU`` (raised by ``t`` before every check) is the backstop if the
parent itself is gone.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import signal
import sys
import time
from functools import lru_cache


def _set_limit(which: int, soft: int, hard: int | None = None) -> None:
    old_soft, old_hard = resource.getrlimit(which)
    if hard is None:
        hard = old_hard
    elif old_hard != resource.RLIM_INFINITY:
        hard = min(hard, old_hard)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(which, (soft, hard))


def _limit_self(memory_bytes: int) -> None:
    _set_limit(resource.RLIMIT_AS, memory_bytes, memory_bytes)
    _set_limit(resource.RLIMIT_CORE, 0, 0)
    # no file may grow: SIGXFSZ ignored turns a write into an error instead of a kill
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    sys.dont_write_bytecode = True
    _set_limit(resource.RLIMIT_FSIZE, 0, 0)
    if hasattr(resource, "RLIMIT_NPROC"):  # no fork/exec (ignored for root, hence defence only)
        _set_limit(resource.RLIMIT_NPROC, 0, 0)


def _limit_cpu(seconds: float) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _set_limit(resource.RLIMIT_CPU, int(math.ceil(used + seconds)) + 1)


_PROTOCOL = sys.stdout


def _send(obj: dict) -> None:
    _PROTOCOL.write(json.dumps(obj) + "\n")
    _PROTOCOL.flush()


def _private_stdout() -> None:
    """Keep fd 1 for the protocol only: anything a library prints goes to stderr instead."""
    global _PROTOCOL
    _PROTOCOL = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr


def main() -> None:
    memory_bytes = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 30
    _private_stdout()
    try:
        _limit_self(memory_bytes)
        import logging

        from math_verify import parse, verify

        logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    except BaseException as e:  # noqa: BLE001 - report anything, then exit
        _send({"fatal": f"{type(e).__name__}: {e}"})
        return

    def usable(parsed: list) -> bool:
        return any(not isinstance(x, str) for x in parsed)

    def parse_answer(s: str) -> list:
        s = s.strip()
        if len(s) >= 2 and s[0] == s[-1] == "$":
            s = s.strip("$").strip()
        boxed = s if s.startswith(("\\boxed", "\\fbox")) else "\\boxed{" + s + "}"
        parsed = parse(boxed, parsing_timeout=None)
        if usable(parsed):
            return parsed
        # the wrapper changed what the parser reads and gave nothing usable: the plain parse,
        # but only where it read (nearly) the whole answer, not a number out of prose or code
        plain = parse(s, parsing_timeout=None)
        read = max((len(x) for x in plain if isinstance(x, str)), default=0)
        return plain if usable(plain) and read >= 0.6 * len(s) else parsed

    def extract(text: str) -> str | None:
        parsed = parse(text, parsing_timeout=None)
        strings = [x for x in parsed if isinstance(x, str) and x.strip()]
        return strings[-1].strip() if strings else None

    parse_gold = lru_cache(maxsize=512)(parse_answer)
    # Warm up sympy's lazily imported code paths now, so the first real checks do not spend
    # their time limit on imports (measured: ~100 ms per check cold vs ~20 ms warm).
    for gold, pred in (("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2"), ("(1,2]", "\\{1,2\\}"),
                       ("x=5", "5")):
        with contextlib.suppress(Exception):  # a warm-up failure is not fatal
            verify(parse_answer(gold), parse_answer(pred), timeout_seconds=None)

    _send({"ready": True})
    for raw in sys.stdin.buffer:
        t0 = time.perf_counter()
        try:
            req = json.loads(raw)
            _limit_cpu(float(req.get("t", 5.0)))
            if "x" in req:
                out = {"answer": extract(req["x"])}
            else:
                gold, pred = parse_gold(req["g"]), parse_answer(req["p"])
                out = {"equal": bool(verify(gold, pred, timeout_seconds=None))}
        except Exception as e:  # noqa: BLE001 - never str(e): sympy objects can hang in str()
            out = {"error": type(e).__name__}
        out["s"] = time.perf_counter() - t0
        _send(out)


if __name__ == "__main__":
    main()
