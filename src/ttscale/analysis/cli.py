"""``ttscale sweep``: registered on the main CLI app by ``ttscale.cli`` (see ``VERB_MODULES``).

Import-light: typer only; the sweep, the models and the store are imported inside the command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

#: RunConfig keys a sweep sets itself, per run: --set must not touch them
_SWEEP_KEYS = {"strategy": "--strategies", "budget": "--budgets"}


def build_sweep_config(task: str | None, strategies: str, budgets: str, *,
                       limit: int | None = None, seed: int | None = None,
                       out: str | None = None, policy: str | None = None,
                       prm: str | None = None, split: str | None = None,
                       device: str | None = None, config: Path | None = None,
                       sets: list[str] | tuple[str, ...] = ()) -> tuple[Any, Any]:
    """Validate everything a sweep needs from its flags: (RunConfig of the shared settings,
    SweepPlan). Fails in milliseconds with one line naming the flag."""
    from ttscale.analysis.plan import SweepPlan, parse_budgets, parse_strategies
    from ttscale.config import ConfigError, build_config, parse_set

    for item in sets:
        key = parse_set(item)[0].split(".")[0]
        if key in _SWEEP_KEYS:
            raise ConfigError(f"--set {key}: a sweep sets {key} per run; use {_SWEEP_KEYS[key]}")
    plan = SweepPlan(tuple(parse_strategies(strategies)), tuple(parse_budgets(budgets)))
    # strategy and budget are placeholders: each run of the sweep sets its own
    flags = {"task": task, "strategy": "majority", "budget": 1, "limit": limit, "seed": seed,
             "out": out, "policy": policy, "prm": prm, "split": split, "device": device}
    cfg = build_config(config, flags, sets)
    plan.runs(cfg.options)  # a bad options.beam_width fails here, before any model loads
    return cfg, plan


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_cmd)


def sweep_cmd(
    task: Annotated[str | None, typer.Option(
        "--task", help="'testbed' or a .jsonl file of problems.")] = None,
    strategies: Annotated[str, typer.Option(
        "--strategies", help="Comma-separated: majority, best-of-n, weighted-best-of-n, beam "
        "(= beam-m4 and beam-msqrt), beam-m4, beam-msqrt, dvts, lookahead.")
    ] = "majority,best-of-n,weighted-best-of-n,beam,dvts,lookahead",
    budgets: Annotated[str, typer.Option(
        "--budgets", help="Comma-separated budgets N; the largest is the pool size.")
    ] = "1,4,16,64",
    limit: Annotated[int | None, typer.Option("--limit", help="First K problems only.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Sampling seed.")] = None,
    out: Annotated[str, typer.Option(
        "--out", help="Output folder (ttscale.db + sweep.json; a rerun resumes).")
    ] = "runs/sweep",
    policy: Annotated[str | None, typer.Option(
        "--policy", help="Policy model folder (default: testbed policy-small).")] = None,
    prm: Annotated[str | None, typer.Option(
        "--prm", help="PRM folder (default: testbed prm).")] = None,
    split: Annotated[str | None, typer.Option("--split", help="Testbed split.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, ...")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="YAML recipe for the shared settings (its strategy/budget are "
        "ignored); flags and --set override it.")] = None,
    sets: Annotated[list[str] | None, typer.Option(
        "--set", help="KEY=VALUE override of a run setting, repeatable, e.g. "
        "--set max_solution_tokens=64 --set options.lookahead=1.")] = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the summary (sweep.json) as one JSON object on stdout.")] = False,
    progress: Annotated[bool, typer.Option(
        "--progress/--no-progress", help="Progress bars on stderr.")] = True,
) -> None:
    """Compare strategies over budgets (accuracy per difficulty bin, cost); writes sweep.json.

    Majority, best-of-N and weighted best-of-N come from one pool of N_max samples per problem;
    tree searches (beam, DVTS, lookahead) run per budget. Everything is stored per problem in
    --out, so a rerun resumes.
    """
    from ttscale.analysis.sweep import sweep

    cfg, plan = build_sweep_config(task, strategies, budgets, limit=limit, seed=seed, out=out,
                                   policy=policy, prm=prm, split=split, device=device,
                                   config=config, sets=sets or ())
    try:
        if json_out:
            from contextlib import redirect_stdout

            with redirect_stdout(sys.stderr):
                summary = sweep(cfg, plan, progress=progress)
        else:
            summary = sweep(cfg, plan, progress=progress)
    except KeyboardInterrupt:
        sys.stderr.write(f"error: interrupted; finished problems are stored in {cfg.out}, "
                         "rerun the same command to resume\n")
        raise typer.Exit(130) from None
    if json_out:
        typer.echo(json.dumps(summary))
    else:
        print_summary(summary)


def print_summary(summary: dict[str, Any], console: Any = None) -> None:
    """Accuracy table (strategies x budgets) and where the summary went."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    budgets = [str(b) for b in summary["budgets"]]
    t = Table(title=f"ttscale sweep on {summary['task']} ({summary['n_problems']} problems): "
                    "accuracy (mean FLOPs per problem)")
    t.add_column("strategy", style="bold")
    for b in budgets:
        t.add_column(f"N={b}", justify="right")
    for name in summary["strategies"]:
        row = [name]
        for b in budgets:
            e = summary["results"].get(name, {}).get(b)
            row.append("-" if e is None else
                       f"{e['accuracy']:.3f} ({e['cost']['total_flops']:.2g})")
        t.add_row(*row)
    console.print(t)
    pool = summary["pool"]
    auc = pool.get("within_question_auc")
    console.print(f"pool: N={pool['budget']} samples per problem, mean pass@1 "
                  f"{pool['mean_pass1']:.3f}, within-question PRM AUC "
                  f"{'-' if auc is None else f'{auc:.3f}'} over {pool['n_auc_questions']} "
                  "questions", highlight=False)
    console.print(f"summary: {Path(summary['out']) / 'sweep.json'}  "
                  f"(ttscale report {summary['out']})", highlight=False)
