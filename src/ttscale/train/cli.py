"""CLI verbs ``ttscale label`` and ``ttscale train policy|prm|revision``.

They work on any model the transformers engine can load, not only the testbed: a user's policy
labels its own samples, a PRM is trained from any causal LM checkpoint, etc.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

train_app = typer.Typer(help="Train a policy (SFT), a PRM, or a revision model.",
                        no_args_is_help=True)

InitOpt = Annotated[Path, typer.Option("--init", help="model directory to start from")]
OutOpt = Annotated[Path, typer.Option("--out", help="directory to save the trained model")]


def unescape(text: str) -> str:
    """Backslash escapes (``\\n``, ``\\t``, ...) of a command-line string, keeping every
    non-ASCII character (Math-Shepherd's step tag is "ки"; a plain ``unicode_escape`` decode of
    the UTF-8 bytes would turn it into mojibake)."""
    return text.encode("latin-1", "backslashreplace").decode("unicode_escape")


def _need_dir(path: Path, what: str) -> None:
    if not (path / "config.json").is_file():
        raise ValueError(f"{what} {path} is not a model directory (no config.json)")


def label_cmd(
    policy: Annotated[Path, typer.Option(help="policy model directory")],
    out: Annotated[Path, typer.Option(help="output directory (labels.jsonl; resumes)")],
    task: Annotated[str, typer.Option(help="'testbed' or a JSONL file")] = "testbed",
    split: Annotated[str, typer.Option(help="testbed split")] = "train",
    limit: Annotated[int, typer.Option(help="number of questions")] = 400,
    samples: Annotated[int, typer.Option(help="solutions sampled per question")] = 4,
    rollouts: Annotated[int, typer.Option(help="rollouts per step prefix")] = 8,
    temperature: float = 1.0,
    max_tokens: Annotated[int, typer.Option(help="max tokens per solution")] = 256,
    seed: int = 0,
) -> None:
    """Math-Shepherd Monte-Carlo step labels from the policy's own samples."""
    _need_dir(policy, "policy")  # before the heavy imports: a bad path answers at once
    from rich.progress import Progress

    from ttscale.engines.hf import HFGenerator
    from ttscale.grading import grade
    from ttscale.tasks import load_task
    from ttscale.train.mc_labels import LabelConfig, label_problems

    kwargs = {"split": split, "n": limit, "seed": seed} if task == "testbed" else {}
    the_task = load_task(task, **kwargs)
    problems = the_task.problems()[:limit]
    gen = HFGenerator.from_pretrained(policy)
    cfg = LabelConfig(samples, rollouts, temperature, max_tokens, seed)
    out_path = out / "labels.jsonl"
    with Progress(transient=False) as bar:
        job = bar.add_task("labelling", total=len(problems))
        n = label_problems(problems, the_task, gen, out_path, cfg,
                           is_correct=lambda p, g: grade(p, g).equal,
                           on_progress=lambda k: bar.update(job, completed=k))
    typer.echo(f"labelled {n} new questions -> {out_path}")


@train_app.command("prm")
def train_prm_cmd(
    init: InitOpt,
    labels: Annotated[Path, typer.Option(help="labels.jsonl from `ttscale label`")],
    out: OutOpt,
    label_kind: Annotated[str, typer.Option(help="soft | hard | exact")] = "soft",
    arch: Annotated[str, typer.Option(
        help="token-classification (head on the hidden state) | certainty (the head also "
             "reads the init model's token log-probabilities; the testbed PRM)")]
    = "token-classification",
    epochs: float = 4.0,
    lr: float = 1e-3,
    batch_size: int = 64,
    delimiter: Annotated[str, typer.Option(help="step delimiter (escapes allowed)")] = "\\n",
    seed: int = 0,
) -> None:
    """Train a PRM (token classification read at each step's end) on step labels."""
    _need_dir(init, "init")
    if not labels.is_file():
        raise ValueError(f"labels file {labels} does not exist")
    from ttscale.train.prm import PRMTrainConfig, train_prm

    cfg = PRMTrainConfig(label_kind=label_kind, epochs=epochs, learning_rate=lr,
                         batch_size=batch_size, seed=seed,
                         delimiter=unescape(delimiter), arch=arch)
    typer.echo(str(train_prm(init, labels, out, cfg)))


