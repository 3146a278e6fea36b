"""Lookahead search (Snell et al. 2024): beam search whose step values look k steps ahead.

Exactly beam search (see beam.py for the loop, options and answer rule), except that every new
step is valued by rolling out ``k`` further steps greedily (temperature 0) from it and taking the
PRM score at the end of the rollout; a rollout that finishes stops early. Only the new step
joins the beam; the rollout is recorded in the trace node (``rollout``), and a candidate's
per-step scores are the values the search used (each step's lookahead value; a final step has
nothing to roll out and keeps its own PRM score). Options: ``beam_width``
M (default 4), ``lookahead`` k (default 2, ``k=0`` is beam search exactly), ``aggregation``.

Compute accounting, as the paper counts it: lookahead search with N beams and k-step rollouts
costs N x (k + 1) generations (``cost.generations``; ``--budget N`` keeps meaning N beams), so
sweeps and compute-optimal selection compare it with other strategies at that cost, which is
why the paper's Fig. 3 finds it losing at equal generation budget. Every rollout also goes
through ``ctx.sample``, so its real prompt and generated tokens, and their FLOPs, are in the
cost.
"""

from __future__ import annotations

from ttscale.strategies.base import SearchContext, register
from ttscale.strategies.beam import tree_search
from ttscale.strategies.common import int_option
from ttscale.types import Problem, Result


@register("lookahead")
def lookahead(problem: Problem, budget: int, ctx: SearchContext) -> Result:
    k = int_option(ctx, "lookahead", 2, 0)
    return tree_search(problem, budget, ctx, strategy="lookahead", lookahead=k)


lookahead.needs_verifier = True  # type: ignore[attr-defined]
