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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ttscale.analysis.bins import N_BINS, oracle_bins
from ttscale.optimal.data import Points, SweepData, baseline_label
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


#: the two protocols, side by side: ``paper`` estimates difficulty free of charge from the whole
#: sample pool (oracle: pass@1 of the pool; predicted: the pool's mean PRM score), as the paper
#: does; ``strict`` charges the difficulty probe (k samples, PRM-scored) to every question and
#: bins new questions by the probe's k-sample mean
PROTOCOLS = ("paper", "strict")
#: arms grouped by the model that samples (``Arm.sampler``); ``mixed`` (every arm) only when
#: asked for
GROUPS = {"search": ("policy",), "revisions": ("revision",),
          "mixed": ("policy", "revision", "mixed")}
DEFAULT_GROUPS = ("search", "revisions")


def make_binner(kind: str, data: SweepData, k: int, n_bins: int = N_BINS,
                protocol: str = "strict") -> Binner:
    if kind == "oracle":
        return OracleBinner(data.pass1, n_bins)
    if kind == "predicted":
        assign = data.pool_mean() if protocol == "paper" else data.probe_scores(k)
        return PredictedBinner(data.pool_mean(), assign, n_bins)
    raise ValueError(f"--bins {kind!r}: choose oracle or predicted")


def protocol_points(data: SweepData, protocol: str, k: int, reuse: bool) -> Points:
    """The points of a protocol: the probe charged (strict) or difficulty free (paper)."""
    if protocol == "strict":
        return data.charged_points(k, reuse)
    if protocol == "paper":
        return dict(data.points)
    raise ValueError(f"protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")


def group_points(data: SweepData, points: Points, group: str) -> Points:
    """The points of the arms whose sampler belongs to ``group``."""
    samplers = GROUPS[group]
    return {key: pt for key, pt in points.items() if data.arms[key[0]].sampler in samplers}


def baseline_labels(data: SweepData, group: str) -> list[str]:
    """The baselines of a group (the strongest of them at each budget is the one a ratio is
    stated against): best-of-N of the base policy, argmax and weighted, for search; the revision
    model's own fully parallel sampling (``revisions-par``, chains of one) for revisions; all of
    them (the strongest single-sampler curve) for a mixed table."""
    how = data.summary.get("aggregation", "last")
    search = [f"{b}/{how}" for b in ("best-of-n", "weighted-best-of-n")
              if f"{b}/{how}" in data.arms]
    revision = [label for label in ("revisions-par",) if label in data.arms]
    if group == "search":
        return search
    if group == "revisions":
        return revision
    return search + revision


def cross_validated(data: SweepData, kind: str, k: int = PROBE_K, reuse: bool = True,
                    seed: int = 0, *, protocol: str = "strict",
                    group: str = "search") -> CrossValidation:
    """The cross-validated compute-optimal outcomes of one group of arms under one protocol
    (default: the strict one, probe charged, search arms)."""
    points = group_points(data, protocol_points(data, protocol, k, reuse), group)
    budgets = [n for n in data.budgets if any(key[1] == n for key in points)]
    if not budgets:
        raise ValueError(f"sweep {data.out}: no {group} arm has results")
    return cross_validate(points, budgets, data.ids,
                          make_binner(kind, data, k, protocol=protocol), seed)


def strongest_match(cv: CrossValidation, data: SweepData, labels: Sequence[str], target: int,
                    n_boot: int, seed: int) -> dict[str, Any] | None:
    """The match of ``target`` against the strongest baseline at that budget (the highest
    accuracy among ``labels``), named, with every variant's ratio beside it (``vs``)."""
    found = []
    for label in labels:
        if (label, target) not in data.points:
            continue
        fr = Frontier(cv.pooled, data.points, label, cv.budgets, data.ids)
        found.append((fr.efficiency(target), fr))
    if not found:
        return None
    best, fr = max(found, key=lambda x: x[0]["baseline_accuracy"])
    out = {**best, "baseline_kind": "strongest best-of-N of the same sampler",
           "vs": {e["baseline"]: {"baseline_accuracy": e["baseline_accuracy"],
                                  "ratio": e["ratio"], "flops_ratio": e["flops_ratio"],
                                  "bound": e["bound"]} for e, _ in found}}
    out["bootstrap"] = fr.bootstrap(target, n_boot, seed)
    return out


