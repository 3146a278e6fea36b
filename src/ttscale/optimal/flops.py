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

The small side is the cross-validated compute-optimal policy (oracle bins, probe charged) at the
largest sweep budget whose mean FLOPs, over the questions of the bin, fit the allowance of that
bin (``capped`` when even the largest sweep budget fits: the small model could spend more than
the sweep tried). The large side is its greedy accuracy on the same questions, sampled into the
sweep's store (:func:`sample_large`: resumable like every run). Bins are the oracle bins of the
small model's pool over all questions, as in the paper.
"""

from __future__ import annotations

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
            fits = [n for n in budgets if _mean(outcomes[n].flops, qs) <= allowance]
            row: dict[str, Any] = {
                "R": r, "multiplier_X": x, "bin": label, "n": len(qs),
                "large_accuracy": large_a, "large_flops": large_f, "allowance_flops": allowance,
                "small_budget": None, "small_accuracy": None, "small_flops": None,
                "small_choices": {}, "capped": False, "delta": None, "winner": "large",
            }
            if fits:
                n = max(fits)
                o = outcomes[n]
                small_a = _mean(o.acc, qs)
                choices: dict[str, int] = {}
                for q in qs:
                    choices[o.label[q]] = choices.get(o.label[q], 0) + 1
                delta = small_a - large_a
                row.update(small_budget=n, small_accuracy=small_a,
                           small_flops=_mean(o.flops, qs), small_choices=dict(sorted(
                               choices.items())), capped=n == budgets[-1], delta=delta,
                           winner="small+test-time" if delta > 1e-12
                           else "large" if delta < -1e-12 else "tie")
            rows.append(row)
    return rows


# ---- the large model's answers ---------------------------------------------------------------


@dataclass
class LargeRun:
    """The large model's greedy run on the sweep's questions, as stored."""

    run_key: str
    policy: str
    acc: dict[str, float]
    flops: dict[str, float]
    params: float | None
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
                    stage.resumed, stage.computed)
