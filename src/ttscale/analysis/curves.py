"""Per-question accuracy and cost of the pool strategies at every budget, from one stored pool.

The pool of a question is the ``N_max`` samples of one stored run (``weighted-best-of-n`` at
``N_max``: each sample's steps, per-step PRM scores and answer). The estimate for budget ``n`` is
the mean over the pool's disjoint size-``n`` subsets (``analysis.pools``); every subset is kept,
so at ``n = 1`` it is exactly the pool's mean. Each question gets its own shuffle seed, derived
from the sweep seed and the question id, so the estimate is stable across reruns and machines.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Mapping, Sequence

from ttscale.analysis.pools import PoolSample, pass_at_k, pool_accuracy, within_question_auc
from ttscale.types import Candidate, Cost
from ttscale.verifiers.base import aggregate

#: key of a pool candidate's meta that holds its grade (written by the sweep when it samples)
CORRECT_KEY = "correct"


def question_seed(seed: int, problem_id: str) -> int:
    """The subset-shuffle seed of one question (CRC-32: stable across processes)."""
    return zlib.crc32(repr((seed, "pool", problem_id)).encode()) & 0x7FFFFFFF


def pool_samples(candidates: Sequence[Candidate], how: str,
                 grade: Callable[[str | None], bool]) -> list[PoolSample]:
    """A question's pool: each candidate's answer, grade and aggregated PRM score.

    The grade stored in the candidate's meta (``correct``) is used when present; otherwise
    ``grade(answer)`` decides (a pool stored by ``ttscale run`` has no per-sample grade).
    """
    out = []
    for c in candidates:
        stored = c.meta.get(CORRECT_KEY)
        correct = bool(stored) if stored is not None else (c.answer is not None
                                                           and grade(c.answer))
        out.append(PoolSample(c.answer, correct, aggregate(c.scores, how) if c.scores else 0.0))
    return out


def pass1(pool: Sequence[PoolSample]) -> float:
    """Estimated pass@1: the fraction of correct samples."""
    return sum(s.correct for s in pool) / len(pool) if pool else 0.0


def curve(pools: Mapping[str, Sequence[PoolSample]], n: int, method: str,
          seed: int) -> dict[str, float]:
    """Expected accuracy of ``method`` at budget ``n`` for every question (id -> value)."""
    return {pid: pool_accuracy(pool, None, n, method, seed=question_seed(seed, pid),
                               max_subsets=None)
            for pid, pool in pools.items()}


def oracle_curve(pools: Mapping[str, Sequence[PoolSample]], n: int) -> dict[str, float]:
    """Unbiased pass@n of every question."""
    return {pid: pass_at_k(len(p), sum(s.correct for s in p), n) for pid, p in pools.items()}


def scale_pool_cost(pool_cost: Cost, n: int, pool_size: int, with_prm: bool) -> Cost:
    """What ``n`` of a pool's ``pool_size`` samples cost, in expectation over the subsets.

    Generated tokens, PRM tokens and their FLOPs scale by ``n / pool_size`` (exact in
    expectation: each sample is in a random subset with that probability). The prompt is
    different: an engine that reuses the prompt's KV cache prefills it once whatever ``n`` (the
    pool reports the rest as cached), one without a cache prefills it per sample. So the uncached
    prompt tokens are the pool's scaled by ``n / pool_size`` but never less than one prompt, and
    policy FLOPs follow the processed tokens. ``with_prm`` False drops the PRM cost (majority
    voting does not need the scores).
    """
    if not 1 <= n <= pool_size:
        raise ValueError(f"budget {n} is outside 1..{pool_size} (the pool size)")
    f = n / pool_size
    per_prompt = pool_cost.prompt_tokens / pool_size
    uncached_pool = pool_cost.prompt_tokens - pool_cost.prompt_tokens_cached
    prompt = per_prompt * n
    uncached = min(prompt, max(uncached_pool * f, per_prompt if uncached_pool else 0.0))
    processed_pool = uncached_pool + pool_cost.generated_tokens
    generated = pool_cost.generated_tokens * f
    policy_flops = (pool_cost.policy_flops * (uncached + generated) / processed_pool
                    if processed_pool else 0.0)
    # expectations are fractional: the token fields hold floats here (they are means anyway)
    cost = Cost(generations=n, policy_flops=policy_flops,
                prm_flops=pool_cost.prm_flops * f if with_prm else 0.0,
                difficulty_flops=pool_cost.difficulty_flops * f, wall_s=pool_cost.wall_s * f)
    cost.prompt_tokens = prompt  # type: ignore[assignment]
    cost.prompt_tokens_cached = prompt - uncached  # type: ignore[assignment]
    cost.generated_tokens = generated  # type: ignore[assignment]
    cost.prm_tokens = pool_cost.prm_tokens * f if with_prm else 0  # type: ignore[assignment]
    cost.prm_tokens_cached = (  # type: ignore[assignment]
        pool_cost.prm_tokens_cached * f if with_prm else 0)
    return cost


def subset_indices(pool_size: int, n: int, shuffle_seed: int) -> list[list[int]]:
    """The disjoint size-``n`` subsets (indices into the pool) that the accuracy estimate of a
    question uses (``curve`` with its ``question_seed``): costs are averaged over the same
    subsets as accuracy."""
    if not 1 <= n <= pool_size:
        raise ValueError(f"budget {n} is outside 1..{pool_size} (the pool size)")
    order = list(range(pool_size))
    random.Random(shuffle_seed).shuffle(order)
    return [order[j * n:(j + 1) * n] for j in range(pool_size // n)]


def _solution_key(c: Candidate) -> tuple[str, ...]:
    return tuple(c.steps)


def pool_subset_cost(candidates: Sequence[Candidate], pool_cost: Cost,
                     subsets: Sequence[Sequence[int]], with_prm: bool) -> Cost:
    """What a pool strategy at ``n = len(subset)`` costs, read off the pool exactly: the mean
    over ``subsets`` of what each subset of the stored samples spent.

    * generations: ``n``; generated tokens: the subset's own samples' (each candidate's
      ``generated_tokens``), not the pool's scaled by ``n / N_max``;
    * PRM: the cost of scoring the subset's *distinct* solutions (identical solutions are
      scored once, as ``common.score_sequences`` does), so a subset pays for a solution the
      pool shared among many samples. Each distinct solution's PRM tokens are its share of the
      pool's measured PRM tokens in proportion to (prompt + its generated tokens), which is
      exact when the PRM reads the policy's tokens (the testbed) and a close split otherwise;
      the full pool (``n = N_max``) gets exactly the pool's measured PRM cost;
    * prompt: as :func:`scale_pool_cost` (a prompt cache prefills once whatever ``n``);
      difficulty FLOPs and wall time scale by ``n / N_max``.

    Candidates without a stored ``generated_tokens`` fall back to the pool mean.
    """
    size = len(candidates)
    if not subsets or any(not s for s in subsets):
        raise ValueError("pool_subset_cost: give at least one non-empty subset")
    n = len(subsets[0])
    base = scale_pool_cost(pool_cost, n, size, with_prm)
    mean_gen = pool_cost.generated_tokens / size if size else 0.0
    gen = [float(c.meta.get("generated_tokens", mean_gen)) for c in candidates]
    per_prompt = pool_cost.prompt_tokens / size if size else 0.0
    weight: dict[tuple[str, ...], float] = {}
    for c, g in zip(candidates, gen, strict=True):
        if c.steps:
            weight.setdefault(_solution_key(c), per_prompt + g)
    prm_total = sum(weight.values())
    uncached_pool = pool_cost.prompt_tokens - pool_cost.prompt_tokens_cached
    processed_pool = uncached_pool + pool_cost.generated_tokens
    flops_per_token = pool_cost.policy_flops / processed_pool if processed_pool else 0.0
    uncached_prompt = base.prompt_tokens - base.prompt_tokens_cached
    generated = prm_share = 0.0
    for sub in subsets:
        generated += sum(gen[i] for i in sub)
        distinct = {_solution_key(candidates[i]) for i in sub if candidates[i].steps}
        prm_share += sum(weight[k] for k in distinct) / prm_total if prm_total else 0.0
    generated /= len(subsets)
    prm_share /= len(subsets)
    base.generated_tokens = generated  # type: ignore[assignment]
    base.policy_flops = flops_per_token * (uncached_prompt + generated)
    if with_prm:
        base.prm_tokens = pool_cost.prm_tokens * prm_share  # type: ignore[assignment]
        base.prm_tokens_cached = (  # type: ignore[assignment]
            pool_cost.prm_tokens_cached * prm_share)
        base.prm_flops = pool_cost.prm_flops * prm_share
    return base


def exact_pool_cost(candidates: Sequence[Candidate], pool_cost: Cost, n: int, seed: int,
                    problem_id: str, with_prm: bool) -> Cost:
    """:func:`pool_subset_cost` over the subsets the budget-``n`` accuracy of this question
    uses (sweep ``seed``; see :func:`curve`). A problem that failed on its own (no stored
    samples) costs what it spent."""
    if len(candidates) < n:
        failed = Cost.from_dict(pool_cost.to_dict())
        failed.generations = n
        return failed
    subsets = subset_indices(len(candidates), n, question_seed(seed, problem_id))
    return pool_subset_cost(candidates, pool_cost, subsets, with_prm)


def mean_cost(costs: Sequence[Cost]) -> dict[str, float]:
    """Mean per question of every Cost key (plus ``total_flops``)."""
    total = Cost()
    for c in costs:
        total.add(c)
    d = total.to_dict()
    return {k: (v / len(costs) if costs else 0.0) for k, v in d.items()}


def pool_diagnostics(pools: Mapping[str, Sequence[PoolSample]], scored: bool
                     ) -> dict[str, float | int | None]:
    """What tells whether verifier-guided search can work on this pool (see
    docs: within-question AUC of the PRM on the policy's own samples)."""
    n_q = len(pools)
    out: dict[str, float | int | None] = {
        "n_questions": n_q,
        "mean_pass1": sum(pass1(p) for p in pools.values()) / n_q if n_q else 0.0,
        "distinct_answers_mean": (sum(len({s.answer for s in p}) for p in pools.values()) / n_q
                                  if n_q else 0.0),
        "no_answer_rate": (sum(sum(s.answer is None for s in p) for p in pools.values())
                           / max(1, sum(len(p) for p in pools.values()))),
        "within_question_auc": None,
        "n_auc_questions": 0,
    }
    if scored:
        aucs = [a for a in (within_question_auc(p) for p in pools.values()) if a is not None]
        out["within_question_auc"] = sum(aucs) / len(aucs) if aucs else None
        out["n_auc_questions"] = len(aucs)
    return out
