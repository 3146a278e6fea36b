"""``ttscale optimal`` end to end: cross-validated compute-optimal curves for oracle and predicted
bins, the efficiency ratio against best-of-N, and the policy table for deployment.

Two products, kept apart on purpose:

* the **numbers** (``optimal.json`` in the sweep folder, read by ``ttscale report``) come from
  2-fold cross-validation (``selection``): each question is judged by a policy selected
  without it, with the difficulty probe charged (``difficulty``);
* the **table** (``--out``) is selected on ALL questions of the sweep (more data for the
  deployed policy; the cross-validated numbers estimate how it does on new questions). Its cut
  points are those of the pool-mean PRM score over all questions, whatever bins it was selected
  with, because that is what a new question can be binned by (the online probe).

One approximation: a pool arm's accuracy at N is the mean over all size-N subsets of the pool,
not only those holding the probe's (first k) samples, so the correlation between a reused probe
and its own bin is ignored.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ttscale.analysis.bins import N_BINS, oracle_bins
from ttscale.optimal.data import SweepData, baseline_label
from ttscale.optimal.difficulty import PROBE_K, STATISTIC, fit_thresholds
from ttscale.optimal.frontier import Frontier, curve_dicts
from ttscale.optimal.selection import (
    Binner,
    CrossValidation,
    OracleBinner,
    PredictedBinner,
    cross_validate,
    policy_to_dict,
    select_policy,
)
from ttscale.strategies.policy_table import SCHEMA_VERSION, PolicyTable, validate_table

#: file name of the analysis in the sweep folder (read by ``ttscale report``)
OPTIMAL_NAME = "optimal.json"
FLOPS_NAME = "flops.json"
BIN_KINDS = ("oracle", "predicted")
TARGETS = (16, 64)
ANALYSIS_VERSION = 1


def make_binner(kind: str, data: SweepData, k: int, n_bins: int = N_BINS) -> Binner:
    if kind == "oracle":
        return OracleBinner(data.pass1, n_bins)
    if kind == "predicted":
        return PredictedBinner(data.pool_mean(), data.probe_scores(k), n_bins)
    raise ValueError(f"--bins {kind!r}: choose oracle or predicted")


def cross_validated(data: SweepData, kind: str, k: int = PROBE_K, reuse: bool = True,
                    seed: int = 0) -> CrossValidation:
    """The cross-validated compute-optimal outcomes with the probe charged."""
    return cross_validate(data.charged_points(k, reuse), data.budgets, data.ids,
                          make_binner(kind, data, k), seed)


def analyze(data: SweepData, *, k: int = PROBE_K, reuse: bool = True,
            baseline: str = "weighted-best-of-n", targets: Sequence[int] = TARGETS,
            n_boot: int = 200, seed: int = 0,
            kinds: Sequence[str] = BIN_KINDS) -> dict[str, Any]:
    """Everything ``ttscale optimal`` prints and ``optimal.json`` holds."""
    base = baseline_label(data, baseline)
    targets = sorted(set(targets))
    notes = list(data.notes)
    for t in targets:
        if t not in data.budgets:
            notes.append(f"best-of-N at N={t}: not a budget of this sweep "
                         f"({', '.join(map(str, data.budgets))}), no match computed")
    result: dict[str, Any] = {
        "version": ANALYSIS_VERSION, "sweep": str(data.out), "task": data.summary.get("task"),
        "n_problems": len(data.ids), "budgets": data.budgets, "probe_k": k, "reuse_probe": reuse,
        "baseline": base, "seed": seed, "n_boot": n_boot,
        "arms": {label: {"strategy": a.strategy, "source": a.source, "options": dict(a.options)}
                 for label, a in data.arms.items()},
        "bins": {}, "notes": notes,
    }
    for kind in kinds:
        cv = cross_validated(data, kind, k, reuse, seed)
        fr = Frontier(cv.pooled, data.points, base, data.budgets, data.ids)
        matches = {}
        for t in targets:
            if t in data.budgets:
                matches[str(t)] = {**fr.efficiency(t), "bootstrap": fr.bootstrap(t, n_boot, seed)}
        result["bins"][kind] = {
            "folds": [{"selection": len(f.selection), "evaluation": len(f.evaluation),
                       "n_bins": f.fitted.n_bins, "thresholds": f.fitted.thresholds,
                       "policy": policy_to_dict(f.policy), "curve": cv.curve(i)}
                      for i, f in enumerate(cv.folds)],
            "fold_mean": _fold_mean(cv),
            "pooled": cv.curve(),
            "matches": matches,
        }
        result["baseline_curve"] = curve_dicts(fr.base_curve())
    return result


def _fold_mean(cv: CrossValidation) -> list[dict[str, float]]:
    """Per budget, the mean of the two folds' accuracies (and costs)."""
    a, b = cv.curve(0), cv.curve(1)
    return [{"budget": x["budget"], "accuracy": (x["accuracy"] + y["accuracy"]) / 2,
             "generations": (x["generations"] + y["generations"]) / 2,
             "flops": (x["flops"] + y["flops"]) / 2} for x, y in zip(a, b, strict=True)]


