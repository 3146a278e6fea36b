"""Trace confidence from the policy's own token log-probabilities (DeepConf, Fu et al. 2025;
self-certainty, Kang et al. 2025): the verifier for users who have no PRM.

* **Token confidence** (``signal="topk"``, the default) ``C_i = -(1/k) * sum_j log P_i(j)`` over
  the k largest log-probabilities at generated position i (DeepConf, eq. 2). A peaked
  distribution (one likely token, the rest far below) gives a large value; a flat one (the model
  hesitates) a small value. ``signal="sampled"``: ``C_i`` is the probability the model gave the
  token it sampled (so ``mean`` is the mean token probability, a length-normalised likelihood).
  Why both: which one separates right from wrong traces depends on the model. On the testbed
  the top-k confidence carries no signal (within-question AUC of right vs wrong traces 0.52-0.58
  on 150 dev questions and 0.48-0.51 on 60 test questions, 32 traces each, by trace score: with
  a 32-token vocabulary the top-5 mass says little) while the sampled-token probability does
  (0.73 dev, 0.79-0.80 test; docs/testbed.md).
* **Group confidence**: the mean token confidence over a sliding window of ``window`` tokens
  (DeepConf uses 2048 on long traces; testbed solutions are ~40 tokens, so the default is 8).
  A trace shorter than the window is one group.
* **Trace scores** (``score`` option): ``lowest_group`` (the lowest group confidence: one
  confused stretch is enough to distrust a trace), ``bottom10`` (mean of the lowest 10 % of
  groups), ``tail`` (mean token confidence over the last ``tail`` tokens, where the answer is
  written), ``mean`` (average token confidence, DeepConf's baseline "average trace confidence";
  with k = the vocabulary this is Kang et al.'s self-certainty up to a constant).

An engine that returns no log-probabilities although they were asked for is an error (a
silent 0 would turn confidence voting into something else).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from ttscale.engines.base import SamplingParams
from ttscale.strategies.base import SearchContext
from ttscale.strategies.common import _check_counts, solution_candidate
from ttscale.types import Candidate, Completion, Problem

TokenSignal = Literal["topk", "sampled"]
TraceScore = Literal["lowest_group", "bottom10", "tail", "mean"]
TRACE_SCORES: tuple[str, ...] = ("lowest_group", "bottom10", "tail", "mean")
#: meta key of a candidate's trace confidence
CONFIDENCE_KEY = "confidence"


def token_confidences(top_logprobs: Sequence[Sequence[float]]) -> list[float]:
    """DeepConf's per-token confidence from the top-k log-probabilities of each position."""
    out = []
    for i, tops in enumerate(top_logprobs):
        if not tops:
            raise ValueError(f"no top log-probabilities at generated token {i}")
        out.append(-math.fsum(tops) / len(tops))
    return out


def completion_confidences(comp: Completion, signal: TokenSignal = "topk") -> list[float]:
    """Token confidences of one completion (``signal``: module docstring); raises if the
    engine sent no log-probabilities."""
    if signal == "sampled":
        if comp.token_logprobs is None:
            raise ValueError("the policy engine returned no log-probabilities of the sampled "
                             "tokens (signal=sampled needs an engine that supports "
                             "SamplingParams.logprobs)")
        return [math.exp(lp) for lp in comp.token_logprobs]
    if signal != "topk":
        raise ValueError(f"unknown confidence signal {signal!r}; choose topk or sampled")
    if comp.top_logprobs is None:
        raise ValueError("the policy engine returned no top log-probabilities (confidence "
                         "strategies need an engine that supports SamplingParams.logprobs)")
    return token_confidences(comp.top_logprobs)


def group_confidences(conf: Sequence[float], window: int) -> list[float]:
    """Mean confidence of every window of ``window`` consecutive tokens (one group if shorter)."""
    if window < 1:
        raise ValueError(f"confidence window must be >= 1, got {window}")
    if not conf:
        return []
    if len(conf) <= window:
        return [math.fsum(conf) / len(conf)]
    s = math.fsum(conf[:window])
    out = [s / window]
    for i in range(window, len(conf)):
        s += conf[i] - conf[i - window]
        out.append(s / window)
    return out


def trace_score(conf: Sequence[float], how: str, window: int = 8, tail: int = 16) -> float:
    """One number per trace (see module docstring); an empty trace scores 0."""
    if not conf:
        return 0.0
    if how == "mean":
        return math.fsum(conf) / len(conf)
    if how == "tail":
        last = conf[-tail:]
        return math.fsum(last) / len(last)
    groups = group_confidences(conf, window)
    if how == "lowest_group":
        return min(groups)
    if how == "bottom10":
        low = sorted(groups)[: max(1, math.ceil(0.1 * len(groups)))]
        return math.fsum(low) / len(low)
    raise ValueError(f"unknown trace score {how!r}; choose one of {', '.join(TRACE_SCORES)}")


def sample_confident_solutions(ctx: SearchContext, problem: Problem, n: int, seed: int, k: int,
                               how: str, window: int, tail: int,
                               signal: TokenSignal = "topk") -> list[Candidate]:
    """``n`` full solutions in one call (each one generation) with their trace confidence in
    ``meta["confidence"]`` (top-``k`` log-probabilities asked of the engine)."""
    params = SamplingParams(n=n, temperature=ctx.temperature, top_p=ctx.top_p,
                            max_tokens=ctx.max_solution_tokens, seed=seed, logprobs=k)
    out = ctx.sample([problem.prompt], params)
    _check_counts(out, 1, n)
    cands = []
    for comp in out[0]:
        cand = solution_candidate(ctx.task, comp)
        cand.meta[CONFIDENCE_KEY] = trace_score(completion_confidences(comp, signal), how,
                                                 window, tail)
        cands.append(cand)
    return cands


def most_confident(cands: Sequence[Candidate], keep: float) -> list[int]:
    """Indices of the ``ceil(keep * n)`` most confident candidates that state an answer (at
    least one), in their original order; earlier candidates win ties."""
    answered = [i for i, c in enumerate(cands) if c.answer is not None]
    if not answered:
        return []
    m = max(1, math.ceil(keep * len(answered)))
    ranked = sorted(answered, key=lambda i: (-cands[i].meta[CONFIDENCE_KEY], i))[:m]
    return sorted(ranked)


def confidence_vote(cands: Sequence[Candidate]) -> tuple[str | None, dict[str, float]]:
    """Answer with the largest summed confidence (DeepConf's weighted majority); first wins
    ties."""
    totals: dict[str, float] = {}
    for c in cands:
        if c.answer is not None:
            totals[c.answer] = totals.get(c.answer, 0.0) + float(c.meta[CONFIDENCE_KEY])
    if not totals:
        return None, totals
    return max(totals, key=totals.__getitem__), totals
