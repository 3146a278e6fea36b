"""Sequential revisions (Snell et al. 2024, section 6): a revision model improves its answers.

With budget N and chain length L (option ``chain_length``; N must be a multiple of L), N/L
independent chains of L attempts are run side by side. Attempt 1 of a chain is the revision
format with no previous attempts; attempt k > 1 is conditioned on the chain's last W attempts
(option ``revision_window``, default 4), oldest first, so older attempts slide out of the prompt
once a chain is longer than W. ``L = 1`` is plain parallel sampling, ``L = N`` one fully
sequential chain; the paper finds the best ratio depends on question difficulty. By default L is
the largest divisor of N that is at most W, so every revision sees its whole chain.

The final answer (option ``selection``); the defaults are the paper's rules (Snell et al. 2024,
App. M), the other two are named alternatives:

* ``"verifier"`` (default, the paper's): hierarchical. Within each chain, weighted best-of-N
  (``aggregation`` option, default ``"last"``) picks the chain's answer, represented by its
  best-scored attempt stating it; across chains, weighted best-of-N over those representatives
  (each weighted by its aggregated score) picks the final answer. Every attempt is scored as a
  solution to the ORIGINAL problem prompt, never the revision prompt, in one verifier call at
  the end. ``meta["chain_winners"]`` lists each chain's answer.
* ``"verifier-flat"``: weighted best-of-N over all N attempts of all chains at once (ttscale's
  earlier rule, not the paper's).
* ``"majority"`` (the paper's): a flat majority vote over all N attempts of all chains.
* ``"majority-hierarchical"``: a majority vote within each chain, then a majority vote over the
  chains' winners (ttscale's earlier rule, not the paper's).

Option ``verifier_prompt``: ``"problem"`` (default) scores every attempt as a solution to the
original problem prompt; ``"revision"`` scores each under the revision prompt it was written
under (its earlier attempts in context), for an ORM trained that way on the revision model's
outputs (``ttscale train orm --reviser``; the paper's revision verifier, App. N).

Ties go to the answer that reached the count (or score) first; attempts without an answer, e.g.
malformed text, stay in their chain but never vote.

The revision model is ``ctx.reviser`` (``ctx.generator`` when None), called through
``ctx.revise`` so every token it reads or writes is in the Cost. Attempt k of all chains is one
engine call per distinct prompt multiplicity: identical prompts are sent once with ``n`` = their
multiplicity and the samples dealt out without overlap (as ``common.sample_steps`` does), so
seeded engines never hand two chains the same sample and no sample is drawn in vain. Attempt 1
uses the seed purpose ``"solutions"``: with no reviser and the testbed format (whose
empty-history prompt is the problem prompt), ``L = 1`` draws exactly the samples majority voting
and best-of-N draw (common random numbers).

Each attempt is one generation: ``cost.generations`` is N. ``Result.trace`` has one entry per
chain, ``{"chain": c, "nodes": [...]}``, its attempts in order; each node follows the package's
node convention (``common``: ``id``, ``parent`` = 0 since every attempt is a full solution,
``step`` = the attempt's steps, ``score``, ``kept`` = it states the chosen answer, ``finished``,
``answer``) plus ``attempt`` (position in the chain, from 0), ``revises`` (node ids of the
attempts in its prompt, oldest first), ``scores`` and ``finish_reason``. Nothing about
correctness is recorded: the runner grades. ``Result.meta["chains"]`` lists each chain's attempt
answers in order, for the flip analysis (``ttscale.analysis.revisions``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from ttscale.engines.base import SamplingParams
from ttscale.strategies.base import OptInt, SearchContext
from ttscale.strategies.common import (
    AggregationOptions,
    Run,
    checked_options,
    deal_by_multiplicity,
    derive_seed,
    majority_vote,
    require_scorer,
    score_sequences,
    split_steps,
    weighted_vote,
)
from ttscale.strategies.revision_prompts import (
    RevisionFormat,
    RevisionFormatOptions,
    revision_format,
)
from ttscale.types import Candidate, Completion, Problem, Result
from ttscale.verifiers.base import aggregate

SELECTIONS = ("verifier", "verifier-flat", "majority", "majority-hierarchical")
#: the selections that read the verifier
VERIFIER_SELECTIONS = ("verifier", "verifier-flat")


# ---------------------------------------------------------------------------------------------
# options


class ChainOptions(RevisionFormatOptions, AggregationOptions):
    """Options of revision chains (``revisions``, ``combined``)."""

    chain_length: OptInt | None = Field(
        None, ge=1, description="L: attempts per chain (N/L chains); the budget must be a "
        "multiple of L (default: the largest divisor of the budget that is at most "
        "revision_window)")
    revision_window: OptInt = Field(
        4, ge=1, description="W: how many of a chain's latest attempts a revision prompt shows")

    def chain_length_for(self, budget: int, what: str = "budget N") -> int:
        """``chain_length`` L for ``budget`` (which must be a multiple of it). Default: the
        largest divisor of the budget that is at most the window (every revision then sees its
        whole chain)."""
        if self.chain_length is None:
            return max(d for d in range(1, min(budget, self.revision_window) + 1)
                       if budget % d == 0)
        if budget % self.chain_length:
            raise ValueError(f"{what}={budget} must be a multiple of chain_length "
                             f"L={self.chain_length} (N/L chains of L attempts)")
        return self.chain_length


class RevisionsOptions(ChainOptions):
    """Options of sequential revisions."""

    selection: Literal["verifier", "verifier-flat", "majority", "majority-hierarchical"] = Field(
        "verifier", description="final answer, the paper's rules (App. M): verifier "
        "(hierarchical: best within each chain, then weighted best-of-N across chains) or "
        "majority (flat over all attempts); ttscale's earlier rules: verifier-flat (weighted "
        "best-of-N over all attempts), majority-hierarchical (within each chain, then over the "
        "chains)")
    verifier_prompt: Literal["problem", "revision"] = Field(
        "problem", description="what the verifier reads an attempt under: the original problem "
        "prompt, or the revision prompt it was written under (a revision ORM, paper App. N)")

    def check_budget(self, budget: int) -> None:
        super().check_budget(budget)
        self.chain_length_for(budget)


# ---------------------------------------------------------------------------------------------
# chains


@dataclass
class Chain:
    """One revision chain: what its prompts may show (``history``) and what it generated."""

    index: int
    #: (text, node id) of every attempt the chain has seen, oldest first (a seed attempt first)
    history: list[tuple[str, int | None]] = field(default_factory=list)
    attempts: list[Candidate] = field(default_factory=list)
    #: the revision prompt each attempt was written under (for ``verifier_prompt="revision"``)
    prompts: list[str] = field(default_factory=list)
    #: a solution from elsewhere (``combined``: a beam search result) that the chain revises
    seed: Candidate | None = None

    @property
    def seed_node(self) -> int | None:
        return None if self.seed is None else self.seed.meta.get("node")

    def window(self, size: int) -> list[tuple[str, int | None]]:
        return self.history[-size:]


def attempt_candidate(ctx: SearchContext, comp: Completion) -> Candidate:
    """A full attempt from a completion, read like ``common.sample_solutions`` reads one.

    Malformed text (no answer, garbage) still gives a candidate: it stays in its chain and its
    prompts, and simply has no answer to vote with.
    """
    task = ctx.task
    steps = split_steps(comp.text, task.step_delimiter)
    finished = (comp.finish_reason in ("eos", "length", "context")
                or (bool(steps) and task.is_final_step(steps[-1])))
    return Candidate(steps, [], finished, task.extract_answer(comp.text),
                     {"finish_reason": comp.finish_reason,
                      "generated_tokens": comp.generated_tokens})


def sample_prompts(ctx: SearchContext, prompts: Sequence[str], params: SamplingParams
                   ) -> list[Completion]:
    """One completion per prompt from the revision model (not counted as generations: the
    strategy adds its budget once). Identical prompts are sent once with ``n`` = their
    multiplicity and the samples dealt without overlap; prompts of equal multiplicity share one
    engine call, so no sample is drawn that is not used (one call with ``n`` = the largest
    multiplicity would pay for up to that many samples of every prompt). At temperature 0 copies
    share the one greedy sample (they would be equal anyway)."""
    def sample(unique: list[str], n: int) -> list[list[Completion]]:
        return ctx.revise(unique, SamplingParams(n=n, temperature=params.temperature,
                                                 top_p=params.top_p, max_tokens=params.max_tokens,
                                                 stop=params.stop, seed=params.seed),
                          count_generations=False)

    return deal_by_multiplicity(prompts, params.temperature == 0, sample)


def run_chains(run: Run, problem: Problem, fmt: RevisionFormat, chains: Sequence[Chain],
               length: int, window: int, purpose: str) -> None:
    """Add ``length`` attempts to every chain: attempt k of all chains is one engine call.

    ``purpose`` names the seeds (``derive_seed(..., purpose, k)``); the first attempt of chains
    with an empty history uses the shared ``"solutions"`` seed (see the module docstring).
    """
    ctx = run.ctx
    for k in range(length):
        shown = [ch.window(window) for ch in chains]
        prompts = [fmt.prompt(problem, [text for text, _ in w]) for w in shown]
        if k == 0 and not any(ch.history for ch in chains):
            seed = derive_seed(ctx, problem, "solutions")
        else:
            seed = derive_seed(ctx, problem, purpose, k)
        params = SamplingParams(temperature=ctx.temperature, top_p=ctx.top_p,
                                max_tokens=ctx.max_solution_tokens, stop=fmt.stop, seed=seed)
        for ch, w, comp in zip(chains, shown, sample_prompts(ctx, prompts, params), strict=True):
            cand = attempt_candidate(ctx, comp)
            node = run.new_id()
            cand.meta.update({"node": node, "chain": ch.index, "attempt": len(ch.attempts),
                              "revises": [n for _, n in w]})
            ch.attempts.append(cand)
            ch.prompts.append(fmt.prompt(problem, [text for text, _ in w]))
            ch.history.append((comp.text, node))


def score_attempts(ctx: SearchContext, problem: Problem, attempts: Sequence[Candidate],
                   prompts: Sequence[str] | None = None) -> None:
    """Score every attempt with steps in one verifier call: against the ORIGINAL problem prompt
    (``prompts`` None), or each against its own prompt (``verifier_prompt="revision"``: an ORM
    trained on revision-model outputs with the earlier attempts in context reads the revision
    prompt the attempt was written under; identical (prompt, attempt) pairs are scored once)."""
    if prompts is None:
        todo = [a for a in attempts if a.steps]
        for a, s in zip(todo, score_sequences(ctx, problem, [a.steps for a in todo]),
                        strict=True):
            a.scores = s
        return
    index: dict[tuple[str, tuple[str, ...]], int] = {}
    for a, p in zip(attempts, prompts, strict=True):
        if a.steps:
            index.setdefault((p, tuple(a.steps)), len(index))
    if not index:
        return
    keys = list(index)
    scores = ctx.score([p for p, _ in keys], [list(steps) for _, steps in keys])
    if len(scores) != len(keys) or any(len(s) != len(k[1]) for s, k in zip(scores, keys,
                                                                             strict=True)):
        raise RuntimeError("verifier returned the wrong number of scores")
    for a, p in zip(attempts, prompts, strict=True):
        if a.steps:
            a.scores = list(scores[index[(p, tuple(a.steps))]])


def chain_trace(ctx: SearchContext, chains: Sequence[Chain], answer: str | None,
                how: str) -> list[dict[str, Any]]:
    """One trace entry per chain (see the module docstring)."""
    delim = ctx.task.step_delimiter
    out = []
    for ch in chains:
        nodes = [{"id": a.meta["node"], "parent": 0, "step": delim.join(a.steps),
                  "score": aggregate(a.scores, how) if a.scores else None,
                  "scores": list(a.scores),
                  "kept": answer is not None and a.answer == answer,
                  "finished": a.finished, "answer": a.answer, "attempt": a.meta["attempt"],
                  "revises": list(a.meta["revises"]),
                  "finish_reason": a.meta["finish_reason"]} for a in ch.attempts]
        entry: dict[str, Any] = {"chain": ch.index, "nodes": nodes}
        if ch.seed_node is not None:
            entry["seed"] = ch.seed_node
        out.append(entry)
    return out


def hierarchical_majority(chains: Sequence[Chain]) -> tuple[str | None, list[str | None]]:
    """Majority within each chain, then majority over the chains' winners (not the paper's
    rule: selection ``"majority-hierarchical"``)."""
    winners = [majority_vote(ch.attempts)[0] for ch in chains]
    answer, _ = majority_vote([Candidate(answer=w) for w in winners])
    return answer, winners


def hierarchical_verifier(chains: Sequence[Sequence[Candidate]], how: str
                          ) -> tuple[str | None, list[str | None], dict[str, float]]:
    """The paper's verifier selection (App. M): weighted best-of-N within each chain, then
    weighted best-of-N across the chains' representatives (each chain's best-scored attempt
    stating its winning answer). Returns the answer, each chain's answer and the across-chain
    totals. ``chains`` are the attempts of each chain, already scored."""
    reps: list[Candidate] = []
    winners: list[str | None] = []
    for attempts in chains:
        winner, _ = weighted_vote(attempts, how)
        winners.append(winner)
        if winner is None:
            continue
        best = max((a for a in attempts if a.answer == winner),
                   key=lambda a: aggregate(a.scores, how))
        reps.append(best)
    answer, totals = weighted_vote(reps, how)
    return answer, winners, totals


# ---------------------------------------------------------------------------------------------
# the strategy


def revisions(problem: Problem, budget: int, ctx: SearchContext) -> Result:
    opts: RevisionsOptions = checked_options(ctx, budget, "revisions")
    window, length = opts.revision_window, opts.chain_length_for(budget)
    selection, how = opts.selection, opts.aggregation
    verifier_prompt = opts.verifier_prompt
    fmt = revision_format(ctx.task, opts.model_dump())
    if selection in VERIFIER_SELECTIONS:
        require_scorer(ctx, "revisions")
    run = Run("revisions", problem, ctx)
    ctx.cost.generations += budget
    chains = [Chain(c) for c in range(budget // length)]
    run_chains(run, problem, fmt, chains, length, window, "revision")
    attempts = [a for ch in chains for a in ch.attempts]
    meta: dict[str, Any] = {"chain_length": length, "n_chains": len(chains),
                            "revision_window": window, "selection": selection,
                            "revision_format": fmt.name, "aggregation": how}
    if selection in VERIFIER_SELECTIONS:
        prompts = ([p for ch in chains for p in ch.prompts] if verifier_prompt == "revision"
                   else None)
        score_attempts(ctx, problem, attempts, prompts)
        meta["verifier_prompt"] = verifier_prompt
    if selection == "verifier":
        answer, winners, totals = hierarchical_verifier([ch.attempts for ch in chains], how)
        meta.update(totals=totals, chain_winners=winners)
    elif selection == "verifier-flat":
        answer, totals = weighted_vote(attempts, how)
        meta["totals"] = totals
    elif selection == "majority":
        answer, counts = majority_vote(attempts)
        meta["counts"] = counts
    else:
        answer, winners = hierarchical_majority(chains)
        meta["chain_winners"] = winners
    meta["chains"] = [[a.answer for a in ch.attempts] for ch in chains]
    run.trace.extend(chain_trace(ctx, chains, answer, how))
    return run.result(answer, attempts, **meta)