def build_table(data: SweepData, kind: str, *, k: int = PROBE_K, reuse: bool = True,
                analysis: dict[str, Any] | None = None) -> PolicyTable:
    """The deployable policy, selected on every question of the sweep (module docstring)."""
    points = data.charged_points(k, reuse)
    thresholds = fit_thresholds(data.pool_mean(), N_BINS)
    if kind == "oracle":
        bins = oracle_bins(data.pass1, N_BINS)
    elif kind == "predicted":
        from ttscale.optimal.difficulty import predicted_bins

        bins = predicted_bins(data.pool_mean(), thresholds)
    else:
        raise ValueError(f"--bins {kind!r}: choose oracle or predicted")
    n_bins = len(thresholds) + 1
    policy = select_policy(points, data.budgets, data.ids, bins, n_bins)
    cfg = data.pool_config
    sweep_cfg = data.summary.get("config", {})
    table = {
        "schema_version": SCHEMA_VERSION,
        "task": str(data.summary.get("task")),
        "models": {"policy": cfg.get("policy_resolved") or sweep_cfg.get("policy"),
                   "prm": cfg.get("prm_resolved") or sweep_cfg.get("prm"),
                   "revision": (data.summary.get("revision_resolved")
                                or sweep_cfg.get("revision"))},
        "bins": {"kind": kind, "statistic": STATISTIC, "thresholds": thresholds},
        "probe": {"k": k, "reuse": reuse},
        "budgets": data.budgets,
        "policy": {str(b): {str(n): {
            "strategy": data.arms[c.label].strategy,
            "options": dict(data.points[(c.label, n)].options),
            "label": c.label, "accuracy": c.accuracy, "n_questions": c.n_questions,
            "fallback": c.fallback} for n, c in per.items()} for b, per in policy.items()},
        "sampling": {key: sweep_cfg.get(key) for key in
                     ("temperature", "top_p", "max_step_tokens", "max_solution_tokens",
                      "max_rounds", "seed", "split") if key in sweep_cfg},
        "source": {"sweep": str(data.out), "n_problems": len(data.ids),
                   "pool_run_key": data.summary["pool"]["run_key"],
                   "selected_on": "all questions of the sweep",
                   "cross_validated": _cv_brief(analysis, kind)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    return validate_table(table, "(built from the sweep)")


def _cv_brief(analysis: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    if not analysis or kind not in analysis.get("bins", {}):
        return None
    per = analysis["bins"][kind]
    return {"accuracy": {str(p["budget"]): p["accuracy"] for p in per["pooled"]},
            "ratio": {t: m.get("ratio") for t, m in per["matches"].items()}}


def write_json(path: Path, obj: Any) -> Path:
    """Atomic JSON write (a report never reads half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_optional(out: str | Path, name: str) -> dict[str, Any] | None:
    """``optimal.json`` / ``flops.json`` of a sweep folder, None when absent; a broken file is
    an error naming it."""
    path = Path(out) / name
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data
