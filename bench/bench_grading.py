"""Grading throughput on mixed answers: answers/s and per-answer p99 seconds.

10,000 lines by default, as ``ttscale grade`` reads them: plain numbers, fractions, LaTeX
expressions, sets and intervals, and whole responses that need extraction (half of them
right, half wrong; values drawn at random so that the verdict cache does not answer them all).
Graded through ``grade_records`` (the CLI's path) with the math-verify worker pool sized to the
machine (``TTSCALE_GRADING_WORKERS`` overrides; ``--workers 1`` for the single-worker baseline).
Same guarantees as always: each check in a killable, rlimited worker, bounded in time.

    PYTHONPATH=src python bench/bench_grading.py [--n 10000] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections import Counter

from ttscale.grading import SandboxPool, grade_records
from ttscale.grading.sandbox import default_pool_size


def _case(rng: random.Random, i: int) -> dict:
    kind = i % 5
    right = rng.random() < 0.5
    a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(2, 9)
    if kind == 0:  # numbers, some with thousands commas or trailing zeros
        n = rng.randint(1000, 999_999)
        gold = str(n)
        pred = f"{n:,}" if right else f"{n + rng.randint(1, 9):,}"
        return {"pred": pred if rng.random() < 0.5 else pred.replace(",", "") + ".0",
                "gold": gold}
    if kind == 1:  # fractions against decimals or other fraction forms
        gold = f"\\frac{{{a}}}{{{b}}}"
        pred = f"{a}/{b}" if right else f"{a + 1}/{b}"
        return {"pred": pred if rng.random() < 0.5 else f"\\dfrac{{{a * c}}}{{{b * c}}}",
                "gold": gold}
    if kind == 2:  # LaTeX expressions that need math-verify
        gold = f"{c}\\sqrt{{{a}}}"
        pred = f"\\sqrt{{{c * c * a}}}" if right else f"\\sqrt{{{c * c * a + 1}}}"
        if rng.random() < 0.5:
            gold, pred = f"\\frac{{{a}\\pi}}{{{b}}}", (f"{a}\\pi/{b}" if right else f"{b}\\pi/{a}")
        return {"pred": pred, "gold": gold}
    if kind == 3:  # sets and intervals
        if rng.random() < 0.5:
            gold = f"\\{{{a}, {b}, {c}\\}}"
            pred = f"\\{{{c},{a},{b}\\}}" if right else f"\\{{{c},{a},{b + 100}\\}}"
        else:
            gold = f"(-\\infty, {a}] \\cup ({a + b}, \\infty)"
            pred = (f"(-\\infty,{a}]\\cup({a + b},\\infty)" if right
                    else f"(-\\infty,{a})\\cup[{a + b},\\infty)")
        return {"pred": pred, "gold": gold}
    # whole responses that need extraction
    ans = f"\\frac{{{a}}}{{{b}}}" if rng.random() < 0.5 else str(a * b)
    wrong = f"\\frac{{{a + 1}}}{{{b}}}" if ans.startswith("\\") else str(a * b + 1)
    style = rng.randrange(3)
    said = ans if right else wrong
    text = (f"We compute step by step: {a} times {b}.\n\n" + (
        f"So the answer is $\\boxed{{{said}}}$." if style == 0 else
        f"Final Answer: The final answer is ${said}$. I hope it is correct." if style == 1 else
        f"Putting it together we get ${said}$."))
    return {"response": text, "gold": ans}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=None,
                    help=f"worker processes (default: sized to the machine, {default_pool_size()})")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    lines = [json.dumps({"id": i, **_case(rng, i)}) for i in range(args.n)]
    with SandboxPool(size=args.workers) as pool:
        # start every worker first: start-up (about a second each) is not grading
        pool.check_many([("\\sqrt{4}", "2")] * (pool.MIN_PER_WORKER * pool.size))
        t0 = time.perf_counter()
        out = grade_records(lines, "bench", sandbox=pool)
        wall = time.perf_counter() - t0
        size = pool.size
    secs = sorted(float(r["seconds"]) for r in out)
    p = lambda q: secs[min(len(secs) - 1, int(q * len(secs)))]  # noqa: E731
    reasons = Counter(r["reason"].split(":")[0] for r in out)
    print(json.dumps({
        "answers": len(out), "workers": size, "cpus": os.cpu_count(),
        "wall_s": round(wall, 2), "answers_per_s": round(len(out) / wall, 1),
        "p50_s": round(p(0.50), 4), "p99_s": round(p(0.99), 4), "max_s": round(secs[-1], 4),
        "n_equal": sum(bool(r["equal"]) for r in out), "reasons": dict(reasons),
    }))


if __name__ == "__main__":
    main()
