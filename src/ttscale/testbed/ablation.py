"""`ttscale testbed ablation`: which labels and which PRM architecture make search work.

Trains PRM variants on the build's own Monte-Carlo label file (so every variant sees the same
sampled solutions) and scores one shared pool of held-out samples with each:

* ``certainty`` head (the shipped architecture) on soft MC labels (the paper's way, the shipped
  default), on hard MC labels, and on the testbed's exact step labels (the "human label" upper
  reference);
* a plain token-classification head on the same strong body, on exact labels: the design that
  failed in the prototype, kept as the negative control.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from ttscale.analysis.pools import PoolSample, pool_accuracy
from ttscale.analysis.verifier_quality import quality_report
from ttscale.tasks.testbed import TestbedTask
from ttscale.testbed.evaluate import sample_pool, score_samples
from ttscale.train.prm import PRMTrainConfig, train_prm

VARIANTS: dict[str, tuple[str, str]] = {
    "certainty-soft-mc": ("certainty", "soft"),
    "certainty-hard-mc": ("certainty", "hard"),
    "certainty-exact": ("certainty", "exact"),
    "plain-head-exact": ("token-classification", "exact"),
}


def run_ablation(work: Path, models: Path, n_questions: int = 500, pool: int = 64,
                 seed: int = 0, epochs: float = 4.0,
                 log: Callable[[str], None] | None = None) -> dict:
    from ttscale.engines.hf import HFGenerator
    from ttscale.verifiers.hf_prm import TokenClassificationPRM

    labels, body = work / "labels.jsonl", work / "policy-strong"
    for need in (labels, body):
        if not need.exists():
            raise ValueError(f"{need} is missing: run `ttscale testbed train --work {work}` first")
    task = TestbedTask("test", n=n_questions, seed=seed)
    samples = sample_pool(task, HFGenerator.from_pretrained(models / "policy-small"), pool, seed,
                          log=log)
    results = {}
    for name, (arch, label) in VARIANTS.items():
        out = work / "ablation" / name
        if not (out / "config.json").exists():
            lr = 1e-2 if arch == "certainty" else 1e-3
            train_prm(body, labels, out, PRMTrainConfig(label_kind=label, arch=arch,
                                                        epochs=epochs, learning_rate=lr,
                                                        seed=seed))
        scored = score_samples(samples, TokenClassificationPRM.from_pretrained(out))
        rep = quality_report(scored)
        pools: dict[str, list[PoolSample]] = defaultdict(list)
        for s in scored:
            pools[s.problem_id].append(PoolSample(s.answer, s.correct, s.scores[-1]))
        for method in ("majority", "weighted", "argmax", "pass"):
            rep[f"{method}@{pool}"] = sum(pool_accuracy(p, None, pool, method)
                                          for p in pools.values()) / len(pools)
        rep["pass@1"] = sum(pool_accuracy(p, None, 1, "pass") for p in pools.values()) / len(pools)
        results[name] = rep
        if log:
            log(f"  {name}: within-question AUC {rep['within_question_auc']:.3f}, "
                f"weighted@{pool} {rep[f'weighted@{pool}']:.3f}")
    return {"n_questions": n_questions, "pool": pool, "seed": seed, "variants": results}


def render_ablation(report: dict) -> str:
    pool = report["pool"]
    cols = ["within_question_auc", "within_question_step_auc", "pooled_step_auc",
            f"weighted@{pool}", f"argmax@{pool}", f"majority@{pool}", f"pass@{pool}", "pass@1"]
    lines = [f"# PRM ablation: {report['n_questions']} held-out questions, pool {pool}", "",
             "| variant | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name, rep in report["variants"].items():
        lines.append(f"| {name} | " + " | ".join(f"{rep[c]:.3f}" for c in cols) + " |")
    return "\n".join(lines)
