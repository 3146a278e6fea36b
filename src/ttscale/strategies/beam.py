"""PRM-guided beam search (Snell et al. 2024, section 5; search-and-learn semantics).

With budget N and beam width M (option ``beam_width``, default 4; N must be a multiple
of M and at least M):

1. sample N first steps and score each with the PRM (a prefix's score is its newest step's);
2. keep the N/M best *unfinished* prefixes as active beams; a prefix that finished (final step,
   ``eos``, or no new step) leaves the search into the finished pool and is never expanded;
3. sample M next steps from each active beam, score them, and repeat 2-3 while active beams
   remain, for at most ``ctx.max_rounds`` rounds (round 0 is step 1);
4. unfinished beams left at the end join the candidates as unfinished; the answer is weighted
   best-of-N (``aggregation`` option, default ``"last"``) over the finished pool, or over the
   unfinished beams if no finished solution states an answer.

Compute accounting: the paper counts beam search with N beams as N generations whatever the
number of rounds, so step-level calls pass ``count_generations=False`` and each run adds N to
``ctx.cost.generations`` once; tokens and FLOPs carry the real cost. Each round makes exactly one
engine call (all beams batched, identical beams sent once) and one verifier call on the new
prefixes only (identical ones once); nothing already scored is scored again.

Lookahead search (lookahead.py) is this loop with k greedy rollout steps per new step; ``k=0`` is
exactly this function.
"""

from __future__ import annotations

from ttscale.strategies.base import SearchContext
from ttscale.strategies.common import (
    BeamWidthOptions,
    Node,
    Run,
    checked_options,
    completion_steps,
    derive_seed,
    pool_answer,
    require_scorer,
    root_node,
    sample_steps,
    score_new_nodes,
    score_sequences,
    top_indices,
)
from ttscale.types import Problem, Result


class BeamOptions(BeamWidthOptions):
    """Options of PRM beam search (``beam_width``, ``aggregation``)."""


def check_rounds(ctx: SearchContext) -> int:
    rounds = ctx.max_rounds
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"max_rounds must be an integer >= 1, got {rounds!r}")
    return rounds


def lookahead_values(run: Run, problem: Problem, children: list[Node], k: int,
                     rnd: int) -> None:
    """Value each new step by the PRM score at the end of a k-step greedy rollout from it.

    The rollout steps are not added to the node (only its first step advances the beam); a
    rollout stops early when it finishes. All rollouts of one lookahead step go in one engine
    call at temperature 0, then all rolled-out sequences in one verifier call. A node that is
    already finished is scored as it is.
    """
    ctx = run.ctx
    live = [c for c in children if c.n_new and not c.finished]
    for c in live:
        c.rollout = []
    for j in range(k):
        if not live:
            break
        outs = sample_steps(ctx, problem, [c.steps + c.rollout for c in live], 1,
                            derive_seed(ctx, problem, "rollout", rnd, j), temperature=0.0)
        still = []
        for c, comps in zip(live, outs, strict=True):
            new, done = completion_steps(ctx, comps[0])
            c.rollout.extend(new)
            if not done:
                still.append(c)
        live = still
    scored = [c for c in children if c.n_new]
    seqs = [c.steps + (c.rollout or []) for c in scored]
    for c, s in zip(scored, score_sequences(ctx, problem, seqs), strict=True):
        n = len(c.steps)
        c.scores = c.scores + s[n - c.n_new: n]
        c.value = s[-1]
        c.scores[-1] = c.value


def tree_search(problem: Problem, budget: int, ctx: SearchContext, *, strategy: str,
                lookahead: int, width: int, how: str) -> Result:
    """Beam search (``lookahead=0``) or lookahead search with beam width ``width`` and
    aggregation ``how`` (checked by the caller's options); see the module docstring."""
    max_rounds = check_rounds(ctx)
    require_scorer(ctx, strategy)
    run = Run(strategy, problem, ctx)
    ctx.cost.generations += budget
    keep = budget // width
    finished: list[Node] = []
    active: list[Node] = [root_node()]
    rounds = 0
    for rnd in range(max_rounds):
        samples = sample_steps(ctx, problem, [b.steps for b in active],
                               budget if rnd == 0 else width,
                               derive_seed(ctx, problem, "tree", rnd))
        children = [run.child(parent, comp, rnd)
                    for parent, comps in zip(active, samples, strict=True) for comp in comps]
        if lookahead:
            lookahead_values(run, problem, children, lookahead, rnd)
        else:
            score_new_nodes(ctx, problem, children)
        open_nodes = [c for c in children if not c.finished]
        finished.extend(c for c in children if c.finished)
        active = [open_nodes[i] for i in top_indices(open_nodes, keep)]
        kept = {c.id for c in active}
        run.add_round(rnd, children, [c.id in kept for c in children])
        rounds = rnd + 1
        if not active:
            break
    done = [n.to_candidate() for n in finished]
    left = [n.to_candidate() for n in active]
    answer, totals = pool_answer(done, left, how)
    return run.result(answer, done + left, beam_width=width, lookahead=lookahead,
                      aggregation=how, rounds=rounds, totals=totals)


def beam(problem: Problem, budget: int, ctx: SearchContext) -> Result:
    opts: BeamOptions = checked_options(ctx, budget, "beam")
    return tree_search(problem, budget, ctx, strategy="beam", lookahead=0,
                       width=opts.beam_width, how=opts.aggregation)
