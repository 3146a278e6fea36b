"""`ttscale testbed train`: rebuild the four shipped testbed models reproducibly from seeds.

Stages (each skipped when its output exists, so a killed build resumes at the stage it was in):

1. ``small``: train the small policy architecture on gold solutions, snapshotting it every
   ``eval_every`` steps with its dev accuracy. The shipped **policy-small** is the snapshot whose
   sampled dev accuracy is closest to ``weak_target``: a policy that is right often enough to learn
   from and wrong often enough for search to matter. Training continues to a strong snapshot that
   is the **PRM's initialisation**: the verifier must be better at the arithmetic than the policy
   it checks (../shared/TESTBED_FACTS.md: a PRM initialised from the weak policy learned question
   difficulty only).
2. ``large``: the ~14x larger policy for the FLOPs-matched comparison.
3. ``labels``: Math-Shepherd Monte-Carlo step labels from policy-small's own samples.
4. ``prm``: the PRM, trained on those labels (soft by default).
5. ``revision``: revision trajectories from policy-small's samples; the revision model is
   fine-tuned from policy-small.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from ttscale.engines.hf import HFGenerator
from ttscale.tasks.testbed import TestbedTask
from ttscale.testbed.data import dev_accuracy, gold_pairs
from ttscale.testbed.specs import LARGE, SMALL, ArchSpec
from ttscale.testbed.tokenizer import build_tokenizer
from ttscale.train.common import llama_config, seed_everything, set_threads
from ttscale.train.mc_labels import LabelConfig, label_problems
from ttscale.train.prm import PRMTrainConfig, train_prm
from ttscale.train.revision import build_revision_pairs
from ttscale.train.sft import EveryNSteps, train_sft

Log = Callable[[str], None]


@dataclass
class BuildConfig:
    out: Path
    work: Path
    seed: int = 0
    small_steps: int = 1500
    small_lr: float = 3e-3
    small_batch: int = 64
    #: the small run stops once dev greedy accuracy reaches this: that snapshot is the PRM's body
    strong_greedy: float = 0.9
    eval_every: int = 50
    weak_target: float = 0.4
    large_steps: int = 600
    large_lr: float = 2e-3
    large_batch: int = 32
    large_stop_greedy: float = 0.97
    #: stop policy-large once its dev greedy accuracy has not beaten its best for this many
    #: evaluations (a plateau); None trains the whole schedule
    large_patience: int | None = None
    #: start policy-large from these weights (e.g. the shipped one) instead of from scratch:
    #: training it further costs only the new steps
    large_init: Path | None = None
    label_questions: int = 800
    label_samples: int = 4
    label_rollouts: int = 8
    prm_label: str = "soft"
    prm_arch: str = "certainty"
    prm_epochs: float = 4.0
    prm_lr: float = 1e-2
    # many questions, few epochs, a low rate: the first recipe (600 questions, 8 epochs at 1e-3)
    # sharpened the model onto wrong arithmetic facts and its chains barely improved; this one
    # is more diverse and its accuracy rises over the first revisions (docs/testbed.md)
    revision_questions: int = 3000
    revision_samples: int = 16
    revision_epochs: float = 2.0
    revision_lr: float = 3e-4
    revision_reference: bool = True
    #: trajectories that teach local correction (``train.revision.build_revision_pairs``); off
    #: for the shipped model, on for the retraining experiment of docs/revisions.md
    revision_local: bool = False
    #: share of trajectories whose last attempt shown is right and whose target repeats it
    revision_repeat_rate: float = 0.0
    stages: tuple[str, ...] = ("small", "large", "labels", "prm", "revision", "ship")
    timings: dict[str, float] = field(default_factory=dict)


def _new_model(spec: ArchSpec) -> tuple[LlamaForCausalLM, object]:
    tok = build_tokenizer()
    cfg = llama_config(tok, spec.hidden, spec.layers, spec.heads, spec.ffn, spec.max_positions)
    return LlamaForCausalLM(cfg), tok


def _save(model, tok, path: Path, meta: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    (path / "ttscale_meta.json").write_text(json.dumps(meta, indent=2))


def _plateaued(history: list[dict], patience: int | None) -> bool:
    """True when the last ``patience`` evaluations all failed to beat the best before them."""
    if patience is None or len(history) <= patience:
        return False
    best_before = max(r["dev_greedy"] for r in history[:-patience])
    return all(r["dev_greedy"] <= best_before for r in history[-patience:])


def _train_policy(cfg: BuildConfig, spec: ArchSpec, steps: int, lr: float, batch: int,
                  stop_greedy: float, snapshots: Path, final: Path, log: Log,
                  patience: int | None = None, init: Path | None = None,
                  resumable: bool = False) -> list[dict]:
    """Train from scratch (or from ``init``), snapshotting every ``eval_every`` steps with dev
    accuracy; stops at ``stop_greedy`` or, with ``patience``, once dev greedy accuracy has
    plateaued. ``resumable``: a killed run resumes from its last checkpoint and snapshots."""
    seed_everything(cfg.seed)
    model, tok = _new_model(spec)
    if init is not None:
        model.load_state_dict(_load_float32(init).state_dict())
    history = _snapshot_history(snapshots) if resumable else []

    def snapshot(step: int, m) -> bool:
        m.eval()
        acc, by_ops = dev_accuracy(HFGenerator(m, tok), seed=cfg.seed)
        greedy, _ = dev_accuracy(HFGenerator(m, tok), samples=1, temperature=0.0,
                                 seed=cfg.seed)
        m.train()
        rec = {"step": step, "dev_pass1": acc, "dev_greedy": greedy, "by_ops": by_ops}
        # a run killed between a snapshot and its checkpoint evaluates that step again
        history[:] = [r for r in history if r["step"] < step]
        history.append(rec)
        _save(m, tok, snapshots / f"step-{step}", rec)
        log(f"  step {step}: dev pass@1 {acc:.3f} greedy {greedy:.3f}")
        if _plateaued(history, patience):
            log(f"  dev greedy has not beaten {max(r['dev_greedy'] for r in history):.3f} "
                f"for {patience} evaluations: plateau, stopping")
            return True
        return greedy >= stop_greedy

    if _plateaued(history, patience):  # a resumed run that had already stopped
        return history
    train_sft(model, tok, lambda: gold_pairs(cfg.seed), final, max_steps=steps,
              batch_size=batch, learning_rate=lr, seed=cfg.seed,
              callbacks=[EveryNSteps(cfg.eval_every, snapshot)],
              checkpoint_every=cfg.eval_every if resumable else None)
    (final / "history.json").write_text(json.dumps(history, indent=2))
    return history


def _snapshot_history(snapshots: Path) -> list[dict]:
    """The evaluation records of the snapshots an earlier (killed) run left, by step."""
    metas = [json.loads(m.read_text()) for m in snapshots.glob("step-*/ttscale_meta.json")]
    return sorted(metas, key=lambda r: r["step"])


def stage_small(cfg: BuildConfig, log: Log) -> None:
    snaps = cfg.work / "small-snapshots"
    history = _train_policy(cfg, SMALL, cfg.small_steps, cfg.small_lr, cfg.small_batch,
                            cfg.strong_greedy, snaps, cfg.work / "policy-strong", log)
    weak = min(history, key=lambda r: abs(r["dev_pass1"] - cfg.weak_target))
    log(f"  policy-small = step {weak['step']} (dev pass@1 {weak['dev_pass1']:.3f})")
    shutil.copytree(snaps / f"step-{weak['step']}", cfg.out / "policy-small", dirs_exist_ok=True)


def stage_large(cfg: BuildConfig, log: Log) -> None:
    history = _train_policy(cfg, LARGE, cfg.large_steps, cfg.large_lr, cfg.large_batch,
                            cfg.large_stop_greedy, cfg.work / "large-snapshots",
                            cfg.work / "policy-large", log, cfg.large_patience,
                            cfg.large_init, resumable=True)
    best = max(history, key=lambda r: (r["dev_greedy"], r["step"]))
    shutil.copytree(cfg.work / "large-snapshots" / f"step-{best['step']}",
                    cfg.out / "policy-large", dirs_exist_ok=True)


def stage_labels(cfg: BuildConfig, log: Log) -> None:
    task = TestbedTask("train", n=cfg.label_questions, seed=cfg.seed)
    gen = HFGenerator.from_pretrained(cfg.out / "policy-small")
    n = label_problems(task.problems(), task, gen, cfg.work / "labels.jsonl",
                       LabelConfig(cfg.label_samples, cfg.label_rollouts, seed=cfg.seed),
                       is_correct=lambda pred, gold: pred == gold,
                       on_progress=lambda k: log(f"  labelled {k}/{cfg.label_questions}"))
    log(f"  {n} questions labelled")


def stage_prm(cfg: BuildConfig, log: Log) -> None:
    out = train_prm(cfg.work / "policy-strong", cfg.work / "labels.jsonl", cfg.out / "prm",
                    PRMTrainConfig(label_kind=cfg.prm_label, epochs=cfg.prm_epochs,
                                   learning_rate=cfg.prm_lr, seed=cfg.seed, arch=cfg.prm_arch))
    log(f"  prm: {out}")


def stage_revision(cfg: BuildConfig, log: Log) -> None:
    task = TestbedTask("train", n=cfg.revision_questions, seed=cfg.seed + 1)
    gen = HFGenerator.from_pretrained(cfg.out / "policy-small")
    pairs = build_revision_pairs(task, gen, samples=cfg.revision_samples, seed=cfg.seed,
                                 use_reference=cfg.revision_reference,
                                 local_correction=cfg.revision_local,
                                 repeat_rate=cfg.revision_repeat_rate)
    log(f"  {len(pairs)} revision examples")
    # float32 explicitly: the shipped weights are float16 and transformers keeps a checkpoint's
    # dtype; AdamW on float16 weights on a CPU wrecks the model (the first revision model did)
    model = LlamaForCausalLM.from_pretrained(cfg.out / "policy-small", dtype=torch.float32)
    tok = build_tokenizer()
    train_sft(model, tok, pairs, cfg.out / "revision", epochs=cfg.revision_epochs,
              learning_rate=cfg.revision_lr, seed=cfg.seed, warmup_steps=10)


def stage_ship(cfg: BuildConfig, log: Log) -> None:
    """Store every shipped model in float16 (half the bytes; loaded back as float32 on CPU) and
    write its model card."""
    from ttscale.testbed.cards import write_cards

    for name in SHIPPED:
        path = cfg.out / name
        model = _load_float32(path)
        model.to(torch.float16).save_pretrained(path)
        build_tokenizer().save_pretrained(path)  # the current tokenizer code (same ids)
    write_cards(cfg)
    log(f"  cards written; total {sum(f.stat().st_size for f in cfg.out.rglob('*')) / 1e6:.1f} MB")


SHIPPED = ("policy-small", "policy-large", "prm", "revision")


def _load_float32(path: Path):
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

    import ttscale.verifiers.certainty_prm  # noqa: F401  (registers the PRM class)

    cls = AutoModelForTokenClassification if path.name == "prm" else AutoModelForCausalLM
    return cls.from_pretrained(path, dtype=torch.float32)


STAGES: dict[str, tuple[Callable[[BuildConfig, Log], None], str]] = {
    "small": (stage_small, "policy-small"),
    "large": (stage_large, "policy-large"),
    "labels": (stage_labels, ""),
    "prm": (stage_prm, "prm"),
    "revision": (stage_revision, "revision"),
    "ship": (stage_ship, ""),
}


def build(cfg: BuildConfig, log: Log = print) -> dict:
    set_threads()
    cfg.out.mkdir(parents=True, exist_ok=True)
    cfg.work.mkdir(parents=True, exist_ok=True)
    for name in cfg.stages:
        fn, product = STAGES[name]
        done_marker = cfg.work / f"{name}.done"
        if done_marker.exists():
            log(f"[{name}] done earlier, skipped")
            continue
        log(f"[{name}] ...")
        t0 = time.perf_counter()
        fn(cfg, log)
        cfg.timings[name] = time.perf_counter() - t0
        done_marker.write_text(json.dumps({"seconds": cfg.timings[name]}))
        log(f"[{name}] {cfg.timings[name]:.0f} s" + (f" -> {cfg.out / product}" if product else ""))
    summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    (cfg.work / "build.json").write_text(json.dumps(summary, indent=2))
    return summary
