"""Diverse verifier tree search (DVTS; Beeching et al. 2024, the search-and-learn extension of
Snell et al.'s beam search): N/M independent greedy subtrees instead of one shared beam.

With budget N and beam width M (option ``beam_width``, default 4; N a multiple of M and
at least M): N first steps are sampled in one call and dealt into N/M subtrees of M each (one
call with n=N rather than N/M calls of the same prompt, which a seeded engine would answer
identically). In every round each subtree keeps only its single best node by PRM score (newest
step's score; the first wins ties) and, unless that node is finished, expands it with M samples.
A subtree ends when its best node is finished; subtrees still open after ``ctx.max_rounds``
rounds end with their best node, unfinished. The answer is weighted best-of-N (``aggregation``
option) over the N/M subtree results (over the unfinished ones only if no finished one states an
answer).

Compute accounting as for beam search: N generations per run (added once), step calls not
counted as generations, tokens and FLOPs real. Each round is one engine call for all open
subtrees (subtrees at the same prefix are sent once, their samples dealt without overlap) and
one verifier call on the new prefixes.
"""

from __future__ import annotations

from ttscale.strategies.base import SearchContext
from ttscale.strategies.beam import check_rounds
from ttscale.strategies.common import (
    BeamWidthOptions,
    Node,
    Run,
    best_index,
    checked_options,
    derive_seed,
    pool_answer,
    require_scorer,
    root_node,
    sample_steps,
    score_new_nodes,
)
from ttscale.types import Problem, Result


class DvtsOptions(BeamWidthOptions):
    """Options of DVTS (``beam_width`` M: subtree width, N/M subtrees; ``aggregation``)."""


def dvts(problem: Problem, budget: int, ctx: SearchContext) -> Result:
    opts: DvtsOptions = checked_options(ctx, budget, "dvts")
    width, how = opts.beam_width, opts.aggregation
    max_rounds = check_rounds(ctx)
    require_scorer(ctx, "dvts")
    run = Run("dvts", problem, ctx)
    ctx.cost.generations += budget
    n_trees = budget // width
    root = root_node()
    best: list[Node] = [root] * n_trees
    open_trees = list(range(n_trees))
    rounds = 0
    for rnd in range(max_rounds):
        seed = derive_seed(ctx, problem, "dvts", rnd)
        if rnd == 0:
            flat = sample_steps(ctx, problem, [root.steps], budget, seed)[0]
            groups = [flat[t * width: (t + 1) * width] for t in range(n_trees)]
        else:
            groups = sample_steps(ctx, problem, [best[t].steps for t in open_trees], width, seed)
        children: list[Node] = []
        for t, comps in zip(open_trees, groups, strict=True):
            for comp in comps:
                node = run.child(best[t], comp, rnd)
                node.subtree = t
                children.append(node)
        score_new_nodes(ctx, problem, children)
        kept = [False] * len(children)
        still_open = []
        for i, t in enumerate(open_trees):
            j = best_index(children[i * width: (i + 1) * width])
            kept[i * width + j] = True
            best[t] = children[i * width + j]
            if not best[t].finished:
                still_open.append(t)
        run.add_round(rnd, children, kept)
        open_trees = still_open
        rounds = rnd + 1
        if not open_trees:
            break
    results = [b.to_candidate() for b in best]
    done = [c for c in results if c.finished]
    left = [c for c in results if not c.finished]
    answer, totals = pool_answer(done, left, how)
    return run.result(answer, results, beam_width=width, subtrees=n_trees, aggregation=how,
                      rounds=rounds, totals=totals)
