"""Matplotlib figures of a sweep summary, returned as PNG bytes (embedded in the HTML report).

Why PNG bytes and the Agg backend: the report must be one static file that opens anywhere
(no JavaScript, no display, no server); base64 PNGs embed in it and render in any browser.
Every strategy keeps one colour across all panels so curves can be followed between them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

#: fixed colours (matplotlib's tab10) so a strategy looks the same in every figure and report
COLORS = {
    "oracle": "#7f7f7f",
    "majority": "#1f77b4",
    "best-of-n": "#ff7f0e",
    "weighted-best-of-n": "#2ca02c",
    "beam-m4": "#d62728",
    "beam-msqrt": "#9467bd",
    "dvts": "#8c564b",
    "lookahead": "#e377c2",
    # revision ratios: one hue, parallel (light) to sequential (dark); combined stands apart
    "revisions-par": "#17becf",
    "revisions-l4": "#0f8f9c",
    "revisions-sqrt": "#0a626b",
    "revisions-seq": "#05373c",
    "combined": "#000000",
}
_EXTRA = ["#17becf", "#bcbd22", "#393b79", "#637939"]


def color_of(name: str, names: Sequence[str] = ()) -> str:
    if name in COLORS:
        return COLORS[name]
    others = [n for n in names if n not in COLORS]
    return _EXTRA[others.index(name) % len(_EXTRA)] if name in others else "#000000"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def _series(summary: Mapping[str, Any], name: str, value: Any,
            bin_key: tuple[str, str] | None = None) -> tuple[list[float], list[float]]:
    """(generations, values) of one strategy, budgets where it has a point only.

    A point sits at its mean generations per question, not at its budget N: lookahead search
    with N beams costs N x (k + 1) generations (the paper's accounting), an adaptive strategy
    (N is only its cap) its realised mean, overall or in the bin ``bin_key`` = (family, label);
    for every other strategy the two are equal."""
    xs, ys = [], []
    for b in summary["budgets"]:
        e = summary["results"].get(name, {}).get(str(b))
        if e is None:
            continue
        v = value(e)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        gens = e.get("cost", {}).get("generations")
        x: Any = float(gens) if gens else float(b)
        if e.get("adaptive_cost") and bin_key:
            x = e.get("generations_by_bin", {}).get(bin_key[0], {}).get(bin_key[1])
            if not x:
                continue
        xs.append(float(x))
        ys.append(float(v))
    return xs, ys


MARKERS = "osD^vP*Xh<>"


def _style(name: str, names: Sequence[str]) -> dict[str, Any]:
    oracle = name == "oracle"
    i = list(names).index(name) if name in names else 0
    return {"color": color_of(name, names), "marker": None if oracle else MARKERS[i % 11],
            "linestyle": "--" if oracle else "-", "linewidth": 1.4 if oracle else 1.8,
            "markersize": 5, "alpha": 0.9, "label": "oracle pass@N" if oracle else name}


def _dodge(xs: Sequence[float], name: str, names: Sequence[str]) -> list[float]:
    """Shift a strategy's points a little sideways on the log2 axis, so that strategies with
    equal values (e.g. best-of-N and weighted best-of-N at N=1) stay visible side by side."""
    if name not in names or len(names) < 2:
        return list(xs)
    i = list(names).index(name)
    return [x * 2 ** (0.05 * (i - (len(names) - 1) / 2)) for x in xs]


def _budget_axis(ax: Any, budgets: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(budgets))
    ax.set_xticklabels([str(b) for b in budgets])
    ax.minorticks_off()
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)


def accuracy_vs_budget(summary: Mapping[str, Any]) -> bytes:
    """Accuracy against budget N (log2 axis), one line per strategy, all questions."""
    plt = _pyplot()
    names = summary["strategies"]
    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    for name in names:
        xs, ys = _series(summary, name, lambda e: e["accuracy"])
        if xs:
            ax.plot(_dodge(xs, name, names), ys, **_style(name, names))
    _budget_axis(ax, summary["budgets"])
    ax.set_xlabel("generations per question (log2; lookahead at N x (k+1), adaptive methods at "
                  "their mean realised generations)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{summary['task']}: accuracy vs budget ({summary['n_problems']} questions)")
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


def accuracy_by_bin(summary: Mapping[str, Any], family: str, title: str) -> bytes | None:
    """One panel per difficulty bin of ``family`` ("oracle" or "difficulty"); None if absent."""
    bins = summary.get("bins", {}).get(family)
    if not bins:
        return None
    plt = _pyplot()
    labels = list(bins)
    names = summary["strategies"]
    cols = min(len(labels), 5)
    rows = math.ceil(len(labels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols, 2.7 * rows), sharey=True,
                             squeeze=False)
    for i, label in enumerate(labels):
        ax = axes[i // cols][i % cols]
        for name in names:
            xs, ys = _series(summary, name,
                             lambda e, lb=label: e["accuracy_by_bin"].get(family, {}).get(lb),
                             (family, label))
            if xs:
                ax.plot(_dodge(xs, name, names), ys, **_style(name, names))
        _budget_axis(ax, summary["budgets"])
        info = bins[label]
        extra = (f", pass@1 {info['pass1_min']:.2f}-{info['pass1_max']:.2f}"
                 if "pass1_min" in info else "")
        name = "bin" if family == "oracle" else "difficulty"
        ax.set_title(f"{name} {label} (n={info['n']}{extra})", fontsize=9)
        ax.tick_params(labelsize=8)
        if i % cols == 0:
            ax.set_ylabel("accuracy")
        if i // cols == rows - 1:
            ax.set_xlabel("generations (log2)")
    for j in range(len(labels), rows * cols):
        axes[j // cols][j % cols].axis("off")
    seen: dict[str, Any] = {}
    for row in axes:
        for ax in row:
            for h, lb in zip(*ax.get_legend_handles_labels(), strict=True):
                seen.setdefault(lb, h)
    leg_labels = list(seen)
    handles = [seen[lb] for lb in leg_labels]
    fig.legend(handles, leg_labels, loc="lower center", ncol=min(len(leg_labels), 8),
               fontsize=8, bbox_to_anchor=(0.5, -0.02 - 0.04 / rows))
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.06 / rows, 1, 1))
    return _png(fig)


def accuracy_vs_flops(summary: Mapping[str, Any]) -> bytes:
    """Accuracy against mean total FLOPs per question (log axis): budgets compared by compute,
    since a beam-search generation and a best-of-N sample do not cost the same."""
    plt = _pyplot()
    names = summary["strategies"]
    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    for name in names:
        if name == "oracle":
            continue
        pts = []
        for b in summary["budgets"]:
            e = summary["results"].get(name, {}).get(str(b))
            if e is not None and e["cost"].get("total_flops", 0) > 0:
                pts.append((e["cost"]["total_flops"], e["accuracy"], b))
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], **_style(name, names))
            for x, y, b in pts:
                ax.annotate(f"{b}", (x, y), textcoords="offset points", xytext=(3, 3),
                            fontsize=7, color=color_of(name, names))
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("mean FLOPs per question (policy + PRM, log)")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy vs compute (labels: N)")
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


# ---- compute-optimal (``ttscale optimal`` writes optimal.json beside sweep.json) ------------

#: colours of the compute-optimal curves (bins kind) against the best-of-N baseline
OPTIMAL_COLORS = {"oracle": "#d62728", "predicted": "#9467bd"}


def optimal_frontier(optimal: Mapping[str, Any]) -> bytes:
    """The cross-validated compute-optimal curves (oracle and predicted bins, difficulty probe
    charged) against best-of-N: accuracy vs mean generations per question (left) and vs mean
    FLOPs (right); each match of best-of-N's accuracy at a target budget is marked."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.2))
    base = optimal.get("baseline_curve", [])
    for ax, key, xlabel in ((axes[0], "generations", "mean generations per question (log2, "
                             "probe included)"),
                            (axes[1], "flops", "mean FLOPs per question (log)")):
        if base:
            ax.plot([p[key] for p in base], [p["accuracy"] for p in base], marker="o",
                    color=color_of("weighted-best-of-n"), label=str(optimal.get("baseline")))
            for p in base:
                ax.annotate(str(p["budget"]), (p[key], p["accuracy"]), textcoords="offset points",
                            xytext=(3, -9), fontsize=7, color=color_of("weighted-best-of-n"))
        for kind, per in optimal.get("bins", {}).items():
            pts = per.get("pooled", [])
            color = OPTIMAL_COLORS.get(kind, "#000000")
            ax.plot([p[key] for p in pts], [p["accuracy"] for p in pts], marker="s",
                    color=color, label=f"compute-optimal ({kind} bins, cross-validated)")
            for p in pts:
                ax.annotate(str(p["budget"]), (p[key], p["accuracy"]),
                            textcoords="offset points", xytext=(3, 3), fontsize=7, color=color)
            for m in per.get("matches", {}).values():
                x = m.get("matched_generations" if key == "generations" else "matched_flops")
                if x:
                    ax.plot([x], [m["baseline_accuracy"]], marker="*", markersize=11,
                            color=color, linestyle="none")
        if key == "generations":
            ax.set_xscale("log", base=2)
        else:
            ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle("compute-optimal frontier vs best-of-N (labels: budget N; ★ matches best-of-N "
                 "at a target budget)", fontsize=10)
    fig.tight_layout()
    return _png(fig)
