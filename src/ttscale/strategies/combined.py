"""PRM beam search, then revisions of its best answers (the paper's future work, section 8).

Snell et al. 2024 study search against a verifier (section 5) and sequential revisions
(section 6) separately and suggest combining them. Here, with budget N:

1. ``N_b = round(search_share x N)`` generations go to PRM beam search (option ``search_share``,
   default 0.5; ``N_b`` must be a multiple of ``beam_width`` M and at least M), run by
   ``beam.tree_search`` itself, so it is exactly the ``beam`` strategy at budget ``N_b``;
2. the other ``N_r = N - N_b`` generations are ``N_r / L`` revision chains of L attempts (options
   ``chain_length``, default the largest divisor of ``N_r`` that is at most ``revision_window``,
   and ``revision_window``, default 4; see ``revisions``). Chain c is seeded by the c-th best of
   beam search's distinct finished solutions (ranked by aggregated PRM score, those stating an
   answer first; unfinished beams only if nothing finished; cycling when there are fewer
   solutions than chains): the seed is its first previous attempt, so its first revision
   already revises a searched solution;
3. every revision attempt is scored by the PRM against the original problem prompt (one call),
   and the answer is weighted best-of-N (``aggregation``) over the finished beam solutions and
   all revision attempts (over the unfinished beams only if none of those states an answer).

Cost: ``generations`` is N (``N_b`` added by beam search, ``N_r`` here); tokens and FLOPs of the
policy, the revision model (``ctx.reviser``, else the policy) and the PRM are all counted, the
wall time once. ``Result.trace`` is beam search's rounds followed by one entry per chain
(``{"chain", "seed", "nodes"}``, as in ``revisions``; node ids continue after the beam's, and a
first revision's ``revises`` names its seed's beam node). ``Result.meta["chains"]`` lists each
chain's answers starting with its seed's, so the flip analysis sees seed -> first revision.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from ttscale.strategies.base import OptInt, SearchContext
from ttscale.strategies.beam import tree_search
from ttscale.strategies.common import (
    Run,
    checked_options,
    pool_answer,
    require_scorer,
)
from ttscale.strategies.revision_prompts import revision_format
from ttscale.strategies.revisions import (
    Chain,
    ChainOptions,
    chain_trace,
    run_chains,
    score_attempts,
)
from ttscale.types import Candidate, Problem, Result
from ttscale.verifiers.base import aggregate


def _no_bool_number(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number in (0, 1], got a boolean")
    return value


class CombinedOptions(ChainOptions):
    """Options of beam search followed by revisions: the split, the beam, the chains."""

    search_share: Annotated[float, BeforeValidator(_no_bool_number)] = Field(
        0.5, gt=0, le=1, description="share of the budget that goes to beam search "
        "(N_b = round(search_share x N), a multiple of beam_width)")
    beam_width: OptInt = Field(4, ge=1, description="beam width M of the beam search part")

    def split(self, budget: int) -> tuple[int, int]:
        """``(N_b, N_r)``: beam search's share of the budget and the revisions'."""
        share, width = self.search_share, self.beam_width
        n_beam = round(share * budget)
        if n_beam < width or n_beam % width:
            raise ValueError(f"beam search gets round(search_share={share} x N={budget}) "
                             f"= {n_beam} generations, which must be a multiple of beam_width "
                             f"M={width} and at least M (raise the budget or search_share, or "
                             f"lower beam_width)")
        return n_beam, budget - n_beam

    def check_budget(self, budget: int) -> None:
        super().check_budget(budget)
        _, n_rev = self.split(budget)
        if n_rev:
            self.chain_length_for(n_rev, "revision budget N-N_b")


def seed_candidates(candidates: list[Candidate], n: int, how: str) -> list[Candidate]:
    """The ``n`` seeds of the chains: best distinct finished solutions first (see above)."""
    pool = [c for c in candidates if c.finished] or list(candidates)
    order = sorted(range(len(pool)), key=lambda i: (pool[i].answer is None,
                                                     -aggregate(pool[i].scores, how), i))
    seen: set[tuple[str, ...]] = set()
    distinct = []
    for i in order:
        key = tuple(pool[i].steps)
        if key not in seen:
            seen.add(key)
            distinct.append(pool[i])
    return [distinct[c % len(distinct)] for c in range(n)] if distinct else []


def combined(problem: Problem, budget: int, ctx: SearchContext) -> Result:
    opts: CombinedOptions = checked_options(ctx, budget, "combined")
    n_beam, n_rev = opts.split(budget)
    width, window = opts.beam_width, opts.revision_window
    length = opts.chain_length_for(n_rev, "revision budget N-N_b") if n_rev else 0
    how = opts.aggregation
    fmt = revision_format(ctx.task, opts.model_dump())
    require_scorer(ctx, "combined")
    run = Run("combined", problem, ctx)
    wall0 = ctx.cost.wall_s
    beam = tree_search(problem, n_beam, ctx, strategy="combined", lookahead=0, width=width,
                       how=how)
    ctx.cost.wall_s = wall0  # the beam's own clock is inside this run's: count it once
    run.trace.extend(beam.trace)
    run.next_id = 1 + max((n["id"] for r in beam.trace for n in r["nodes"]), default=0)
    ctx.cost.generations += n_rev

    chains: list[Chain] = []
    if n_rev:
        seeds = seed_candidates(beam.candidates, n_rev // length, how)
        delim = ctx.task.step_delimiter
        for c in range(n_rev // length):
            ch = Chain(c, seed=seeds[c] if seeds else None)
            if ch.seed is not None:
                ch.history.append((delim.join(ch.seed.steps), ch.seed_node))
            chains.append(ch)
        run_chains(run, problem, fmt, chains, length, window, "combined-revision")
    attempts = [a for ch in chains for a in ch.attempts]
    score_attempts(ctx, problem, attempts)

    done = [c for c in beam.candidates if c.finished]
    left = [c for c in beam.candidates if not c.finished]
    answer, totals = pool_answer(done + attempts, left, how)
    run.trace.extend(chain_trace(ctx, chains, answer, how))
    meta: dict[str, Any] = {
        "search_share": n_beam / budget, "beam_budget": n_beam, "revision_budget": n_rev,
        "beam_width": width, "chain_length": length, "n_chains": len(chains),
        "revision_window": window, "revision_format": fmt.name, "aggregation": how,
        "rounds": beam.meta.get("rounds"), "totals": totals,
        "beam_answer": beam.answer, "beam_cost": beam.cost.to_dict(),
        "chain_seeds": [ch.seed_node for ch in chains],
        "chains": [([ch.seed.answer] if ch.seed is not None else [])
                   + [a.answer for a in ch.attempts] for ch in chains],
    }
    return run.result(answer, list(beam.candidates) + attempts, **meta)

