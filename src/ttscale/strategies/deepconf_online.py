"""DeepConf online (Fu et al. 2025, "Deep Think with Confidence", arXiv:2508.15260): calibrate a
confidence threshold on a few warm-up traces, then stop every later trace as soon as its
confidence drops below it, and stop sampling once the vote has converged.

With budget N (the most traces that may be started):

1. **warm-up**: ``warmup`` full traces (default 8; all N if N is smaller) are sampled in one
   call with top-``top_k`` log-probabilities; each gets its lowest sliding-window group
   confidence (``window`` tokens per group, confidence.py);
2. **threshold**: ``s`` = the ``(1 - keep)`` quantile of the warm-up traces' lowest group
   confidences (``keep=0.9``: DeepConf-high, the 10th percentile; ``keep=0.1``: DeepConf-low,
   the 90th). Warm-up traces at or above ``s`` vote;
3. **online traces**, ``batch`` at a time (default 16), are generated step by step (one
   engine call per step for the whole batch, copies of one prefix sent once, the task's step
   delimiter as stop string, log-probabilities on): after
   every step, a trace whose lowest group confidence so far is below ``s`` is **stopped** (it
   never votes; the tokens it generated stay in the cost). A trace that finishes with its trace
   score at or above ``s`` votes;
4. **consensus stop**: before each batch, if the leading answer holds at least ``consensus``
   (default 0.95; None never stops) of the confidence-weighted vote, no more traces are
   started;
5. the answer is the confidence-weighted vote (summed lowest-group confidence) of the voters.

Cost counts only what was generated: every started trace is one generation (``generations`` is
the realised count, at most N), and tokens/FLOPs are those of the steps actually sampled
(prompts are re-sent each step, as in beam search). ``meta`` reports ``threshold``,
``traces_started``, ``traces_stopped`` (cut by the threshold), ``traces_completed``,
``consensus_stop`` and ``tokens_saved_est``: the tokens that generating every trace to the end
would have added, estimated with the mean length of the traces that completed (the exact
comparison is a majority@N run on the same problems; ``bench/bench_beyond.py`` prints it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import Field

from ttscale.strategies.base import OptInt, SearchContext
from ttscale.strategies.beam import check_rounds
from ttscale.strategies.common import (
    Run,
    check_budget,
    completion_steps,
    derive_seed,
    sample_next_steps,
)
from ttscale.strategies.confidence import (
    CONFIDENCE_KEY,
    completion_confidences,
    confidence_vote,
    group_confidences,
    sample_confident_solutions,
    trace_score,
)
from ttscale.strategies.confidence_vote import ConfidenceOptions
from ttscale.strategies.options import options_of
from ttscale.types import Candidate, Problem, Result

NAME = "deepconf-online"


class DeepConfOnlineOptions(ConfidenceOptions):
    """Options of ``deepconf-online`` (``score`` is fixed to ``lowest_group`` here)."""

    warmup: OptInt = Field(8, ge=1, description="warm-up traces that calibrate the threshold")
    keep: float = Field(0.9, gt=0, le=1, description="threshold at the (1-keep) quantile")
    consensus: float | None = Field(0.95, gt=0.5, le=1,
                                    description="vote share that stops sampling (None: never)")
    batch: OptInt = Field(16, ge=1, description="online traces generated together")


@dataclass
class _Trace:
    steps: list[str] = field(default_factory=list)
    conf: list[float] = field(default_factory=list)
    tokens: int = 0
    finished: bool = False
    stopped: bool = False
    reason: str = ""


def calibrate(lowest: list[float], keep: float) -> float:
    """DeepConf's threshold: the ``(1 - keep)`` quantile (linear) of warm-up confidences."""
    if not lowest:
        return float("-inf")
    return float(np.quantile(np.asarray(lowest, dtype=float), 1.0 - keep))


def consensus_share(totals: dict[str, float]) -> float:
    """Share of the leading answer in a weighted vote (0 when nothing voted)."""
    s = sum(totals.values())
    return max(totals.values()) / s if s > 0 else 0.0


