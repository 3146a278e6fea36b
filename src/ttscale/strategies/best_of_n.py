"""Best-of-N and weighted best-of-N: N full solutions, each scored by the verifier.

Each of the N samples is one generation. A solution's score is its per-step PRM scores collapsed
by the ``aggregation`` option (default ``"last"``, the paper's best). ``best-of-n`` answers
with the top-scored solution; ``weighted-best-of-n`` sums the scores of the solutions that share
an answer and answers with the largest sum. Solutions without an answer are never chosen; the
verifier is called once for the whole batch (identical solutions scored once).
"""

from __future__ import annotations

from ttscale.strategies.base import SearchContext
from ttscale.strategies.common import (
    AggregationOptions,
    Run,
    best_candidate,
    checked_options,
    derive_seed,
    require_scorer,
    sample_solutions,
    score_sequences,
    weighted_vote,
)
from ttscale.types import Problem, Result
from ttscale.verifiers.base import aggregate


class BestOfNOptions(AggregationOptions):
    """Options of best-of-N and weighted best-of-N (``aggregation``)."""


def _best_of_n(problem: Problem, budget: int, ctx: SearchContext, weighted: bool) -> Result:
    name = "weighted-best-of-n" if weighted else "best-of-n"
    how = checked_options(ctx, budget, name).aggregation
    require_scorer(ctx, name)
    run = Run(name, problem, ctx)
    cands = sample_solutions(ctx, problem, budget, derive_seed(ctx, problem, "solutions"))
    scored = [c for c in cands if c.steps]
    for c, s in zip(scored, score_sequences(ctx, problem, [c.steps for c in scored]), strict=True):
        c.scores = s
    meta: dict = {"aggregation": how}
    if weighted:
        answer, totals = weighted_vote(cands, how)
        chosen = {i for i, c in enumerate(cands) if answer is not None and c.answer == answer}
        meta["totals"] = totals
    else:
        best = best_candidate(cands, how)
        answer = None if best is None else cands[best].answer
        chosen = set() if best is None else {best}
        meta["chosen"] = best
    nodes = []
    for i, c in enumerate(cands):
        c.meta["node"] = run.new_id()
        nodes.append({"id": c.meta["node"], "parent": 0,
                      "step": ctx.task.step_delimiter.join(c.steps),
                      "score": aggregate(c.scores, how) if c.scores else None,
                      "scores": list(c.scores), "kept": i in chosen, "finished": c.finished,
                      "answer": c.answer})
    run.trace.append({"round": 0, "nodes": nodes})
    return run.result(answer, cands, **meta)


def best_of_n(problem: Problem, budget: int, ctx: SearchContext) -> Result:
    return _best_of_n(problem, budget, ctx, weighted=False)


def weighted_best_of_n(problem: Problem, budget: int, ctx: SearchContext) -> Result:
    return _best_of_n(problem, budget, ctx, weighted=True)