@train_app.command("orm")
def train_orm_cmd(
    init: InitOpt,
    policy: Annotated[Path, typer.Option(help="policy whose samples are labelled (and the "
                                              "first attempts, with --reviser)")],
    out: OutOpt,
    reviser: Annotated[Path | None, typer.Option(
        help="revision model: label its attempts WITH the earlier attempts in context (the "
             "revisions' verifier, paper App. N)")] = None,
    task: Annotated[str, typer.Option(help="'testbed' or a JSONL file")] = "testbed",
    split: Annotated[str, typer.Option(help="testbed split")] = "train",
    limit: Annotated[int, typer.Option(help="number of questions")] = 300,
    samples: Annotated[int, typer.Option(help="solutions per question")] = 8,
    chain_length: Annotated[int, typer.Option(help="with --reviser: attempts per chain")] = 4,
    window: Annotated[int, typer.Option(help="with --reviser: earlier attempts shown")] = 4,
    arch: Annotated[str, typer.Option(help="certainty | token-classification")] = "certainty",
    epochs: float = 4.0,
    lr: float = 1e-2,
    batch_size: int = 64,
    delimiter: Annotated[str, typer.Option(help="step delimiter (escapes allowed)")] = "\\n",
    prompt_marker: Annotated[str | None, typer.Option(
        help="certainty arch with multi-line (revision) prompts: the solution starts after the "
             "line that holds this token's last occurrence (testbed: Q; default with "
             "--reviser on the testbed)")] = None,
    seed: int = 0,
) -> None:
    """Train an outcome reward model: outcome labels from the gold answer (train/prm.py's
    machinery, label kind 'outcome'); with --reviser, on the revision model's attempts with
    the earlier attempts in context."""
    _need_dir(init, "init")
    _need_dir(policy, "policy")
    if reviser is not None:
        _need_dir(reviser, "reviser")
    from ttscale.engines.hf import HFGenerator
    from ttscale.tasks import load_task
    from ttscale.train.orm import outcome_records, train_orm

    kwargs = {"split": split, "n": limit, "seed": seed} if task == "testbed" else {}
    the_task = load_task(task, **kwargs)
    records = outcome_records(
        the_task, HFGenerator.from_pretrained(policy), samples=samples, seed=seed,
        reviser=HFGenerator.from_pretrained(reviser) if reviser is not None else None,
        chain_length=chain_length, window=window)
    if prompt_marker is None and reviser is not None and task == "testbed":
        prompt_marker = "Q"
    typer.echo(str(train_orm(init, records, out, arch=arch, epochs=epochs, learning_rate=lr,
                             batch_size=batch_size, seed=seed, delimiter=unescape(delimiter),
                             prompt_marker=prompt_marker)))


@train_app.command("policy")
def train_policy_cmd(
    init: InitOpt,
    data: Annotated[Path, typer.Option(help="JSONL lines with prompt and completion")],
    out: OutOpt,
    epochs: float = 1.0,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> None:
    """Supervised fine-tuning of a causal LM on (prompt, completion) pairs."""
    _need_dir(init, "init")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttscale.train.sft import read_pairs, train_sft

    pairs = read_pairs(data)
    model = AutoModelForCausalLM.from_pretrained(init, dtype=torch.float32)  # train in float32
    tok = AutoTokenizer.from_pretrained(init)
    typer.echo(str(train_sft(model, tok, pairs, out, epochs=epochs, learning_rate=lr,
                             batch_size=batch_size, seed=seed, warmup_steps=10)))


@train_app.command("revision")
def train_revision_cmd(
    init: InitOpt,
    policy: Annotated[Path, typer.Option(help="policy whose samples build the trajectories")],
    out: OutOpt,
    task: Annotated[str, typer.Option(help="task with a revision format")] = "testbed",
    limit: int = 600,
    samples: Annotated[int, typer.Option(help="samples per question")] = 16,
    epochs: float = 2.0,
    lr: float = 1e-3,
    seed: int = 0,
    reference: Annotated[bool, typer.Option(
        help="also keep questions no sample solved, with the reference solution as target "
             "(tasks with one, e.g. the testbed)")] = False,
    local_correction: Annotated[bool, typer.Option(
        help="trajectories that teach local correction (tasks with step labels): the last "
             "attempt shown is the wrong one with the longest right prefix, and the target "
             "keeps that prefix and fixes its first wrong step")] = False,
    repeat_rate: Annotated[float, typer.Option(
        min=0.0, max=1.0,
        help="share of trajectories whose last attempt shown is right and whose target "
             "repeats it, so the model learns to keep a right answer")] = 0.0,
) -> None:
    """Revision fine-tuning: 0-4 incorrect attempts in context, then a correct one."""
    _need_dir(init, "init")
    _need_dir(policy, "policy")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttscale.engines.hf import HFGenerator
    from ttscale.tasks import load_task
    from ttscale.train.revision import build_revision_pairs
    from ttscale.train.sft import train_sft

    kwargs = {"split": "train", "n": limit, "seed": seed} if task == "testbed" else {}
    pairs = build_revision_pairs(load_task(task, **kwargs), HFGenerator.from_pretrained(policy),
                                 samples=samples, seed=seed, use_reference=reference,
                                 local_correction=local_correction, repeat_rate=repeat_rate)
    typer.echo(f"{len(pairs)} revision examples")
    model = AutoModelForCausalLM.from_pretrained(init, dtype=torch.float32)  # train in float32
    tok = AutoTokenizer.from_pretrained(init)
    typer.echo(str(train_sft(model, tok, pairs, out, epochs=epochs, learning_rate=lr,
                             seed=seed, warmup_steps=10)))


def register(app: typer.Typer) -> None:
    app.command("label")(label_cmd)
    app.add_typer(train_app, name="train")
