"""Per-question adaptive budgets: sample in rounds, stop as soon as the answer is decided
(Adaptive-Consistency, Aggarwal et al. 2023, arXiv:2305.11860; Early-Stopping Self-Consistency,
Li et al. 2024, arXiv:2401.10480; the rules are in stopping.py).

Compute-optimal allocation done online (the paper, section 3, fits a per-difficulty-bin table
offline and needs a difficulty estimate; here each question spends what it needs, with no table
and no probe). Two registered names share this loop:

* ``adaptive``: verifier-free votes, ``vote="count"`` (self-consistency) or ``"confidence"``
  (DeepConf-weighted, confidence.py; the engine must return log-probabilities);
* ``adaptive-prm``: PRM votes, ``vote="weighted"`` (weighted best-of-N) or ``"argmax"``
  (best-of-N: the best-scored sample's answer); ``aggregation`` collapses step scores.

With budget N (the most samples a question may use): rounds of ``round_size`` full solutions
(the last round is cut to fit N) are sampled, one engine call each (and one verifier call for
the PRM votes); after each round the ``rule`` decides (stopping.py): ``beta`` (Adaptive-
Consistency's Beta posterior that the leader beats the runner-up, ``confidence``), ``esc``
(Early-Stopping Self-Consistency: the whole round agrees) or, for ``adaptive-prm`` only,
``score`` (the best sample's score reaches ``threshold``; the rule for ``vote="argmax"``).
The threshold belongs to the PRM: set it a little above what the PRM gives wrong final steps.
The default 0.6 is the shipped testbed PRM's (chosen on 40 dev questions: right final steps
score about 0.7, wrong ones at most about 0.57).

Cost: ``generations`` is the realised number of samples (each one generation), tokens and
FLOPs those of the rounds actually run; ``meta["rounds"]`` and ``meta["stopped_early"]`` say
how it ended. Curves plot adaptive methods at their mean realised cost.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ttscale.strategies.base import OptInt, SearchContext
from ttscale.strategies.common import (
    Run,
    best_candidate,
    check_budget,
    derive_seed,
    majority_vote,
    require_scorer,
    sample_solutions,
    score_sequences,
    weighted_vote,
)
from ttscale.strategies.confidence import (
    CONFIDENCE_KEY,
    confidence_vote,
    sample_confident_solutions,
)
from ttscale.strategies.confidence_vote import ConfidenceOptions
from ttscale.strategies.options import BeyondOptions, options_of
from ttscale.strategies.stopping import beta_stop, esc_stop, score_stop
from ttscale.types import Candidate, Problem, Result
from ttscale.verifiers.base import aggregate


class _RoundOptions(BeyondOptions):
    round_size: OptInt = Field(4, ge=1, description="samples per round")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Beta rule's posterior level")


class AdaptiveOptions(_RoundOptions, ConfidenceOptions):
    """Options of ``adaptive`` (verifier-free votes)."""

    vote: Literal["count", "confidence"] = "count"
    rule: Literal["beta", "esc"] = "beta"

    def check_budget(self, budget: int) -> None:
        super().check_budget(budget)
        _check(self, "adaptive")


class AdaptivePrmOptions(_RoundOptions):
    """Options of ``adaptive-prm`` (PRM votes)."""

    vote: Literal["weighted", "argmax"] = "argmax"
    rule: Literal["beta", "esc", "score"] = "score"
    threshold: float = Field(0.6, ge=0, le=1,
                             description="score rule's PRM score (PRM-specific, see above)")
    aggregation: Literal["last", "min", "prod", "mean"] = "last"

    def check_budget(self, budget: int) -> None:
        super().check_budget(budget)
        _check(self, "adaptive-prm")


def _check(opts: AdaptiveOptions | AdaptivePrmOptions, name: str) -> None:
    """Rules that tie two options together (also run when the registry parses the options)."""
    if opts.rule == "esc" and opts.round_size < 2:
        raise ValueError(f"{name}: rule=esc needs round_size >= 2 (the window is one round)")
    if opts.vote == "argmax" and opts.rule == "beta":
        raise ValueError(f"{name}: vote=argmax has no vote counts for rule=beta; use rule=score "
                         f"or esc")


def adaptive_run(problem: Problem, budget: int, ctx: SearchContext, name: str,
                 opts: AdaptiveOptions | AdaptivePrmOptions) -> Result:
    check_budget(budget)
    _check(opts, name)
    prm = isinstance(opts, AdaptivePrmOptions)
    if prm:
        require_scorer(ctx, name)
    run = Run(name, problem, ctx)
    cands: list[Candidate] = []
    answer: str | None = None
    totals: dict[str, float] = {}
    stopped, rnd = False, 0
    while len(cands) < budget and not stopped:
        n = min(opts.round_size, budget - len(cands))
        seed = derive_seed(ctx, problem, "adaptive", rnd)
        if opts.vote == "confidence":
            new = sample_confident_solutions(ctx, problem, n, seed, opts.top_k, opts.score,
                                             opts.window, opts.tail, opts.signal)
        else:
            new = sample_solutions(ctx, problem, n, seed)
        if prm:
            scored = [c for c in new if c.steps]
            for c, s in zip(scored, score_sequences(ctx, problem, [c.steps for c in scored]),
                            strict=True):
                c.scores = s
        for c in new:
            c.meta["round"] = rnd
        cands += new
        answered = sum(c.answer is not None for c in cands)
        best_score = None
        if opts.vote == "count":
            answer, counts = majority_vote(cands)
            totals = {a: float(v) for a, v in counts.items()}
        elif opts.vote == "confidence":
            answer, totals = confidence_vote(cands)
        elif opts.vote == "weighted":
            answer, totals = weighted_vote(cands, opts.aggregation)
        else:
            best = best_candidate(cands, opts.aggregation)
            answer = None if best is None else cands[best].answer
            totals = {}
            for c in cands:
                if c.answer is not None:
                    s = aggregate(c.scores, opts.aggregation)
                    totals[c.answer] = max(totals.get(c.answer, s), s)
        if prm:
            scores = [aggregate(c.scores, opts.aggregation) for c in cands
                      if c.answer is not None]
            best_score = max(scores, default=None)
        if opts.rule == "beta":
            stopped = beta_stop(totals, answered, opts.confidence)
        elif opts.rule == "esc":
            stopped = esc_stop([c.answer for c in new]) if len(new) == opts.round_size else False
        else:
            stopped = score_stop(best_score, opts.threshold)  # type: ignore[union-attr]
        run.trace.append({"round": rnd, "samples": len(cands), "answer": answer,
                          "stop": stopped, "nodes": _nodes(run, ctx, new, prm, opts)})
        rnd += 1
    return run.result(answer, cands, totals=totals, rounds=rnd, rule=opts.rule, vote=opts.vote,
                      stopped_early=stopped and len(cands) < budget,
                      realised_generations=len(cands))


def _nodes(run: Run, ctx: SearchContext, new: list[Candidate], prm: bool,
           opts: AdaptiveOptions | AdaptivePrmOptions) -> list[dict]:
    out = []
    for c in new:
        c.meta["node"] = run.new_id()
        if prm:
            score = aggregate(c.scores, opts.aggregation) if c.scores else None  # type: ignore[union-attr]
        else:
            score = c.meta.get(CONFIDENCE_KEY)
        out.append({"id": c.meta["node"], "parent": 0,
                    "step": ctx.task.step_delimiter.join(c.steps), "score": score,
                    "kept": True, "finished": c.finished, "answer": c.answer})
    return out


def adaptive(problem: Problem, budget: int, ctx: SearchContext) -> Result:
    return adaptive_run(problem, budget, ctx, "adaptive",
                        options_of(ctx.options, AdaptiveOptions, "adaptive"))


def adaptive_prm(problem: Problem, budget: int, ctx: SearchContext) -> Result:
    return adaptive_run(problem, budget, ctx, "adaptive-prm",
                        options_of(ctx.options, AdaptivePrmOptions, "adaptive-prm"))
