"""``ttscale demo``: the toolkit's main job end to end on the shipped testbed models.

A small sweep (60 held-out testbed questions; budgets 1, 4, 16; majority, best-of-N, weighted
best-of-N, beam search with M=4 and DVTS), then the HTML report, ending with the report's path.
Sized to finish in a few minutes on a 2-core laptop, and resumable like every sweep: rerun it
and only what is missing is computed (a finished demo just rewrites the report).

Registered on the main CLI app by ``ttscale.cli`` (``VERB_MODULES``); import-light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

DEMO_STRATEGIES = "majority,best-of-n,weighted-best-of-n,beam-m4,dvts"
DEMO_BUDGETS = "1,4,16"
DEMO_LIMIT = 60
#: testbed steps are one short line and solutions at most 9 of them (see recipes/testbed-*.yaml)
DEMO_SETTINGS = ("max_step_tokens=16", "max_solution_tokens=128", "max_rounds=12")


def run_demo(out: str | Path = "ttscale-demo", *, limit: int = DEMO_LIMIT,
             budgets: str = DEMO_BUDGETS, strategies: str = DEMO_STRATEGIES,
             policy: str | None = None, prm: str | None = None, seed: int = 0,
             device: str | None = None, progress: bool = True,
             parts: Any = None) -> tuple[dict[str, Any], Path]:
    """Run (or resume) the demo sweep into ``out`` and write its report; returns
    (summary, report path). ``parts`` injects ready models (tests)."""
    from ttscale.analysis.cli import build_sweep_config
    from ttscale.analysis.sweep import sweep
    from ttscale.report.html import build_report

    cfg, plan = build_sweep_config("testbed", strategies, budgets, limit=limit, seed=seed,
                                   out=str(out), policy=policy, prm=prm, split="test",
                                   device=device, sets=DEMO_SETTINGS)
    if parts is not None:
        parts.config = cfg
    summary = sweep(cfg, plan, progress=progress, parts=parts)
    if progress:
        from rich.console import Console

        Console(stderr=True).print(f"writing the report into {out} ...", highlight=False)
    report = build_report(out)
    return summary, report


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)


def demo_cmd(
    out: Annotated[str, typer.Option(
        "--out", help="Output folder (store, sweep.json, report.html); a rerun resumes.")
    ] = "ttscale-demo",
    limit: Annotated[int, typer.Option(
        "--limit", min=1, help="Held-out testbed questions.")] = DEMO_LIMIT,
    budgets: Annotated[str, typer.Option("--budgets", help="Comma-separated budgets N.")
                       ] = DEMO_BUDGETS,
    strategies: Annotated[str, typer.Option(
        "--strategies", help="Comma-separated strategies (see `ttscale sweep --help`).")
    ] = DEMO_STRATEGIES,
    policy: Annotated[str | None, typer.Option(
        "--policy", help="Policy model folder (default: shipped testbed policy-small).")] = None,
    prm: Annotated[str | None, typer.Option(
        "--prm", help="PRM folder (default: shipped testbed prm).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, ...")] = None,
    progress: Annotated[bool, typer.Option(
        "--progress/--no-progress", help="Progress bars on stderr.")] = True,
) -> None:
    """Run a small sweep on the shipped testbed models and write its HTML report.

    60 held-out questions, budgets 1/4/16, majority, best-of-N, weighted best-of-N, beam (M=4)
    and DVTS; prints the report's path last. A rerun resumes.
    """
    import sys

    from rich.console import Console

    from ttscale.analysis.cli import print_summary

    try:
        summary, report = run_demo(out, limit=limit, budgets=budgets, strategies=strategies,
                                   policy=policy, prm=prm, seed=seed, device=device,
                                   progress=progress)
    except KeyboardInterrupt:
        sys.stderr.write(f"error: interrupted; finished problems are stored in {out}, rerun "
                         "`ttscale demo` with the same flags to resume\n")
        raise typer.Exit(130) from None
    print_summary(summary, Console(stderr=True))
    typer.echo(str(report.resolve()))
