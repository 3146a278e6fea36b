"""Majority voting over N independently sampled full solutions (no verifier).

The paper's verifier-free baseline: each of the N samples is one generation; the most frequent
answer wins, a tie goes to the answer that reached the winning count first, and samples without
an answer do not vote.
"""

from __future__ import annotations

from ttscale.strategies.base import SearchContext, register
from ttscale.strategies.common import (
    Run,
    check_budget,
    derive_seed,
    majority_vote,
    sample_solutions,
)
from ttscale.types import Problem, Result


@register("majority")
def majority(problem: Problem, budget: int, ctx: SearchContext) -> Result:
    check_budget(budget)
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


#: read by the runner: no PRM is loaded for this strategy
majority.needs_verifier = False  # type: ignore[attr-defined]
