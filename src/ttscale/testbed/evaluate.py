"""`ttscale testbed eval`: the numbers that say whether the shipped PRM makes search work.

On held-out test questions (fixed seed): a pool of samples per question from policy-small, scored
by a PRM; within-question AUC (final answer and same-step), pooled step AUC and the
difficulty-and-position baseline it must beat; accuracy by budget and difficulty bin for majority,
best-of-N (argmax, weighted), and oracle pass@N from the pool; beam search (M=4, M=sqrt(N)) run
for real per budget.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ttscale.analysis.pools import PoolSample, pool_accuracy
from ttscale.analysis.verifier_quality import (
    ScoredSample,
    position_baseline,
    quality_report,
)
from ttscale.engines.base import Generator, SamplingParams
from ttscale.tasks.testbed import TestbedTask
from ttscale.testbed.data import SOLUTION_TOKENS
from ttscale.verifiers.base import StepScorer, aggregate

POOL_METHODS = ("majority", "argmax", "weighted", "pass")
Log = Callable[[str], None]


def sample_pool(task: TestbedTask, generator: Generator, n: int, seed: int, batch: int = 32,
                log: Log | None = None) -> list[ScoredSample]:
    """``n`` sampled solutions per problem, with exact step labels (scores filled later)."""
    problems = task.problems()
    out: list[ScoredSample] = []
    for start in range(0, len(problems), batch):
        chunk = problems[start:start + batch]
        comps = generator.generate([p.prompt for p in chunk],
                                   SamplingParams(n=n, temperature=1.0, max_tokens=SOLUTION_TOKENS,
                                                  seed=seed + start))
        for p, cs in zip(chunk, comps, strict=True):
            for c in cs:
                steps = [s for s in c.text.split("\n") if s] or [""]
                answer = task.extract_answer(c.text)
                out.append(ScoredSample(p.id, p.difficulty or 0, steps, [],
                                        task.step_labels(p, steps), answer, answer == p.answer,
                                        {"prompt": p.prompt}))
        if log:
            log(f"  sampled {min(start + batch, len(problems))}/{len(problems)} questions")
    return out


def score_samples(samples: list[ScoredSample], scorer: StepScorer,
                  batch: int = 2048) -> list[ScoredSample]:
    """Copies of ``samples`` with the verifier's per-step scores."""
    out = []
    for start in range(0, len(samples), batch):
        chunk = samples[start:start + batch]
        res = scorer.score([s.extra["prompt"] for s in chunk], [s.steps for s in chunk])
        out += [replace(s, scores=sc) for s, sc in zip(chunk, res.scores, strict=True)]
    return out


def oracle_bins(samples: list[ScoredSample], n_bins: int = 5) -> dict[str, int]:
    """Quantile bins of pool pass@1 per question: 1 = easiest .. n_bins = hardest."""
    rate: dict[str, list[bool]] = defaultdict(list)
    for s in samples:
        rate[s.problem_id].append(s.correct)
    ordered = sorted(rate, key=lambda q: (-sum(rate[q]) / len(rate[q]), q))
    return {q: 1 + (i * n_bins) // len(ordered) for i, q in enumerate(ordered)}


def pool_table(samples: list[ScoredSample], budgets: list[int], bins: dict[str, int],
               aggregation: str = "last") -> dict:
    """Accuracy by method, budget and bin ("all" included) from the sample pool."""
    pools: dict[str, list[PoolSample]] = defaultdict(list)
    for s in samples:
        pools[s.problem_id].append(PoolSample(s.answer, s.correct,
                                              aggregate(s.scores, aggregation) if s.scores
                                              else 0.0))
    table: dict = {}
    for method in POOL_METHODS:
        for n in budgets:
            per_bin: dict[str, list[float]] = defaultdict(list)
            for q, pool in pools.items():
                acc = pool_accuracy(pool, None, n, method)
                per_bin["all"].append(acc)
                per_bin[str(bins[q])].append(acc)
            table.setdefault(method, {})[n] = {b: sum(v) / len(v) for b, v in per_bin.items()}
    return table


def beam_table(task: TestbedTask, generator: Generator, scorer: StepScorer, budgets: list[int],
               bins: dict[str, int], seed: int, log: Log | None = None) -> dict:
    """Real beam-search runs (M=4 and M=sqrt(N)) per budget, accuracy by bin."""
    from ttscale.session import search_context
    from ttscale.strategies.base import SearchSettings
    from ttscale.strategies.registry import get_spec

    beam = get_spec("beam")
    settings = SearchSettings(seed=seed, max_solution_tokens=SOLUTION_TOKENS)
    table: dict = {}
    for n in budgets:
        widths = {4} | ({math.isqrt(n)} if math.isqrt(n) ** 2 == n else set())
        for m in sorted(w for w in widths if 1 < w <= n and n % w == 0):
            name = "beam-m4" if m == 4 else "beam-msqrt"
            ctx = search_context(beam, task, settings, generator, scorer=scorer,
                                 options=beam.parse({"beam_width": m}))
            per_bin: dict[str, list[float]] = defaultdict(list)
            for p in task.problems():
                res = beam(p, n, ctx.fresh())
                ok = float(res.answer == p.answer)
                per_bin["all"].append(ok)
                per_bin[str(bins[p.id])].append(ok)
            table.setdefault(name, {})[n] = {b: sum(v) / len(v) for b, v in per_bin.items()}
            if log:
                log(f"  {name} N={n}: {table[name][n]['all']:.3f}")
    return table


def evaluate_testbed(models: Path, n_questions: int = 500, pool: int = 64,
                     budgets: tuple[int, ...] = (1, 4, 16, 64), seed: int = 0,
                     prm: Path | None = None, with_beam: bool = True,
                     log: Log | None = None) -> dict:
    from ttscale.engines.hf import HFGenerator
    from ttscale.verifiers.hf_prm import TokenClassificationPRM

    task = TestbedTask("test", n=n_questions, seed=seed)
    gen = HFGenerator.from_pretrained(models / "policy-small")
    scorer = TokenClassificationPRM.from_pretrained(prm or models / "prm")
    samples = score_samples(sample_pool(task, gen, pool, seed, log=log), scorer)
    baseline = position_baseline(sample_pool(TestbedTask("train", n=200, seed=seed + 7), gen, 8,
                                             seed + 7))
    bins = oracle_bins(samples)
    report = {
        "n_questions": n_questions, "pool": pool, "seed": seed,
        "verifier": quality_report(samples, baseline),
        "pool_accuracy": pool_table(samples, list(budgets), bins),
    }
    if with_beam:
        report["beam_accuracy"] = beam_table(task, gen, scorer,
                                             [b for b in budgets if b >= 4], bins, seed, log)
    return report
