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
    large_steps: Annotated[int | None, typer.Option(
        min=1, help="training steps of policy-large (default 600; it stops early at dev greedy "
             "0.97): more to train it until its dev greedy accuracy plateaus")] = None,
    large_patience: Annotated[int | None, typer.Option(
        min=1, help="stop policy-large once dev greedy has not improved for this many evaluations "
             "(every 50 steps); the best snapshot ships")] = None,
    large_lr: Annotated[float | None, typer.Option(
        help="peak learning rate of policy-large (default 2e-3; lower when training further "
             "from --large-init)")] = None,
    large_init: Annotated[Path | None, typer.Option(
        help="train policy-large further from these weights (e.g. the shipped policy-large) "
             "instead of from scratch")] = None,
    revision_local: Annotated[bool, typer.Option(
        help="revision trajectories that teach local correction (docs/revisions.md)")] = False,
    revision_repeat_rate: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="share of revision trajectories whose last attempt shown is "
                               "right and whose target repeats it (docs/revisions.md)")] = 0.0,
) -> None:
    """Rebuild policy-small, policy-large, prm and revision from seeds (resumable)."""
    from ttscale.shipped import models_dir
    from ttscale.testbed.build import STAGES, BuildConfig, build

    chosen = tuple(s.strip() for s in stages.split(",") if s.strip())
    unknown = [s for s in chosen if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    extra: dict = {"revision_local": revision_local,
                   "revision_repeat_rate": revision_repeat_rate}
    if large_steps is not None:
        extra["large_steps"] = large_steps
    if large_patience is not None:
        extra["large_patience"] = large_patience
    if large_lr is not None:
        if large_lr <= 0:
            raise ValueError(f"--large-lr {large_lr}: must be > 0")
        extra["large_lr"] = large_lr
    if large_init is not None:
        if not (large_init / "config.json").exists():
            raise ValueError(f"--large-init {large_init}: no model there (config.json missing)")
        extra["large_init"] = large_init
    summary = build(BuildConfig(out=out or models_dir(), work=work, seed=seed, stages=chosen,
                                **extra), log=_log)
    typer.echo(json.dumps(summary["timings"], indent=2))


@testbed_app.command("eval")
def eval_cmd(
    questions: Annotated[int, typer.Option(help="held-out test questions")] = 500,
    pool: Annotated[int, typer.Option(help="samples per question")] = 64,
    seed: int = 0,
    prm: Annotated[Path | None, typer.Option(help="another PRM to evaluate")] = None,
    orm: Annotated[Path | None, typer.Option(
        help="an ORM (`ttscale train orm`) scored on the same pool: PRM vs ORM")] = None,
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
                              with_beam=beam, log=_log, orm=orm)
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
    revision_orm: Annotated[Path | None, typer.Option(
        help="run the revision-verifier ablation instead: revision chains of the shipped "
             "revision model, answers selected with the PRM (problem prompt), this ORM "
             "(trained with `ttscale train orm --reviser`, reading the revision prompt) and "
             "--orm (problem prompt)")] = None,
    orm: Annotated[Path | None, typer.Option(help="a policy ORM for the revision ablation")]
    = None,
    budget: Annotated[int, typer.Option(help="revision ablation: attempts per question")] = 16,
    chain_length: Annotated[int, typer.Option(help="revision ablation: attempts per chain")]
    = 4,
) -> None:
    """PRM variants (soft / hard MC labels, exact labels, plain head) on one held-out pool;
    with --revision-orm, the revision-verifier ablation."""
    from ttscale.shipped import models_dir
    from ttscale.testbed.ablation import (
        render_ablation,
        render_revision_ablation,
        revision_verifier_ablation,
        run_ablation,
    )

    if revision_orm is not None:
        rep = revision_verifier_ablation(models_dir(), revision_orm, orm, questions, budget,
                                         chain_length, seed, log=_log)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(rep, indent=2))
        typer.echo(json.dumps(rep, indent=2) if as_json else render_revision_ablation(rep))
        return
    report = run_ablation(work, models_dir(), questions, pool, seed, log=_log)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    typer.echo(json.dumps(report, indent=2) if as_json else render_ablation(report))


def register(app: typer.Typer) -> None:
    app.add_typer(testbed_app, name="testbed")
