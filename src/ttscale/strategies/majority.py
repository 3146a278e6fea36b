"""Majority voting over N independently sampled full solutions (no verifier).

The paper's verifier-free baseline: each of the N samples is one generation; the most frequent
answer wins, a tie goes to the answer that reached the winning count first, and samples without
an answer do not vote.
"""

from __future__ import annotations

from ttscale.strategies.base import SearchContext, StrategyOptions
from ttscale.strategies.common import (
    Run,
    checked_options,
    derive_seed,
    majority_vote,
    sample_solutions,
)
from ttscale.types import Problem, Result


class MajorityOptions(StrategyOptions):
    """Majority voting takes no options."""


def majority(problem: Problem, budget: int, ctx: SearchContext) -> Result:
    checked_options(ctx, budget, "majority")
    run = Run("majority", problem, ctx)
    cands = sample_solutions(ctx, problem, budget, derive_seed(ctx, problem, "solutions"))
    answer, counts = majority_vote(cands)
    nodes = []
    for c in cands:
        c.meta["node"] = run.new_id()
        nodes.append({"id": c.meta["node"], "parent": 0,
                      "step": ctx.task.step_delimiter.join(c.steps), "score": None,
                      "kept": answer is not None and c.answer == answer,
                      "finished": c.finished, "answer": c.answer})
    run.trace.append({"round": 0, "nodes": nodes})
    return run.result(answer, cands, votes=counts)