def deepconf_online(problem: Problem, budget: int, ctx: SearchContext) -> Result:
    check_budget(budget)
    opts = options_of(ctx.options, DeepConfOnlineOptions, NAME)
    max_rounds = check_rounds(ctx)
    task = ctx.task
    run = Run(NAME, problem, ctx)
    n_warm = min(opts.warmup, budget)
    warm = sample_confident_solutions(ctx, problem, n_warm,
                                      derive_seed(ctx, problem, "solutions"), opts.top_k,
                                      "lowest_group", opts.window, opts.tail, opts.signal)
    answered = [c for c in warm if c.answer is not None]
    threshold = calibrate([c.meta[CONFIDENCE_KEY] for c in (answered or warm)], opts.keep)
    cands: list[Candidate] = []
    voters: list[Candidate] = []
    for c in warm:
        c.meta.update(warmup=True, stopped=False)
        c.meta["kept"] = c.answer is not None and c.meta[CONFIDENCE_KEY] >= threshold
        cands.append(c)
        if c.meta["kept"]:
            voters.append(c)
    started, stopped, consensus_stop, batch_no = n_warm, 0, False, 0
    while started < budget:
        if opts.consensus is not None and voters \
                and consensus_share(confidence_vote(voters)[1]) >= opts.consensus:
            consensus_stop = True
            break
        b = min(opts.batch, budget - started)
        started += b
        ctx.cost.generations += b
        traces = [_Trace() for _ in range(b)]
        active = list(traces)
        for rnd in range(max_rounds):
            if not active:
                break
            seed = derive_seed(ctx, problem, "deepconf", batch_no, rnd)
            comps = sample_next_steps(ctx, problem, [t.steps for t in active], seed,
                                      logprobs=opts.top_k)
            still = []
            for t, comp in zip(active, comps, strict=True):
                new, done = completion_steps(ctx, comp)
                t.steps += new
                t.conf += completion_confidences(comp, opts.signal)
                t.tokens += comp.generated_tokens
                t.reason = comp.finish_reason
                if len(t.conf) >= opts.window and min(group_confidences(t.conf, opts.window)) \
                        < threshold:
                    t.stopped = True
                elif done:
                    t.finished = True
                else:
                    still.append(t)
            active = still
        batch_no += 1
        for t in traces:
            answer = None if t.stopped else task.extract_answer(task.solution_text(t.steps))
            score = trace_score(t.conf, "lowest_group", opts.window)
            vote = t.finished and answer is not None and score >= threshold
            stopped += t.stopped
            c = Candidate(list(t.steps), [], t.finished, answer,
                          {"finish_reason": "confidence" if t.stopped else t.reason,
                           "generated_tokens": t.tokens, CONFIDENCE_KEY: score,
                           "warmup": False, "stopped": t.stopped, "kept": vote})
            cands.append(c)
            if vote:
                voters.append(c)
    answer, totals = confidence_vote(voters)
    done_lens = [c.meta["generated_tokens"] for c in cands if c.finished]
    mean_len = sum(done_lens) / len(done_lens) if done_lens else 0.0
    saved = sum(max(0.0, mean_len - c.meta["generated_tokens"]) for c in cands
                if c.meta["stopped"]) + (budget - started) * mean_len
    nodes = []
    for c in cands:
        c.meta["node"] = run.new_id()
        nodes.append({"id": c.meta["node"], "parent": 0,
                      "step": task.step_delimiter.join(c.steps), "score": c.meta[CONFIDENCE_KEY],
                      "kept": c.meta["kept"], "finished": c.finished, "answer": c.answer,
                      "stopped": c.meta["stopped"], "warmup": c.meta["warmup"]})
    run.trace.append({"round": 0, "threshold": threshold, "nodes": nodes})
    return run.result(answer, cands, totals=totals, threshold=threshold, warmup=n_warm,
                      traces_started=started, traces_stopped=stopped,
                      traces_completed=sum(c.finished for c in cands),
                      consensus_stop=consensus_stop, tokens_saved_est=round(saved, 1),
                      realised_generations=started)
