"""FLOPs-matched comparison (Snell et al. 2024, section 7): a small model with test-time compute
against a larger model without it, at equal total (pretraining + inference) compute.

Arithmetic (N parameters, D tokens): pretraining costs ``6 N D_pretrain`` FLOPs, inference
``2 N D_inference``. A model ``M`` times larger spends ``6 M N D_pre + 2 M N D_inf``; the small
one spends the same when it processes ``X`` times more inference tokens, with

    X = M + 3 (D_pretrain / D_inference) (M - 1) = M + 3 (M - 1) / R,   R = D_inference / D_pretrain

(:func:`token_multiplier`). Per question, the large model's greedy answer processes ``T_L``
tokens for ``F_L = 2 M N T_L`` FLOPs, so the small model may spend ``2 N X T_L = (X / M) F_L``
inference FLOPs (:func:`small_allowance`). Measured FLOPs are used on both sides (tokens really
processed, prompt-cache hits excluded), and the small side's FLOPs include its PRM and the
difficulty probe, which the paper's token count leaves out: the comparison is stricter for the
small model, never looser.

The small side is the cross-validated compute-optimal policy (oracle bins) read along its curve
(mean FLOPs vs accuracy over the questions of the bin, one point per sweep budget) at exactly the
allowance of that bin: between two sweep budgets the accuracy is interpolated linearly in
log FLOPs (:func:`at_flops`), not rounded down to the largest budget that fits (``capped`` when
even the largest sweep budget is under the allowance: the small model could spend more than the
sweep tried, and its largest point is used). The large side is its greedy accuracy on the same
questions, sampled into the sweep's store (:func:`sample_large`: resumable like every run). Bins
are the oracle bins of the small model's pool over all questions, as in the paper.

Two accountings, side by side (``accounting``):

* ``strict``: the small side pays for the difficulty probe and its PRM; the large side for its
  own greedy tokens only;
* ``paper``: difficulty is free (the paper protocol, ``analysis.PROTOCOLS``) and the verifier is
  counted on both sides, as in the camera-ready: the large side is also charged one PRM pass
  over its answer (``2 x PRM parameters x its prompt + answer tokens``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttscale.analysis.bins import sort_labels
from ttscale.optimal.selection import Outcome
from ttscale.types import Cost

#: the inference-to-pretraining token ratios of the paper's figure
R_VALUES = (0.16, 0.79, 22.0)


def pretraining_flops(n_params: float, tokens: float) -> float:
    """``6 N D``: forward + backward over every pretraining token."""
    return 6.0 * n_params * tokens


def inference_flops(n_params: float, tokens: float) -> float:
    """``2 N D``: one forward pass per processed token (``Cost.flops``)."""
    return Cost.flops(n_params, tokens)


def token_multiplier(m: float, r: float) -> float:
    """How many times more inference tokens a model ``m`` times smaller may process at equal
    total FLOPs, when inference is ``r`` times the pretraining tokens."""
    if not m >= 1.0:
        raise ValueError(f"parameter multiplier M={m!r} must be >= 1 (the larger model over the "
                         "smaller)")
    if not r > 0.0:
        raise ValueError(f"R = D_inference / D_pretrain = {r!r} must be > 0")
    return m + 3.0 * (m - 1.0) / r


def small_allowance(large_inference_flops: float, m: float, r: float) -> float:
    """Inference FLOPs the small model may spend where the large one spends
    ``large_inference_flops``: ``(X / M) x F_L``."""
    return large_inference_flops * token_multiplier(m, r) / m


def params_from_cost(cost: Cost) -> float | None:
    """The policy's parameter count implied by a Cost (FLOPs = 2 x params x processed tokens);
    None when nothing was processed or counted."""
    tokens = cost.prompt_tokens - cost.prompt_tokens_cached + cost.generated_tokens
    if tokens <= 0 or cost.policy_flops <= 0:
        return None
    return cost.policy_flops / (2.0 * tokens)


def prm_params_from_costs(costs: Sequence[Cost]) -> float | None:
    """The PRM's parameter count implied by stored costs (PRM FLOPs = 2 x params x tokens)."""
    tokens = sum(c.prm_tokens - c.prm_tokens_cached for c in costs)
    flops = sum(c.prm_flops for c in costs)
    return flops / (2.0 * tokens) if tokens > 0 and flops > 0 else None


def _mean(values: Mapping[str, float], qs: Sequence[str]) -> float:
    return sum(values[q] for q in qs) / len(qs)


