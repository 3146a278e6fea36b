"""Confidence-weighted voting without a PRM (DeepConf offline, Fu et al. 2025, "Deep Think with
Confidence", arXiv:2508.15260; self-certainty, Kang et al. 2025, arXiv:2502.18581; trace
confidence as in confidence.py). Most users have no PRM for their domain: this is their verifier.

With budget N: N full solutions are sampled in one call with the top-``top_k`` log-probability
of every generated token (``SamplingParams.logprobs``); every token gets a confidence
(``signal``: ``topk``, DeepConf's, from the top-k log-probabilities; ``sampled``, the
probability of the token the model sampled, which is what separates right from wrong traces
on the testbed, see confidence.py); each trace gets a confidence score
(``score`` option: ``lowest_group`` (default, DeepConf's best offline score) with ``window``
tokens per group, ``bottom10``, ``tail`` over the last ``tail`` tokens, or ``mean``). The
least confident traces are filtered out: of the traces that state an answer, the
``ceil(keep * n)`` most confident vote (``keep=0.9`` is DeepConf-high, ``0.1`` DeepConf-low,
``1.0`` no filter). The answer with the largest summed confidence wins (``weighting="confidence"``)
or the most votes among the kept traces (``weighting="count"``: filtering only).

No verifier is used (``needs_verifier=False``); each sample is one generation; the log-probs
cost nothing extra on the engines (they come with the sampled tokens). Candidates carry their
confidence in ``meta["confidence"]`` and ``meta["kept"]``; the trace marks the voting traces.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ttscale.strategies.base import OptInt, SearchContext
from ttscale.strategies.common import Run, check_budget, derive_seed, majority_vote
from ttscale.strategies.confidence import (
    CONFIDENCE_KEY,
    TokenSignal,
    confidence_vote,
    most_confident,
    sample_confident_solutions,
)
from ttscale.strategies.options import BeyondOptions, options_of
from ttscale.types import Problem, Result

NAME = "confidence-vote"


class ConfidenceOptions(BeyondOptions):
    """How a trace's confidence is read from its token log-probabilities (confidence.py)."""

    top_k: OptInt = Field(5, ge=1, le=20, description="log-probabilities per token (DeepConf: 5)")
    signal: TokenSignal = Field(
        "topk", description="token confidence: DeepConf's top-k (topk) or the probability of "
                            "the sampled token (sampled); see confidence.py")
    score: Literal["lowest_group", "bottom10", "tail", "mean"] = "lowest_group"
    window: OptInt = Field(8, ge=1, description="tokens per sliding-window group")
    tail: OptInt = Field(16, ge=1, description="tokens of the tail score")


class ConfidenceVoteOptions(ConfidenceOptions):
    """Options of ``confidence-vote``."""

    keep: float = Field(0.9, gt=0, le=1, description="fraction of most confident traces kept")
    weighting: Literal["confidence", "count"] = "confidence"


def confidence_vote_strategy(problem: Problem, budget: int, ctx: SearchContext) -> Result:
    check_budget(budget)
    opts = options_of(ctx.options, ConfidenceVoteOptions, NAME)
    run = Run(NAME, problem, ctx)
    cands = sample_confident_solutions(ctx, problem, budget,
                                       derive_seed(ctx, problem, "solutions"), opts.top_k,
                                       opts.score, opts.window, opts.tail, opts.signal)
    kept = set(most_confident(cands, opts.keep))
    voters = [c for i, c in enumerate(cands) if i in kept]
    if opts.weighting == "confidence":
        answer, totals = confidence_vote(voters)
    else:
        answer, counts = majority_vote(voters)
        totals = {a: float(v) for a, v in counts.items()}
    nodes = []
    for i, c in enumerate(cands):
        c.meta["kept"] = i in kept
        c.meta["node"] = run.new_id()
        nodes.append({"id": c.meta["node"], "parent": 0,
                      "step": ctx.task.step_delimiter.join(c.steps),
                      "score": c.meta[CONFIDENCE_KEY], "kept": i in kept,
                      "finished": c.finished, "answer": c.answer})
    run.trace.append({"round": 0, "nodes": nodes})
    return run.result(answer, cands, totals=totals, kept=len(kept), score=opts.score,
                      keep=opts.keep, weighting=opts.weighting)
