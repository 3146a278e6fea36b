"""Agreement of ttscale's grader with established graders' verdicts on bench/grading_cases.jsonl.

The cases (``source`` names the suite each behaviour comes from: math-verify's tests, NeMo-Skills'
math_equal tests, the MATH/PRM800K conventions of issue 13) carry the verdict the suite expects.
Run it against any ttscale checkout to compare graders side by side::

    PYTHONPATH=/work/main/src python bench/bench_grading_agreement.py   # before
    PYTHONPATH=src python bench/bench_grading_agreement.py              # after

A bench, not a test: it prints agreement and the disagreements, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import ttscale.grading as grading

CASES = Path(__file__).with_name("grading_cases.jsonl")


def _grade_all(lines: list[str]) -> list[dict]:
    if hasattr(grading, "grade_records"):  # this branch: the CLI's own path
        return grading.grade_records(lines, str(CASES))
    # an older grader: extract whole texts with its extract_answer, then grade
    recs = [json.loads(line) for line in lines]
    pairs = []
    for r in recs:
        pred = r["pred"] if "pred" in r else grading.extract_answer(r["response"])
        gold = r["gold"] if "gold" in r else grading.extract_answer(r["gold_solution"])
        pairs.append((pred, gold or ""))
    results = grading.grade_many(pairs)
    return [{**r, **res.to_dict(), "pred": p, "gold": g}
            for r, res, (p, g) in zip(recs, results, pairs, strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--cases", type=Path, default=CASES)
    ap.add_argument("--show", type=int, default=60, help="disagreements to print")
    args = ap.parse_args()
    lines = args.cases.read_text(encoding="utf-8").splitlines()
    t0 = time.perf_counter()
    out = _grade_all(lines)
    wall = time.perf_counter() - t0
    agree = [bool(o.get("equal")) == o["expected"] for o in out]
    kinds = Counter()
    for o, ok in zip(out, agree, strict=True):
        kind = "response" if "response" in json.loads(lines[out.index(o)]) else "answer"
        kinds[(kind, ok)] += 1
    print(f"grader: {grading.__file__}")
    print(f"cases: {len(out)}  agreement: {sum(agree)}/{len(out)} = {sum(agree) / len(out):.3f}")
    for kind in ("answer", "response"):
        n = kinds[(kind, True)] + kinds[(kind, False)]
        if n:
            print(f"  {kind:8s}: {kinds[(kind, True)]}/{n} = {kinds[(kind, True)] / n:.3f}")
    print(f"max seconds per case: {max(float(o['seconds']) for o in out):.3f}; "
          f"wall {wall:.1f} s (includes worker start-up)")
    shown = 0
    for o, ok in zip(out, agree, strict=True):
        if not ok and shown < args.show:
            shown += 1
            print(f"  DISAGREE {o['id']} expected={o['expected']} got={o.get('equal')} "
                  f"({o.get('reason')}): pred={str(o.get('pred'))[:60]!r} "
                  f"gold={str(o.get('gold'))[:60]!r}")


if __name__ == "__main__":
    main()
