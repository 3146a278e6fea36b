"""Particle filtering (Puri et al. 2025, "A Probabilistic Inference Approach to Inference-Time
Scaling of LLMs using Particle-Based Monte Carlo Methods", arXiv:2502.01618; the semantics follow
its_hub's ``ParticleFiltering``).

Partial solutions are particles; the PRM's step scores become weights, and the population is
*resampled* every step instead of pruned to the top-k, so a prefix the PRM ranks second still
survives in proportion to its weight (beam search keeps only the top N/M and collapses onto one
prefix when the PRM is confidently wrong).

With budget N (N particles):

1. sample N first steps (one engine call, n=N) and score each prefix with the PRM;
2. each particle's log-weight is ``logit(s) / temperature`` where ``s`` is its prefix's PRM
   score collapsed by ``aggregation`` (default ``"last"``: the newest step's score, as its_hub
   does); weights are the softmax of the log-weights over the whole population;
3. the population is resampled to N particles with ``resampling`` (``multinomial``,
   ``systematic`` (default), ``stratified`` or ``residual``; see resampling.py) from a numpy
   generator seeded by ``derive_seed(ctx, problem, "particles")``: equal seeds give equal runs;
4. **finished particles stay in the population** with their final weight (its_hub): they can be
   resampled (copied) or die out like any other, but are never expanded again;
5. every unfinished particle gets one next step (copies of one prefix are sent once with
   ``n`` = their count, so they diverge and nothing is sampled in surplus; one engine call per
   distinct count, ``common.sample_next_steps``), the new prefixes are scored (one verifier
   call, identical prefixes once), and 2-5 repeat until every particle is finished or
   ``ctx.max_rounds`` rounds ran (unfinished particles then end the search unfinished);
6. the answer (``selection``): ``argmax`` (default, its_hub's): the answer of the particle with
   the highest aggregated score; ``majority``: the answer held by most final particles (after
   resampling, copies are the filter's posterior estimate); ``weighted``: weighted best-of-N
   over the distinct final particles.

Compute accounting (as explicit as beam search's): N particles are N generations, counted once
per run whatever the number of rounds (step calls pass ``count_generations=False``); tokens and
FLOPs carry the real cost of every step sampled and every prefix scored. The trace has one
entry per round with every new particle, its weight, and how many copies resampling kept
(``copies``; ``kept`` is ``copies > 0``).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from ttscale.strategies.base import SearchContext
from ttscale.strategies.beam import check_rounds
from ttscale.strategies.common import (
    Node,
    Run,
    check_budget,
    derive_seed,
    majority_vote,
    require_scorer,
    root_node,
    sample_next_steps,
    score_new_nodes,
    weighted_vote,
)
from ttscale.strategies.options import BeyondOptions, options_of
from ttscale.strategies.resampling import resample, softmax_weights
from ttscale.types import Problem, Result
from ttscale.verifiers.base import aggregate

NAME = "particle-filtering"
#: PRM scores are clipped to [EPS, 1 - EPS] before the logit (its_hub clips at 1e-7)
EPS = 1e-7


class ParticleFilteringOptions(BeyondOptions):
    """Options of ``particle-filtering`` (see the module docstring)."""

    temperature: float = Field(1.0, gt=0, description="temperature of the softmax weights")
    resampling: Literal["multinomial", "systematic", "stratified", "residual"] = "systematic"
    aggregation: Literal["last", "min", "prod", "mean"] = "last"
    selection: Literal["argmax", "majority", "weighted"] = "argmax"


def log_weight(node: Node, how: str) -> float | None:
    """``logit`` of the particle's aggregated PRM score; None (weight 0) if it has no score or
    finished without an answer (it can never be graded right)."""
    if not node.scores or (node.finished and node.answer is None):
        return None
    s = min(1 - EPS, max(EPS, aggregate(node.scores, how)))
    return math.log(s / (1 - s))


def _score(node: Node, how: str) -> float:
    return aggregate(node.scores, how) if node.scores else float("-inf")


def particle_filtering(problem: Problem, budget: int, ctx: SearchContext) -> Result:
    check_budget(budget)
    opts = options_of(ctx.options, ParticleFilteringOptions, NAME)
    max_rounds = check_rounds(ctx)
    require_scorer(ctx, NAME)
    run = Run(NAME, problem, ctx)
    ctx.cost.generations += budget
    rng = np.random.default_rng(derive_seed(ctx, problem, "particles"))
    population: list[Node] = [root_node()] * budget
    rounds = 0
    for rnd in range(max_rounds):
        live = [p for p in population if not p.finished]
        steps = sample_next_steps(ctx, problem, [p.steps for p in live],
                                  derive_seed(ctx, problem, "pf", rnd))
        children = [run.child(parent, comp, rnd)
                    for parent, comp in zip(live, steps, strict=True)]
        score_new_nodes(ctx, problem, children)
        population = [p for p in population if p.finished] + children
        weights = softmax_weights([log_weight(p, opts.aggregation) for p in population],
                                  opts.temperature)
        picks = resample(weights.tolist(), budget, opts.resampling, rng)
        copies = [0] * len(population)
        for i in picks:
            copies[i] += 1
        run.add_round(rnd, children, [copies[len(population) - len(children) + j] > 0
                                      for j in range(len(children))],
                      weights=[round(float(w), 6) for w in weights], copies=copies)
        population = [population[i] for i in picks]
        rounds = rnd + 1
        if all(p.finished for p in population):
            break
    distinct: dict[int, Node] = {}
    counts: dict[int, int] = {}
    for p in population:
        distinct.setdefault(p.id, p)
        counts[p.id] = counts.get(p.id, 0) + 1
    nodes = list(distinct.values())
    cands = []
    for n in nodes:
        cand = n.to_candidate()
        cand.meta["copies"] = counts[n.id]
        cands.append(cand)
    meta: dict = {}
    if opts.selection == "argmax":
        answered = [i for i, c in enumerate(cands) if c.answer is not None]
        best = max(answered, key=lambda i: (_score(nodes[i], opts.aggregation), -i),
                   default=None)
        answer = None if best is None else cands[best].answer
        meta["chosen"] = best
    elif opts.selection == "majority":
        answer, votes = majority_vote([c for c in cands for _ in range(c.meta["copies"])])
        meta["votes"] = votes
    else:
        answer, totals = weighted_vote(cands, opts.aggregation)
        meta["totals"] = totals
    return run.result(answer, cands, particles=budget, rounds=rounds,
                      resampling=opts.resampling, weight_temperature=opts.temperature,
                      aggregation=opts.aggregation, selection=opts.selection, **meta)
