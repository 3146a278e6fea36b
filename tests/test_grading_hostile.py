"""Hostile answers: nothing is executed, every check ends in bounded time with equal=False.

The wall-clock assertions are a safety bound on the design's per-check limit (timeout_s plus a
worker restart), not performance targets.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from ttscale.grading import Sandbox, grade, grade_many, precheck
from ttscale.grading import sandbox as sandbox_mod

SAFETY_BOUND_S = 15.0


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox() as sb:
        yield sb


def injections(marker: str) -> list[str]:
    cmd = f"touch {marker}"
    return [
        f"__import__('os').system('{cmd}')",
        f"\\boxed{{__import__('os').system('{cmd}')}}",
        f"eval(\"__import__('os').system('{cmd}')\")",
        f"exec('import os; os.system(\"{cmd}\")')",
        f"(lambda: __import__('subprocess').call(['touch', '{marker}']))()",
        "().__class__.__base__.__subclasses__()",
        f"open('{marker}', 'w')",
        f"os.system('{cmd}')",
        f"$\\input{{{marker}}}$",
        f"1 + __import__('pathlib').Path('{marker}').touch()",
    ]


def _timed_grade(pred, gold, **kw):
    t0 = time.perf_counter()
    r = grade(pred, gold, **kw)
    wall = time.perf_counter() - t0
    assert wall < SAFETY_BOUND_S
    return r


def test_code_injection_is_never_executed(tmp_path, sandbox):
    marker = tmp_path / "pwned"
    for text in injections(str(marker)):
        for pred, gold in ((text, "1"), ("1", text)):
            r = _timed_grade(pred, gold, sandbox=sandbox, timeout_s=2.0)
            assert r.equal is False and r.reason
    assert not marker.exists()


def test_code_injection_reaching_the_worker_directly_is_not_executed(tmp_path, sandbox):
    # bypass the pre-check on purpose: even math-verify inside the worker must not run it
    marker = tmp_path / "pwned"
    texts = injections(str(marker))
    verdicts = sandbox.check_many([(t, "1") for t in texts], timeout_s=3.0)
    assert [v.equal for v in verdicts] == [False] * len(texts)
    assert not marker.exists()


def test_code_like_text_is_rejected_before_parsing():
    assert precheck("__import__('os')") == "looks like code"
    assert precheck("\\lambda + 1") is None          # LaTeX lambda is maths
    r = grade("eval('1')", "1")
    assert (r.equal, r.reason) == (False, "rejected: pred looks like code")


ABSURD = [
    ("2**30**5", "exponent tower"),
    ("9^{9^{9^{9}}}", "exponent tower"),
    ("9^9^9^9", "exponent tower"),
    ("10^{10^{10}}", "exponent tower"),
    ("2^{3}^{4}", "exponent tower"),
    ("9^{123456789}", "huge power"),
    ("{" * 4_000 + "1" + "}" * 4_000, "nesting depth"),
    ("\\frac{" * 30 + "1}{2}" * 30, "nesting depth"),
    ("{" * 10_000 + "1" + "}" * 10_000, "too long"),          # 10k nested braces
    ("1+" * 500_000 + "1", "too long"),                        # 1 MB
    ("x" * 1_000_000, "too long"),
]


@pytest.mark.parametrize("text, why", ABSURD, ids=[f"{t[:12]}..{len(t)}" for t, _ in ABSURD])
def test_absurd_inputs_rejected_fast(text, why):
    for pred, gold, side in ((text, "1", "pred"), ("1", text, "gold")):
        r = _timed_grade(pred, gold)
        assert r.equal is False
        assert r.reason.startswith(f"rejected: {side} {why}")


def test_absurd_but_identical_strings_are_equal():
    tower = "9^{9^{9^{9}}}"
    assert grade(tower, tower).reason == "exact"
    big = "1+" * 500_000 + "1"
    assert grade(big, big).equal


@pytest.mark.parametrize("text", ["e^{x^2}", "2^{10}", "(2^3)^4", "x^{2}+y^{2}", "10^{-3}"])
def test_ordinary_powers_pass_the_precheck(text):
    assert precheck(text) is None


# Pass the pre-check but make sympy/antlr run for a very long time (measured: minutes to forever).
EXPLODING = ["(10^{10})!", "\\binom{10^{12}}{10^{6}}", "(x+1)^{10000}", "{" * 16 + "1" + "}" * 16]


def test_exploding_latex_times_out_in_a_batch_and_the_worker_restarts(sandbox):
    good = ("\\sqrt{12}", "2\\sqrt{3}")
    pairs = [good, (EXPLODING[0], "1"), ("\\sqrt{8}", "2\\sqrt{2}"), (EXPLODING[1], "7"),
             ("\\sqrt{18}", "3\\sqrt{2}")]
    starts = sandbox.starts
    t0 = time.perf_counter()
    results = grade_many(pairs, timeout_s=1.0, sandbox=sandbox)
    assert time.perf_counter() - t0 < 2 * SAFETY_BOUND_S
    assert [(r.equal, r.reason) for r in results] == [
        (True, "math-verify"), (False, "timeout"), (True, "math-verify"), (False, "timeout"),
        (True, "math-verify")]
    assert 0.9 < results[1].seconds < SAFETY_BOUND_S
    assert sandbox.starts >= starts + 2  # killed twice, restarted lazily each time


@pytest.mark.parametrize("text", EXPLODING[2:], ids=["binomial-power", "16-nested-braces"])
def test_more_exploding_latex_times_out(sandbox, text):
    r = _timed_grade(text, "1", sandbox=sandbox, timeout_s=1.0)
    assert (r.equal, r.reason) == (False, "timeout")


def test_default_timeout_bounds_an_exploding_check():
    r = _timed_grade(EXPLODING[0], "3")  # default sandbox, default 5 s limit
    assert (r.equal, r.reason) == (False, "timeout")
    assert r.seconds < 5.0 + 1.0


def test_worker_crash_is_reported_and_recovered(sandbox):
    assert sandbox.check("1", "1").equal  # make sure a worker is running
    pid = sandbox.pid
    assert pid is not None
    killer = threading.Timer(0.5, os.kill, (pid, signal.SIGKILL))
    killer.start()
    try:
        v = sandbox.check(EXPLODING[0], "1", timeout_s=10.0)
    finally:
        killer.cancel()
    assert (v.equal, v.reason) == (False, "worker-error: worker killed by SIGKILL")
    assert sandbox.check("\\sqrt{4}", "2").equal
    assert sandbox.pid != pid


def test_worker_runs_under_resource_limits(sandbox):
    sandbox.check("1", "1")
    limits = open(f"/proc/{sandbox.pid}/limits").read()  # noqa: SIM115 - Linux only

    def limit(name: str) -> str:
        m = re.search(rf"^{name}\s+(\S+)", limits, re.MULTILINE)
        assert m, name
        return m.group(1)

    assert limit("Max address space") == str(1024 * 1024 * 1024)
    assert limit("Max core file size") == "0"
    assert limit("Max file size") == "0"
    assert limit("Max cpu time") != "unlimited"  # raised by the timeout before every check


def test_worker_startup_failure_is_a_worker_error(monkeypatch):
    monkeypatch.setattr(sandbox_mod, "_BOOTSTRAP", "import sys; sys.exit(3)")
    with Sandbox() as sb:
        v = sb.check("\\sqrt{2}", "\\sqrt{3}")
    assert (v.equal, v.reason) == (False, "worker-error: startup: worker exited with code 3")


def test_main_process_never_imports_a_math_parser():
    code = (
        "import sys\n"
        "from ttscale.grading import extract_answer, grade, grade_many\n"
        "assert grade('0.5', '\\\\frac{1}{2}').reason == 'numeric'\n"
        "assert grade('\\\\sqrt{12}', '2\\\\sqrt{3}').reason == 'math-verify'\n"
        "print(sorted(m for m in ('sympy', 'math_verify', 'latex2sympy2_extended')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
