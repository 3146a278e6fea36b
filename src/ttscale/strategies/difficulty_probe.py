"""The online half of compute-optimal scaling: the difficulty probe and its charge.

A deployed policy cannot look at a pool of 64 samples per question, so it uses the **online
probe**: sample ``k`` (default 4) full solutions, score them with the PRM, and bin the mean
final-step score with the cut points saved in the policy table (the mean of ``k`` samples
estimates the pool mean, so the same cut points apply; ``optimal.difficulty`` fits them
offline). Everything the probe spends is charged: its policy and PRM FLOPs go to
``Cost.difficulty_flops`` (not ``policy_flops``/``prm_flops``), its tokens to the token counters
and its ``k`` samples to ``generations``.

Which probe samples are reused: when the chosen strategy draws independent full solutions from
the problem prompt (its spec declares ``reuses_probe``: majority, best-of-N, weighted best-of-N),
the probe's ``k`` samples ARE ``min(N, k)`` of its ``N`` samples, so the probe costs only what
exceeds the budget (``max(N, k)`` generations in all). Tree searches and revisions cannot use
finished samples (their first step is sampled fresh, revisions read a different prompt), so for
them the probe is ``k`` generations on top of ``N``. The same rule is applied by the
``compute-optimal`` strategy and by the offline analysis (``optimal.data``), so both count the
same cost.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from ttscale.engines.base import SamplingParams
from ttscale.strategies.base import SearchContext
from ttscale.strategies.common import score_sequences, split_steps
from ttscale.types import Candidate, Completion, Cost, Problem

#: default number of probe samples
PROBE_K = 4
#: what predicted bins and the probe measure (recorded in the policy table)
STATISTIC = "mean PRM final-step score"


def final_score(scores: Sequence[float]) -> float:
    """A sample's final-step PRM score; a sample without steps (nothing scored) counts as 0,
    the same convention as ``verifiers.base.aggregate`` for an empty solution."""
    return float(scores[-1]) if scores else 0.0


def mean_final_score(samples: Sequence[Sequence[float]]) -> float:
    """Mean final-step score of a question's samples (each a list of per-step scores)."""
    if not samples:
        raise ValueError("cannot estimate difficulty from zero samples")
    return sum(final_score(s) for s in samples) / len(samples)


def bin_of(value: float, thresholds: Sequence[float]) -> int:
    """Bin 1 (easiest: above every cut) .. ``len(thresholds) + 1`` (hardest: below every cut)."""
    return len(thresholds) + 1 - bisect_right(list(thresholds), value)


def reuses_probe(strategy: str) -> bool:
    """Whether ``strategy``'s samples are independent full solutions the probe's can be."""
    # the registry lists compute-optimal, whose probe asks the registry: resolved at call time
    from ttscale.strategies.registry import get_spec

    return get_spec(strategy).reuses_probe


def reused_samples(strategy: str, budget: int, k: int, reuse: bool = True) -> int:
    """How many of the probe's ``k`` samples the chosen strategy reuses at ``budget``."""
    return min(budget, k) if reuse and reuses_probe(strategy) else 0


def charged_generations(strategy: str, budget: int, k: int, reuse: bool = True) -> int:
    """Generations of probe + chosen strategy: ``max(N, k)`` when the probe's samples are
    reused, ``N + k`` otherwise."""
    return budget + k - reused_samples(strategy, budget, k, reuse)


# ---- the online probe ----------------------------------------------------------------------


@dataclass
class Probe:
    """What the online probe saw and spent on one question."""

    score: float
    k: int
    completions: list[Completion]
    candidates: list[Candidate]
    #: the probe's own cost: tokens and generations as measured, FLOPs all in difficulty_flops
    cost: Cost
    params: SamplingParams


def run_probe(ctx: SearchContext, problem: Problem, k: int, seed: int) -> Probe:
    """Sample ``k`` full solutions (one call, the sampling settings of ``sample_solutions``),
    score them against the problem prompt (one verifier call) and return their mean final-step
    score. ``ctx`` is a fresh ``SearchContext``: its meters hold exactly the probe's cost."""
    if k < 1:
        raise ValueError(f"difficulty probe: k must be >= 1, got {k}")
    params = SamplingParams(n=k, temperature=ctx.temperature, top_p=ctx.top_p,
                            max_tokens=ctx.max_solution_tokens, seed=seed)
    out = ctx.sample([problem.prompt], params)
    if len(out) != 1 or len(out[0]) != k:
        raise RuntimeError(f"difficulty probe: generator returned {[len(c) for c in out]} "
                           f"completions, expected {k}")
    comps = list(out[0])
    cands = [_candidate(ctx, c) for c in comps]
    todo = [c for c in cands if c.steps]
    for c, s in zip(todo, score_sequences(ctx, problem, [c.steps for c in todo]), strict=True):
        c.scores = s
    cost = Cost.from_dict(ctx.cost.to_dict())
    cost.difficulty_flops += cost.policy_flops + cost.prm_flops
    cost.policy_flops = cost.prm_flops = 0.0
    return Probe(mean_final_score([c.scores for c in cands]), k, comps, cands, cost, params)


def _candidate(ctx: SearchContext, comp: Completion) -> Candidate:
    """A full solution read the way ``common.sample_solutions`` reads one."""
    task = ctx.task
    steps = split_steps(comp.text, task.step_delimiter)
    finished = (comp.finish_reason in ("eos", "length")
                or (bool(steps) and task.is_final_step(steps[-1])))
    return Candidate(steps, [], finished, task.extract_answer(comp.text),
                     {"finish_reason": comp.finish_reason,
                      "generated_tokens": comp.generated_tokens})
