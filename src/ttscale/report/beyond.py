"""The report's section on the strategies beyond the paper (issue 12): what each one does, and
for the adaptive ones (budget N is only a cap) the realised cost each point sits at.

Kept apart from html.py so the explanations live next to nothing else; only the strategies a
sweep actually ran are explained.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

EXPLAIN: dict[str, str] = {
    "particle-filtering": (
        "Particle filtering (Puri et al. 2025): N partial solutions are particles; after every "
        "step the PRM score of each prefix becomes a weight (softmax of its logit over a "
        "temperature) and the population is resampled to N instead of pruned to the top N/M, "
        "so a prefix the PRM ranks second survives in proportion. N particles count as N "
        "generations; tokens and FLOPs are the real cost of every step."),
    "confidence-vote": (
        "Confidence-weighted voting without a PRM (DeepConf offline, Fu et al. 2025): each of "
        "N samples gets a confidence from the policy's own top-k token log-probabilities "
        "(lowest sliding-window group confidence by default); the least confident are "
        "filtered out and the rest vote, weighted by confidence. Cost: N generations, no "
        "verifier."),
    "deepconf-online": (
        "DeepConf online: a few warm-up traces set a confidence threshold; later traces are "
        "generated step by step and stopped as soon as their confidence falls below it, and "
        "sampling stops once the vote is settled. N is a cap: the point sits at the mean "
        "realised generations (every started trace counts, stopped ones too) and its tokens "
        "and FLOPs are only what was generated."),
    "adaptive": (
        "Adaptive budget without a verifier: samples in rounds and stops a question once its "
        "answer is decided (Adaptive-Consistency's Beta rule, or ESC's unanimous window), "
        "voting by count or by confidence. N is a cap: the point sits at the mean realised "
        "generations, overall and per difficulty bin."),
    "adaptive-prm": (
        "Adaptive budget with the PRM: rounds of samples scored by the PRM, stopping once the "
        "best sample's score reaches a threshold (or by the Beta/ESC rule on PRM-weighted "
        "votes). This is compute-optimal allocation done online per question, with no "
        "difficulty estimate to pay for; N is a cap and the point sits at the realised cost."),
}


def beyond_section(summary: Mapping[str, Any]) -> str:
    """Explanations and realised costs of the issue-12 strategies in this sweep ('' if none)."""
    names = [n for n in summary.get("strategies", []) if n in EXPLAIN]
    if not names:
        return ""
    parts = ["<h2 id='beyond'>Particle filtering, confidence and adaptive budgets</h2>"]
    for name in names:
        parts.append(f"<p><b>{html.escape(name)}</b>: {html.escape(EXPLAIN[name])}</p>")
    rows = []
    for name in names:
        for b in summary["budgets"]:
            e = summary["results"].get(name, {}).get(str(b))
            if e is None or not e.get("adaptive_cost"):
                continue
            gens = e["cost"].get("generations", 0.0)
            by_bin = e.get("generations_by_bin", {}).get("oracle", {})
            cells = "".join(f"<td>{float(by_bin[k]):.1f}</td>" for k in sorted(by_bin))
            rows.append(f"<tr><td>{html.escape(name)}</td><td>{b}</td>"
                        f"<td>{e['accuracy']:.3f}</td><td>{float(gens):.1f}</td>{cells}</tr>")
    if rows:
        labels = sorted(summary.get("bins", {}).get("oracle", {}))
        th = "".join(f"<th>gens bin {html.escape(str(lb))}</th>" for lb in labels)
        parts.append("<p class='note'>Adaptive methods at their realised cost (mean generations "
                     "per question, overall and per oracle bin; the plots place them there):"
                     "</p>")
        parts.append(f"<table class='num'><thead><tr><th>strategy</th><th>cap N</th>"
                     f"<th>accuracy</th><th>mean gens</th>{th}</tr></thead>"
                     f"<tbody>{''.join(rows)}</tbody></table>")
    return "\n".join(parts)