def analyze(data: SweepData, *, k: int = PROBE_K, reuse: bool = True,
            baseline: str = "weighted-best-of-n", targets: Sequence[int] = TARGETS,
            n_boot: int = 200, seed: int = 0,
            kinds: Sequence[str] = BIN_KINDS,
            groups: Sequence[str] = DEFAULT_GROUPS) -> dict[str, Any]:
    """Everything ``ttscale optimal`` prints and ``optimal.json`` holds.

    ``bins`` (the strict protocol, search arms, against ``baseline``) keeps the earlier layout
    for readers of it; ``groups`` holds, per group of arms (``GROUPS``) and protocol
    (``PROTOCOLS``) and bin kind, the match of every target against the strongest best-of-N
    variant of the same sampler (``strongest_match``)."""
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
    search_labels = baseline_labels(data, "search")
    for kind in kinds:
        cv = cross_validated(data, kind, k, reuse, seed)
        fr = Frontier(cv.pooled, data.points, base, cv.budgets, data.ids)
        matches = {}
        for t in targets:
            if t in data.budgets:
                m = {**fr.efficiency(t), "bootstrap": fr.bootstrap(t, n_boot, seed)}
                strong = strongest_match(cv, data, search_labels, t, 0, seed)
                if strong is not None:
                    m["strongest"] = {key: strong[key] for key in (
                        "baseline", "baseline_accuracy", "ratio", "flops_ratio", "bound")}
                matches[str(t)] = m
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
    result["groups"] = analyze_groups(data, k=k, reuse=reuse, targets=targets, n_boot=n_boot,
                                      seed=seed, kinds=kinds, groups=groups, notes=notes)
    return result


def analyze_groups(data: SweepData, *, k: int, reuse: bool, targets: Sequence[int],
                   n_boot: int, seed: int, kinds: Sequence[str], groups: Sequence[str],
                   notes: list[str]) -> dict[str, Any]:
    """Per group, protocol and bin kind: the cross-validated curve and every target's match
    against the group's strongest baseline (named). A group without arms or without a
    baseline is left out with a note."""
    out: dict[str, Any] = {}
    for group in groups:
        if group not in GROUPS:
            raise ValueError(f"group {group!r}: choose from {', '.join(GROUPS)}")
        labels = baseline_labels(data, group)
        arms = [a for a in data.arms.values() if a.sampler in GROUPS[group]]
        if not arms or not labels:
            what = "arms" if not arms else "baseline (" + (
                "revisions-par: run the sweep with --strategies revisions"
                if group == "revisions" else "a PRM-scored pool") + ")"
            notes.append(f"group {group}: no {what}; not analysed")
            continue
        per_group: dict[str, Any] = {"baselines": labels,
                                     "arms": sorted(a.label for a in arms)}
        for protocol in PROTOCOLS:
            per_protocol: dict[str, Any] = {}
            for kind in kinds:
                cv = cross_validated(data, kind, k, reuse, seed, protocol=protocol,
                                     group=group)
                matches = {}
                for t in targets:
                    m = strongest_match(cv, data, labels, t, n_boot, seed)
                    if m is not None:
                        matches[str(t)] = m
                per_protocol[kind] = {"pooled": cv.curve(), "matches": matches}
            per_group[protocol] = per_protocol
        out[group] = per_group
    return out


def ratio_text(m: Mapping[str, Any], key: str = "ratio") -> str:
    """``4.80x``, ``>=4.80x`` (a bound) or ``not reached``."""
    r = m.get(key)
    if r is None:
        return "not reached"
    return f"{'>=' if m.get('bound') else ''}{r:.2f}x"


def group_rows(result: Mapping[str, Any]) -> list[dict[str, str]]:
    """One printable row per (group, protocol, bins, target) of ``result["groups"]``: the ratio
    against the strongest best-of-N variant of the same sampler, named, and the ratio against
    each other variant beside it (what the CLI, the bench and the report print)."""
    rows = []
    for group, per_group in result.get("groups", {}).items():
        for protocol in PROTOCOLS:
            for kind, per in per_group.get(protocol, {}).items():
                for target, m in per.get("matches", {}).items():
                    gens = m.get("matched_generations")
                    others = ", ".join(f"{label} {ratio_text(v)}" for label, v in
                                       m.get("vs", {}).items() if label != m["baseline"])
                    boot = m.get("bootstrap") or {}
                    rows.append({
                        "group": group, "protocol": protocol, "bins": kind,
                        "target": f"N={target}", "baseline": str(m["baseline"]),
                        "baseline_accuracy": f"{m['baseline_accuracy']:.3f}",
                        "matched": "-" if gens is None else
                        f"{'<=' if m.get('bound') else ''}{gens:.1f}",
                        "ratio": ratio_text(m), "flops_ratio": ratio_text(m, "flops_ratio"),
                        "bootstrap": (f"{boot['ratio_p05']:.2f}-{boot['ratio_p95']:.2f}"
                                      if boot.get("n") else "-"),
                        "others": others or "-"})
    return rows


GROUP_COLUMNS = (("group", "group"), ("protocol", "protocol"), ("bins", "bins"),
                 ("target", "best-of-N at"), ("baseline", "strongest baseline"),
                 ("baseline_accuracy", "its accuracy"), ("matched", "matched at (gen.)"),
                 ("ratio", "ratio (gen.)"), ("bootstrap", "bootstrap 5-95%"),
                 ("flops_ratio", "ratio (FLOPs)"), ("others", "vs the other variant"))


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
            "fallback": c.fallback,
            **({"run_budget": data.points[(c.label, n)].run_budget}
               if data.points[(c.label, n)].run_budget else {})}
            for n, c in per.items()} for b, per in policy.items()},
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
