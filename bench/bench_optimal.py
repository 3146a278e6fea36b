"""Efficiency of compute-optimal scaling against best-of-N, from one sweep.

Prints, for oracle and predicted difficulty bins, the budget (in generations per question, the
difficulty probe included) at which the 2-fold cross-validated compute-optimal policy matches
best-of-N's accuracy at N = 16 and N = 64, the efficiency ratio (goal: >= 4x) with its bootstrap
spread over questions, the same ratio in FLOPs, and how long the analysis took.

Run::

    python bench/bench_optimal.py SWEEP_DIR                 # an existing `ttscale sweep --out`
    python bench/bench_optimal.py --fresh runs/bench-sweep   # a small fresh sweep first

``--fresh`` runs ``ttscale sweep`` on the testbed (shipped ``policy-small`` and ``prm``; rerun
to resume) with ``--limit`` problems and ``--budgets`` (default 1,4,16,64), then the analysis.
Nothing is asserted: the numbers are the result.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from ttscale.optimal.analysis import analyze
from ttscale.optimal.data import load_sweep


def fresh_sweep(out: str, limit: int, budgets: str, strategies: str) -> None:
    from ttscale.analysis.cli import build_sweep_config
    from ttscale.analysis.sweep import sweep

    cfg, plan = build_sweep_config("testbed", strategies, budgets, limit=limit, out=out)
    t0 = time.perf_counter()
    sweep(cfg, plan, progress=True)
    print(f"sweep: {time.perf_counter() - t0:.1f} s ({limit} problems, budgets {budgets})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", nargs="?", help="output folder of a finished `ttscale sweep`")
    ap.add_argument("--fresh", metavar="OUT", help="run a small testbed sweep into OUT first")
    ap.add_argument("--limit", type=int, default=60)
    ap.add_argument("--budgets", default="1,4,16,64")
    ap.add_argument("--strategies", default="majority,best-of-n,weighted-best-of-n,beam,dvts,"
                                            "lookahead")
    ap.add_argument("--probe-k", type=int, default=4)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--baseline", default="weighted-best-of-n",
                    help="the variant of the first lines; every group line states the ratio "
                    "against the strongest variant")
    ap.add_argument("--groups", default="search,revisions")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.fresh:
        fresh_sweep(args.fresh, args.limit, args.budgets, args.strategies)
        folder = args.fresh
    elif args.sweep:
        folder = args.sweep
    else:
        ap.error("give a sweep folder or --fresh OUT")
    t0 = time.perf_counter()
    data = load_sweep(Path(folder))
    res = analyze(data, k=args.probe_k, baseline=args.baseline, n_boot=args.bootstrap,
                  groups=[g for g in args.groups.split(",") if g])
    took = time.perf_counter() - t0
    print(f"sweep {folder}: {res['n_problems']} questions, budgets "
          f"{', '.join(map(str, res['budgets']))}; probe k={res['probe_k']} charged; baseline "
          f"{res['baseline']}")
    for kind, per in res["bins"].items():
        for target, m in per["matches"].items():
            boot = m["bootstrap"]
            head = (f"{kind:>9} bins: {m['baseline']}@{target} accuracy "
                    f"{m['baseline_accuracy']:.3f} -> compute-optimal ")
            if m["ratio"] is None:
                print(head + "never reaches it (ratio < 1 over the budgets swept)")
                continue
            bound = ">=" if m["bound"] else ""
            fr = m["flops_ratio"]
            spread = (f"bootstrap 5-95% {boot['ratio_p05']:.2f}-{boot['ratio_p95']:.2f}, "
                      f"reached {boot['reached']:.0%}" if boot.get("n") else "no bootstrap")
            strong = m.get("strongest") or {}
            vs = (f"; against the strongest, {strong['baseline']} "
                  f"{strong['baseline_accuracy']:.3f}: "
                  + ("not reached" if strong.get("ratio") is None else
                     f"{'>=' if strong.get('bound') else ''}{strong['ratio']:.2f}x")
                  if strong and strong["baseline"] != m["baseline"] else "")
            print(head + f"matches at {m['matched_generations']:.1f} generations: efficiency "
                  f"{bound}{m['ratio']:.2f}x ({spread}); FLOPs ratio "
                  f"{'-' if fr is None else f'{fr:.2f}x'}{vs}")
    from ttscale.optimal.analysis import group_rows

    print("every group (sampler), both protocols; ratio vs the strongest best-of-N of the same "
          "sampler, named:")
    for row in group_rows(res):
        print(f"  {row['group']:>9} {row['protocol']:>6} {row['bins']:>9} bins "
              f"{row['target']:>5}: {row['baseline']} {row['baseline_accuracy']} -> "
              f"matched at {row['matched']} gen., ratio {row['ratio']} (bootstrap "
              f"{row['bootstrap']}), FLOPs {row['flops_ratio']}; vs {row['others']}")
    for note in res["notes"]:
        print(f"note: {note}")
    print(f"analysis: {took:.2f} s ({res['n_boot']} bootstrap resamples x "
          f"{len(res['bins'])} bin kinds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