def compare(outcomes: Mapping[int, Outcome], large_acc: Mapping[str, float],
            large_flops: Mapping[str, float], bins: Mapping[str, int], m: float,
            r_values: Sequence[float] = R_VALUES) -> list[dict[str, Any]]:
    """One row per (R, bin) and per R over all questions ("all"): which side wins, by how much.

    ``outcomes``: per budget, each question's compute-optimal accuracy and FLOPs; ``large_*``:
    the large model's greedy accuracy and inference FLOPs per question; ``bins``: question -> bin.
    """
    budgets = sorted(outcomes)
    ids = [q for q in bins if q in large_acc]
    groups: dict[str, list[str]] = {"all": list(ids)}
    for q in ids:
        groups.setdefault(str(bins[q]), []).append(q)
    rows = []
    for r in r_values:
        x = token_multiplier(m, r)
        for label in ["all", *sort_labels([g for g in groups if g != "all"])]:
            qs = groups[label]
            if not qs:
                continue
            large_a, large_f = _mean(large_acc, qs), _mean(large_flops, qs)
            allowance = small_allowance(large_f, m, r)
            curve = [(_mean(outcomes[n].flops, qs), _mean(outcomes[n].acc, qs),
                      _mean(outcomes[n].gens, qs), n) for n in budgets]
            row: dict[str, Any] = {
                "R": r, "multiplier_X": x, "bin": label, "n": len(qs),
                "large_accuracy": large_a, "large_flops": large_f, "allowance_flops": allowance,
                "small_budget": None, "small_generations": None, "small_accuracy": None,
                "small_flops": None, "small_choices": {}, "capped": False, "delta": None,
                "winner": "large",
            }
            hit = at_flops(curve, allowance)
            if hit is not None:
                small_a, gens, n, capped = hit
                o = outcomes[n]
                choices: dict[str, int] = {}
                for q in qs:
                    choices[o.label[q]] = choices.get(o.label[q], 0) + 1
                delta = small_a - large_a
                row.update(small_budget=n, small_generations=gens, small_accuracy=small_a,
                           small_flops=min(allowance, max(c[0] for c in curve)),
                           small_choices=dict(sorted(choices.items())), capped=capped,
                           delta=delta, winner="small+test-time" if delta > 1e-12
                           else "large" if delta < -1e-12 else "tie")
            rows.append(row)
    return rows


def at_flops(curve: Sequence[tuple[float, float, float, int]], allowance: float
             ) -> tuple[float, float, int, bool] | None:
    """The small model's accuracy at exactly ``allowance`` FLOPs along ``curve`` (points of
    (mean FLOPs, accuracy, mean generations, budget), in budget order), interpolated linearly in
    log FLOPs between the two points around it: ``(accuracy, generations, the budget of the
    point below, capped)``. None when even the cheapest point costs more; the largest point,
    ``capped``, when every point costs less."""
    pts = sorted(curve)
    if not pts or pts[0][0] > allowance:
        return None
    if pts[-1][0] <= allowance:
        f, a, g, n = pts[-1]
        return a, g, n, True
    for (f0, a0, g0, n0), (f1, a1, g1, _) in zip(pts, pts[1:], strict=False):
        if f0 <= allowance <= f1:
            if f1 <= f0 or f0 <= 0:
                return a1 if allowance >= f1 else a0, g0, n0, False
            t = (math.log(allowance) - math.log(f0)) / (math.log(f1) - math.log(f0))
            gens = math.exp(math.log(g0) + t * (math.log(g1) - math.log(g0))) \
                if g0 > 0 and g1 > 0 else g0 + t * (g1 - g0)
            return a0 + t * (a1 - a0), gens, n0, False
    return None  # unreachable: the allowance lies between the cheapest and the dearest point


# ---- the large model's answers ---------------------------------------------------------------


@dataclass
class LargeRun:
    """The large model's greedy run on the sweep's questions, as stored."""

    run_key: str
    policy: str
    acc: dict[str, float]
    flops: dict[str, float]
    params: float | None
    #: tokens of each question's prompt and answer (what a verifier would read)
    tokens: dict[str, float]
    resumed: int
    computed: int


def sample_large(data: Any, large: str | None, *, generator: Any = None, progress: bool = True,
                 device: str | None = None) -> LargeRun:
    """Greedy answers (temperature 0, one sample) of the large policy on the sweep's questions,
    stored in the sweep's store under the runner's run key: a rerun resumes, a finished one
    loads no model. ``large`` None means the testbed's ``policy-large``; ``generator`` (tests)
    replaces loading it."""
    from ttscale.analysis.progress import SweepProgress
    from ttscale.analysis.sweep import Parts, execute
    from ttscale.config import RunConfig
    from ttscale.session import build_task, resolve_policy, select_problems
    from ttscale.store.sqlite import Store
    from ttscale.strategies.registry import own_options

    base = dict(data.summary["config"])
    base.update(strategy="majority", budget=1, temperature=0.0, out=str(data.out),
                options=own_options("majority", base.get("options") or {}),
                policy=large if large is not None else "testbed:policy-large")
    if device is not None:
        base["device"] = device
    cfg = RunConfig.model_validate(base)
    task = build_task(cfg)
    problems = [p for p in select_problems(task, cfg)]
    by_id = {p.id: p for p in problems}
    lacking = [q for q in data.ids if q not in by_id]
    if lacking:
        raise ValueError(f"sweep {data.out}: question {lacking[0]!r} is not in the task any more;"
                         " the large model must answer the sweep's own questions")
    problems = [by_id[q] for q in data.ids]
    policy = resolve_policy(cfg) if generator is None else str(cfg.policy)
    parts = Parts(cfg, policy, None, generator=generator)
    with Store.in_dir(data.out) as store, SweepProgress(progress) as prog:
        parts.progress, parts.task = prog, task
        stage = execute(store, cfg, problems, task, parts, prog,
                        f"large model greedy ({Path(policy).name})")
        rows = store.results(stage.run_key, set(data.ids))
    total = Cost()
    for r in rows:
        total.add(r.cost)
    return LargeRun(stage.run_key, policy, {r.problem_id: float(bool(r.correct)) for r in rows},
                    {r.problem_id: r.cost.total_flops for r in rows}, params_from_cost(total),
                    {r.problem_id: float(r.cost.prompt_tokens + r.cost.generated_tokens)
                     for r in rows},
                    stage.resumed, stage.computed)
