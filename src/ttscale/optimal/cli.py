"""``ttscale optimal`` and ``ttscale optimal flops``: registered on the main CLI app by
``ttscale.cli`` (``VERB_MODULES``).

Import-light: typer only at module level; the analysis, the store and models load inside the
commands, after the flags have been checked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Compute-optimal scaling: per-difficulty strategy selection "
                      "(cross-validated), efficiency against best-of-N, FLOPs-matched "
                      "comparison with a larger model.", no_args_is_help=False)
    sub.callback(invoke_without_command=True)(optimal_cmd)
    sub.command("flops")(flops_cmd)
    app.add_typer(sub, name="optimal")


def _numbers(spec: str, flag: str, kind: type) -> list[Any]:
    out = []
    for raw in spec.split(","):
        text = raw.strip()
        if not text:
            continue
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"{flag}: {text!r} is not a number") from None
        if value <= 0:
            raise ValueError(f"{flag}: {text!r} must be > 0")
        out.append(value)
    if not out:
        raise ValueError(f"{flag}: give at least one value")
    return out


def _check_sweep(sweep: Path | None) -> Path:
    if sweep is None:
        raise ValueError("missing --sweep DIR (the --out folder of a `ttscale sweep`)")
    from ttscale.analysis.sweep import read_summary

    read_summary(sweep)  # one-line error when it is not a sweep folder
    return sweep


def optimal_cmd(
    ctx: typer.Context,
    sweep: Annotated[Path | None, typer.Option(
        "--sweep", help="Output folder of a finished `ttscale sweep` (sweep.json + ttscale.db).")
    ] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Where to write the policy table (JSON), e.g. policy.json.")] = None,
    bins: Annotated[str, typer.Option(
        "--bins", help="Bins the saved table is selected with: predicted (mean PRM score, no "
        "gold answer) or oracle (pass@1). Both are always evaluated and printed.")
    ] = "predicted",
    probe_k: Annotated[int, typer.Option(
        "--probe-k", help="Samples of the online difficulty probe (charged to the budget).")
    ] = 4,
    reuse_probe: Annotated[bool, typer.Option(
        "--reuse-probe/--no-reuse-probe", help="Reuse the probe's samples as part of a "
        "majority/best-of-N budget.")] = True,
    baseline: Annotated[str, typer.Option(
        "--baseline", help="best-of-N curve to beat: weighted-best-of-n or best-of-n.")
    ] = "weighted-best-of-n",
    targets: Annotated[str, typer.Option(
        "--targets", help="Best-of-N budgets to match, comma-separated.")] = "16,64",
    n_boot: Annotated[int, typer.Option(
        "--bootstrap", help="Bootstrap resamples of the questions for the ratio's spread.")
    ] = 200,
    seed: Annotated[int, typer.Option(
        "--seed", help="Seed of the fold split and the bootstrap.")] = 0,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the analysis as one JSON object on stdout.")] = False,
) -> None:
    """Select a strategy per (difficulty bin, budget) with 2-fold cross-validation; save the
    policy table; print where compute-optimal (probe cost counted) matches best-of-N.

    Also writes the analysis to SWEEP/optimal.json (for `ttscale report`).
    """
    if ctx.invoked_subcommand is not None:
        return
    if bins not in ("oracle", "predicted"):
        raise ValueError(f"--bins {bins!r}: choose oracle or predicted")
    if probe_k < 1:
        raise ValueError(f"--probe-k {probe_k}: must be >= 1")
    if n_boot < 0:
        raise ValueError(f"--bootstrap {n_boot}: must be >= 0")
    target_list = _numbers(targets, "--targets", int)
    sweep = _check_sweep(sweep)
    if out is None:
        raise ValueError("missing --out TABLE.json (where to write the policy table)")
    if out.exists() and out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name, e.g. {out}/policy.json")

    from ttscale.optimal.analysis import OPTIMAL_NAME, analyze, build_table, write_json
    from ttscale.optimal.data import load_sweep
    from ttscale.strategies.policy_table import save_table

    data = load_sweep(sweep)
    result = analyze(data, k=probe_k, reuse=reuse_probe, baseline=baseline,
                     targets=target_list, n_boot=n_boot, seed=seed)
    table = build_table(data, bins, k=probe_k, reuse=reuse_probe, analysis=result)
    table_path = save_table(table, out)
    analysis_path = write_json(sweep / OPTIMAL_NAME, {**result, "table": str(table_path),
                                                      "table_bins": bins})
    if json_out:
        typer.echo(json.dumps({**result, "table": str(table_path), "table_bins": bins,
                               "analysis_path": str(analysis_path)}))
    else:
        print_analysis(result, str(table_path), bins, str(analysis_path))


def _fmt_ratio(m: dict[str, Any]) -> str:
    if m.get("ratio") is None:
        return "not reached"
    bound = ">=" if m.get("bound") else ""
    return f"{bound}{m['ratio']:.2f}x"


def print_analysis(result: dict[str, Any], table: str, bins: str, path: str,
                   console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title=f"compute-optimal vs {result['baseline']} on {result['task']} "
                    f"({result['n_problems']} questions, probe k={result['probe_k']} charged, "
                    "2-fold cross-validated)")
    for col in ("bins", "best-of-N at", "its accuracy", "compute-optimal matches at",
                "ratio (generations)", "bootstrap 5-95%", "reached", "ratio (FLOPs)"):
        t.add_column(col, justify="right")
    for kind, per in result["bins"].items():
        for target, m in per["matches"].items():
            boot = m.get("bootstrap", {})
            spread = (f"{boot['ratio_p05']:.2f}-{boot['ratio_p95']:.2f}" if boot.get("n")
                      else "-")
            reached = f"{boot['reached']:.0%}" if boot.get("n") else "-"
            gens = m.get("matched_generations")
            at = "-" if gens is None else f"{'<=' if m.get('bound') else ''}{gens:.1f} gen."
            fr = m.get("flops_ratio")
            t.add_row(kind, f"N={target}", f"{m['baseline_accuracy']:.3f}", at, _fmt_ratio(m),
                      spread, reached, "-" if fr is None else f"{fr:.2f}x")
    console.print(t)
    c = Table(title="accuracy by budget, cross-validated (fold k: selected on half k, scored on "
                    "the other; all: every question once); mean generations incl. the probe")
    c.add_column("N", justify="right")
    c.add_column(result["baseline"], justify="right")
    for kind in result["bins"]:
        c.add_column(f"{kind}: fold 1 / fold 2 / all (gen.)", justify="right")
    base = {p["budget"]: p for p in result.get("baseline_curve", [])}
    for i, n in enumerate(result["budgets"]):
        row = [str(n), f"{base[n]['accuracy']:.3f}" if n in base else "-"]
        for per in result["bins"].values():
            f1, f2 = per["folds"][0]["curve"][i], per["folds"][1]["curve"][i]
            p = per["pooled"][i]
            row.append(f"{f1['accuracy']:.3f} / {f2['accuracy']:.3f} / {p['accuracy']:.3f} "
                       f"({p['generations']:.1f})")
        c.add_row(*row)
    console.print(c)
    for note in result.get("notes", []):
        console.print(f"note: {note}", highlight=False)
    console.print(f"policy table ({bins} bins): {table}", highlight=False)
    console.print(f"analysis: {path}  (ttscale report {result['sweep']})", highlight=False)


def flops_cmd(
    sweep: Annotated[Path | None, typer.Option(
        "--sweep", help="Output folder of a finished `ttscale sweep` of the small model.")
    ] = None,
    large: Annotated[str | None, typer.Option(
        "--large", help="The larger policy model (folder, or testbed:policy-large; default: "
        "the testbed's policy-large).")] = None,
    multiplier: Annotated[float | None, typer.Option(
        "--multiplier", help="Parameters of the large model over the small one (default: "
        "measured from the stored FLOPs and tokens).")] = None,
    ratios: Annotated[str, typer.Option(
        "--r", help="R = D_inference / D_pretrain values, comma-separated.")
    ] = "0.16,0.79,22",
    probe_k: Annotated[int, typer.Option(
        "--probe-k", help="Difficulty probe samples charged to the small model.")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fold split.")] = 0,
    device: Annotated[str | None, typer.Option(
        "--device", help="Device for the large model (cpu, cuda, ...).")] = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the comparison as one JSON object on stdout.")] = False,
    progress: Annotated[bool, typer.Option(
        "--progress/--no-progress", help="Progress bar on stderr.")] = True,
) -> None:
    """FLOPs-matched comparison: the small model with compute-optimal test-time compute vs the
    larger model's greedy answers, per difficulty bin and R (writes SWEEP/flops.json).

    The large model's answers are stored in the sweep's store (a rerun resumes).
    """
    r_values = _numbers(ratios, "--r", float)
    if multiplier is not None and multiplier < 1:
        raise ValueError(f"--multiplier {multiplier}: must be >= 1 (large over small)")
    if probe_k < 1:
        raise ValueError(f"--probe-k {probe_k}: must be >= 1")
    sweep = _check_sweep(sweep)
    from ttscale.optimal.data import load_sweep

    data = load_sweep(sweep)
    if json_out:
        from contextlib import redirect_stdout

        with redirect_stdout(sys.stderr):
            result = flops_matched(data, large, multiplier=multiplier, r_values=r_values,
                                   k=probe_k, seed=seed, device=device, progress=progress)
        typer.echo(json.dumps(result))
    else:
        result = flops_matched(data, large, multiplier=multiplier, r_values=r_values, k=probe_k,
                               seed=seed, device=device, progress=progress)
        print_flops(result)


def flops_matched(data: Any, large: str | None, *, multiplier: float | None = None,
                  r_values: list[float] | tuple[float, ...] = (0.16, 0.79, 22.0), k: int = 4,
                  seed: int = 0, device: str | None = None, progress: bool = False,
                  generator: Any = None) -> dict[str, Any]:
    """Sample (or resume) the large model, compare, write ``flops.json``; returns the result."""
    from ttscale.analysis.bins import oracle_bins
    from ttscale.optimal.analysis import FLOPS_NAME, cross_validated, write_json
    from ttscale.optimal.flops import compare, params_from_cost, sample_large
    from ttscale.types import Cost

    run = sample_large(data, large, generator=generator, progress=progress, device=device)
    if multiplier is None:
        total = Cost()
        for c in data.pool_cost.values():
            total.add(c)
        small = params_from_cost(total)
        if small is None or run.params is None:
            raise ValueError("cannot measure the parameter ratio from the stored costs (no "
                             "FLOPs or tokens counted); give --multiplier M")
        multiplier = run.params / small
        if multiplier < 1:
            raise ValueError(f"the 'large' model {run.policy} has {multiplier:.2f}x the small "
                             "model's parameters; give the larger model to --large")
    cv = cross_validated(data, "oracle", k, True, seed)
    rows = compare(cv.pooled, run.acc, run.flops, oracle_bins(data.pass1), multiplier, r_values)
    result = {"sweep": str(data.out), "task": data.summary.get("task"),
              "n_problems": len(data.ids), "large": run.policy, "large_run_key": run.run_key,
              "resumed": run.resumed, "computed": run.computed, "multiplier_M": multiplier,
              "probe_k": k, "bins": "oracle", "rows": rows}
    result["path"] = str(write_json(Path(data.out) / FLOPS_NAME, result))
    return result


def print_flops(result: dict[str, Any], console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title=f"FLOPs-matched: small + test-time compute vs large greedy "
                    f"(M={result['multiplier_M']:.1f}x parameters, {result['n_problems']} "
                    "questions, oracle bins)")
    for col in ("R", "X", "bin", "n", "large acc.", "small budget", "small acc.", "delta",
                "winner"):
        t.add_column(col, justify="right")
    for r in result["rows"]:
        budget = "-" if r["small_budget"] is None else (
            f"{r['small_budget']}{'+' if r['capped'] else ''}")
        small = "-" if r["small_accuracy"] is None else f"{r['small_accuracy']:.3f}"
        delta = "-" if r["delta"] is None else f"{r['delta']:+.3f}"
        t.add_row(f"{r['R']:g}", f"{r['multiplier_X']:.1f}", str(r["bin"]), str(r["n"]),
                  f"{r['large_accuracy']:.3f}", budget, small, delta, r["winner"])
    console.print(t)
    console.print("budget N+ : even the sweep's largest budget fits the FLOPs allowance (the "
                  f"small model could spend more). Written to {result['path']}", highlight=False)
