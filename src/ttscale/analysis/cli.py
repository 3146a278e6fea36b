"""``ttscale sweep`` and ``ttscale flips``: registered on the main CLI app by ``ttscale.cli``
(see ``VERB_MODULES``).

Import-light: typer only; the sweep, the models and the store are imported inside the commands.
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
                       prm: str | None = None, revision: str | None = None,
                       split: str | None = None,
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
             "out": out, "policy": policy, "prm": prm, "revision": revision, "split": split,
             "device": device}
    cfg = build_config(config, flags, sets, check_options=False)
    plan.runs(cfg.options)  # a bad options.beam_width etc. fails here, before any model loads
    return cfg, plan


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_cmd)
    app.command("flips")(flips_cmd)


def sweep_cmd(
    task: Annotated[str | None, typer.Option(
        "--task", help="'testbed' or a .jsonl file of problems.")] = None,
    strategies: Annotated[str, typer.Option(
        "--strategies", help="Comma-separated: majority, best-of-n, weighted-best-of-n, beam "
        "(= beam-m4 and beam-msqrt), beam-m4, beam-msqrt, dvts, lookahead; the paper's lookahead "
        "grid lookahead-k1-m4, lookahead-k1-msqrt, lookahead-k3-m4, lookahead-k3-msqrt (= "
        "lookahead-grid; each costs N x (k+1) generations); revision chains of "
        "length L (N/L chains): revisions (= all four), revisions-par (L=1), revisions-l4 (L=4), "
        "revisions-sqrt (L=sqrt(N)), revisions-seq (L=N); combined (beam search + revisions).")
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
    revision: Annotated[str | None, typer.Option(
        "--revision", help="Revision model folder for the revision curves and combined "
        "(default: the shipped one on the testbed, else the policy revises itself).")] = None,
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
    tree searches (beam, DVTS, lookahead) and revisions run per budget. Everything is stored per
    problem in --out, so a rerun resumes.
    """
    from ttscale.analysis.sweep import sweep

    cfg, plan = build_sweep_config(task, strategies, budgets, limit=limit, seed=seed, out=out,
                                   policy=policy, prm=prm, revision=revision, split=split,
                                   device=device,
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


# ---- ttscale flips -------------------------------------------------------------------------


def flips_cmd(
    out: Annotated[Path, typer.Argument(
        help="Output folder of a `ttscale run` or `ttscale sweep` (holds ttscale.db).")],
    run_key: Annotated[str | None, typer.Option(
        "--run-key", help="Analyse this run only (default: every revisions/combined run).")
    ] = None,
    by_difficulty: Annotated[bool, typer.Option(
        "--by-difficulty", help="Also split every run by problem difficulty.")] = False,
    locality: Annotated[bool, typer.Option(
        "--locality", help="Also where each revision changed the attempt before it: before, at "
                           "or after its first wrong step (tasks with step labels, e.g. the "
                           "testbed).")] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object on stdout instead of tables.")] = False,
) -> None:
    """How revisions change answers: correct->incorrect and incorrect->correct per position.

    For every stored run of the revisions or combined strategy: accuracy of the attempts at each
    chain position and, for each revision, the share of correct answers it broke and of
    incorrect ones it fixed (with counts). Answers are graded here against the stored gold.
    """
    from ttscale.analysis.revisions import store_flips

    report = store_flips(out, run_key, by_difficulty, locality=locality)
    if json_out:
        typer.echo(json.dumps(report))
    else:
        print_flips(report)


def _shares(tr: dict[str, int]) -> list[str]:
    """``share (count/base)`` of correct answers broken and of incorrect ones fixed."""
    def share(count: int, other: int) -> str:
        base = count + other
        return "-" if not base else f"{count / base:.3f} ({count}/{base})"

    return [share(tr["correct_to_incorrect"], tr["correct_to_correct"]),
            share(tr["incorrect_to_correct"], tr["incorrect_to_incorrect"])]


def _attempt_label(k: int, seeded: bool) -> str:
    """Attempts count from 1; a combined chain's position 0 is its beam search seed."""
    if seeded:
        return "seed" if k == 0 else str(k)
    return str(k + 1)


def flips_table(flips: dict[str, Any], title: str, seeded: bool) -> Any:
    """One table: accuracy per attempt, and what the revision after it did (share and count)."""
    from rich.table import Table

    t = Table(title=title)
    t.add_column("attempt", style="bold")
    t.add_column("accuracy", justify="right")
    t.add_column("next: correct->incorrect", justify="right")
    t.add_column("next: incorrect->correct", justify="right")
    steps = flips["by_position"]
    for k, acc in enumerate(flips["accuracy_by_position"]):
        t.add_row(_attempt_label(k, seeded), f"{acc:.3f}",
                  *(_shares(steps[k]) if k < len(steps) else ["", ""]))
    t.add_row("all", "", *_shares(flips["overall"]), style="italic")
    settle = flips["overall"].get("stationary_accuracy")
    if settle is not None:
        t.caption = (f"at these rates a long chain settles at accuracy {settle:.3f} "
                     f"(first attempt {flips['accuracy_by_position'][0]:.3f})")
    return t


LOCALITY_ROWS = (
    ("right_kept", "step-correct attempt copied whole", "right_kept_share"),
    ("right_changed", "step-correct attempt changed", None),
    ("wrong_first_step", "wrong from its first step (any rewrite)", None),
    ("wrong_before", "wrong: a right step before the first wrong one changed",
     "wrong_before_share"),
    ("wrong_at", "wrong: right prefix kept, first wrong step changed (local)",
     "local_correction_share"),
    ("wrong_after", "wrong: the first wrong step copied", "wrong_after_share"))


def locality_table(loc: dict[str, Any], title: str) -> Any:
    """Counts and shares of ``revision_locality.Locality`` (shares within their kind)."""
    from rich.table import Table

    t = Table(title=title)
    t.add_column("the attempt before, and what the revision did")
    t.add_column("count", justify="right")
    t.add_column("share", justify="right")
    for key, label, share in LOCALITY_ROWS:
        value = loc.get(share) if share else None
        t.add_row(label, str(loc[key]), "" if value is None else f"{value:.3f}")
    return t


def print_flips(report: dict[str, Any], console: Any = None) -> None:
    """Per run: a flips table overall, then one per difficulty when they were computed."""
    from rich.console import Console

    console = console or Console()
    for run in report["runs"]:
        head = (f"{run['strategy']} N={run['budget']} L={run['chain_length']} "
                f"(run {run['run_key']}): {run['n_chains']} chains "
                f"({run['chains_per_problem']} per problem) over {run['n_problems']} problems")
        if not run["n_problems"]:
            console.print(f"{head}: no results stored yet", highlight=False)
            continue
        console.print(flips_table(run, head, run["seeded"]))
        for d, flips in run.get("by_difficulty", {}).items():
            console.print(flips_table(flips, f"difficulty {d}: {flips['n_chains']} chains over "
                                             f"{flips['n_problems']} problems", run["seeded"]))
        if "locality" in run:
            console.print(locality_table(run["locality"], f"where the revisions changed the "
                                                          f"attempt before them ({head})"))
    console.print(f"store: {report['db']}", highlight=False)
