"""CLI verbs ``ttscale testbed train`` and ``ttscale testbed eval``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

testbed_app = typer.Typer(help="Build and evaluate the embedded testbed models.",
                          no_args_is_help=True)


def _log(msg: str) -> None:
    typer.echo(msg, err=True)


@testbed_app.command("train")
def train_cmd(
    out: Annotated[Path | None, typer.Option(help="where the models go (default: the "
                                                  "package's testbed/models)")] = None,
    work: Annotated[Path, typer.Option(help="intermediate files; resumes from here")] = Path(
        "runs/testbed-build"),
    seed: int = 0,
    stages: Annotated[str, typer.Option(help="comma list of small,large,labels,prm,revision,ship")]
    = "small,large,labels,prm,revision,ship",
) -> None:
    """Rebuild policy-small, policy-large, prm and revision from seeds (resumable)."""
    from ttscale.shipped import models_dir
    from ttscale.testbed.build import STAGES, BuildConfig, build

    chosen = tuple(s.strip() for s in stages.split(",") if s.strip())
    unknown = [s for s in chosen if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    summary = build(BuildConfig(out=out or models_dir(), work=work, seed=seed, stages=chosen),
                    log=_log)
    typer.echo(json.dumps(summary["timings"], indent=2))


@testbed_app.command("eval")
def eval_cmd(
    questions: Annotated[int, typer.Option(help="held-out test questions")] = 500,
    pool: Annotated[int, typer.Option(help="samples per question")] = 64,
    seed: int = 0,
    prm: Annotated[Path | None, typer.Option(help="another PRM to evaluate")] = None,
    beam: Annotated[bool, typer.Option(help="also run beam search per budget")] = True,
    out: Annotated[Path | None, typer.Option(help="write the JSON report here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    record: Annotated[bool, typer.Option(help="also write EVAL.md beside the shipped models")]
    = False,
) -> None:
    """PRM quality and accuracy by budget and difficulty on held-out testbed questions."""
    from ttscale.shipped import models_dir
    from ttscale.testbed.evaluate import evaluate_testbed
    from ttscale.testbed.tables import render_report

    report = evaluate_testbed(models_dir(), questions, pool, seed=seed, prm=prm,
                              with_beam=beam, log=_log)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    if record:
        cmd = f"ttscale testbed eval --questions {questions} --pool {pool} --seed {seed}"
        (models_dir() / "EVAL.md").write_text(f"Produced by `{cmd}`.\n\n"
                                              + render_report(report) + "\n")
    typer.echo(json.dumps(report, indent=2) if as_json else render_report(report))


@testbed_app.command("ablation")
def ablation_cmd(
    work: Annotated[Path, typer.Option(help="the build's work folder (labels, strong body)")]
    = Path("runs/testbed-build"),
    questions: int = 500,
    pool: int = 64,
    seed: int = 0,
    out: Annotated[Path | None, typer.Option(help="write the JSON report here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """PRM variants (soft / hard MC labels, exact labels, plain head) on one held-out pool."""
    from ttscale.shipped import models_dir
    from ttscale.testbed.ablation import render_ablation, run_ablation

    report = run_ablation(work, models_dir(), questions, pool, seed, log=_log)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    typer.echo(json.dumps(report, indent=2) if as_json else render_ablation(report))


def register(app: typer.Typer) -> None:
    app.add_typer(testbed_app, name="testbed")
