"""Lookahead search (Snell et al. 2024): beam search whose step values look k steps ahead.

Exactly beam search (see beam.py for the loop, options and answer rule), except that every new
step is valued by rolling out ``k`` further steps greedily (temperature 0) from it and taking the
PRM score at the end of the rollout; a rollout that finishes stops early. Only the new step
joins the beam; the rollout is recorded in the trace node (``rollout``), and a candidate's
per-step scores are the values the search used (each step's lookahead value; a final step has
nothing to roll out and keeps its own PRM score). Options: ``beam_width``
M (default 4), ``lookahead`` k (default 2, ``k=0`` is beam search exactly), ``aggregation``.

Compute accounting: the paper counts lookahead search as N x (k + 1) generations. ttscale keeps
``generations = N`` (the N beams, as for beam search, so budgets line up across strategies) and
charges the rollouts where they are real: every rollout goes through ``ctx.sample``, so its
prompt and generated tokens, and their FLOPs, are in the cost.
"""

from __future__ import annotations

from pydantic import Field

from ttscale.strategies.base import OptInt, SearchContext
from ttscale.strategies.beam import tree_search
from ttscale.strategies.common import BeamWidthOptions, checked_options
from ttscale.types import Problem, Result


class LookaheadOptions(BeamWidthOptions):
    """Options of lookahead search: beam search's, plus the rollout depth ``lookahead``."""

    lookahead: OptInt = Field(2, ge=0, description="k: greedy rollout steps that value each "
                              "new step (0 is beam search exactly)")


def lookahead(problem: Problem, budget: int, ctx: SearchContext) -> Result:
    opts: LookaheadOptions = checked_options(ctx, budget, "lookahead")
    return tree_search(problem, budget, ctx, strategy="lookahead", lookahead=opts.lookahead,
                       width=opts.beam_width, how=opts.aggregation)
