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


# ---- the revisions' verifier (paper App. N) -------------------------------------------------


def revision_verifier_ablation(models: Path, revision_orm: Path, orm: Path | None = None,
                               n_questions: int = 100, budget: int = 16, chain_length: int = 4,
                               seed: int = 0, generator: object = None, reviser: object = None,
                               verifiers: dict | None = None,
                               log: Callable[[str], None] | None = None) -> dict:
    """Accuracy of revision chains (the shipped revision model, ``budget`` attempts as chains of
    ``chain_length``) with the answer selected by each verifier: the shipped PRM (attempts
    scored against the problem prompt), the revision ORM (each attempt under the revision prompt
    it was written under, paper App. N) and, if given, a policy ORM (problem prompt); each with
    the paper's hierarchical verifier selection and the flat one; majority (flat, the paper's)
    and the oracle (any attempt right) for reference. The chains are sampled once and scored by
    every verifier. ``generator``/``reviser``/``verifiers`` (name -> (scorer, prompt mode))
    replace the shipped models in tests."""
    from ttscale.strategies.base import SearchContext
    from ttscale.strategies.common import majority_vote, weighted_vote
    from ttscale.strategies.registry import get_spec
    from ttscale.strategies.revisions import hierarchical_verifier, score_attempts
    from ttscale.testbed.data import SOLUTION_TOKENS

    if verifiers is None:
        from ttscale.verifiers.hf_prm import TokenClassificationPRM

        verifiers = {"prm (problem prompt)": (TokenClassificationPRM.from_pretrained(
            models / "prm"), "problem"),
            "revision ORM (revision prompt)": (TokenClassificationPRM.from_pretrained(
                revision_orm), "revision")}
        if orm is not None:
            verifiers["policy ORM (problem prompt)"] = (
                TokenClassificationPRM.from_pretrained(orm), "problem")
    if generator is None or reviser is None:
        from ttscale.engines.hf import HFGenerator

        generator = generator or HFGenerator.from_pretrained(models / "policy-small")
        reviser = reviser or HFGenerator.from_pretrained(models / "revision")
    task = TestbedTask("test", n=n_questions, seed=seed)
    ctx = SearchContext(task, generator, None, seed=seed, reviser=reviser,
                        max_solution_tokens=SOLUTION_TOKENS,
                        options={"chain_length": chain_length, "selection": "majority"})
    hits: dict[str, float] = defaultdict(float)
    problems = task.problems()
    for i, p in enumerate(problems):
        pctx = ctx.fresh()
        res = get_spec("revisions")(p, budget, pctx)
        attempts = res.candidates
        chains: dict[int, list] = defaultdict(list)
        for a in attempts:
            chains[a.meta["chain"]].append(a)
        prompts = []
        for a in attempts:
            shown = chains[a.meta["chain"]][:a.meta["attempt"]][-4:]
            prompts.append(task.revision_prompt(p, [task.solution_text(x.steps) for x in shown]))
        hits["majority (flat, paper)"] += majority_vote(attempts)[0] == p.answer
        hits["oracle (any attempt right)"] += any(a.answer == p.answer for a in attempts)
        for name, (scorer, mode) in verifiers.items():
            for a in attempts:
                a.scores = []
            vctx = SearchContext(task, generator, scorer, seed=seed)
            score_attempts(vctx, p, attempts, prompts if mode == "revision" else None)
            per_chain = [chains[c] for c in sorted(chains)]
            hits[f"{name}: hierarchical (paper)"] += (
                hierarchical_verifier(per_chain, "last")[0] == p.answer)
            hits[f"{name}: flat"] += weighted_vote(attempts, "last")[0] == p.answer
        if log and (i + 1) % 20 == 0:
            log(f"  {i + 1}/{len(problems)} questions")
    return {"n_questions": n_questions, "budget": budget, "chain_length": chain_length,
            "seed": seed, "accuracy": {k: v / len(problems) for k, v in hits.items()}}


def render_revision_ablation(report: dict) -> str:
    lines = [f"# Revision verifier ablation: {report['n_questions']} held-out questions, "
             f"N={report['budget']} as chains of {report['chain_length']}", "",
             "| answer selection | accuracy |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in report["accuracy"].items()]
    return "\n".join(lines)
