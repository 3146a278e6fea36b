"""Plain-text rendering of the testbed evaluation report (markdown tables)."""

from __future__ import annotations


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def render_report(report: dict) -> str:
    v = report["verifier"]
    lines = [
        f"# Testbed evaluation: {report['n_questions']} held-out questions, pool "
        f"{report['pool']}, seed {report['seed']}",
        "",
        "## Verifier",
        "| metric | PRM | difficulty+position baseline |",
        "|---|---|---|",
    ]
    base = v.get("baseline", {})
    orm = report.get("orm")
    if orm is not None:
        lines[-2:] = ["| metric | PRM | ORM | difficulty+position baseline |", "|---|---|---|---|"]
    for key in ("within_question_auc", "within_question_step_auc", "pooled_step_auc"):
        mid = f" {_fmt(orm['verifier'].get(key))} |" if orm is not None else ""
        lines.append(f"| {key} | {_fmt(v[key])} |{mid} {_fmt(base.get(key))} |")
    lines += [
        f"\nquestions with both correct and incorrect samples: {v['questions_with_both']}; "
        f"distinct texts per question: correct {v['distinct_texts']['correct']:.1f}, "
        f"incorrect {v['distinct_texts']['incorrect']:.1f}",
        "",
        "## Accuracy by budget N and difficulty bin (1 easiest .. 5 hardest, oracle bins)",
    ]
    tables = {**report["pool_accuracy"], **report.get("beam_accuracy", {})}
    if orm is not None:  # PRM vs ORM (paper App. H): the ORM's verifier-read curves
        tables.update({f"{m} (ORM)": per for m, per in orm["pool_accuracy"].items()
                       if m in ("argmax", "weighted")})
    bins = sorted({b for per_n in tables.values() for row in per_n.values() for b in row},
                  key=lambda b: (b != "all", b))
    lines += ["| method | N | " + " | ".join(bins) + " |",
              "|---|---|" + "---|" * len(bins)]
    for method, per_n in tables.items():
        for n, row in sorted(per_n.items(), key=lambda kv: int(kv[0])):
            lines.append(f"| {method} | {n} | " + " | ".join(_fmt(row.get(b)) for b in bins)
                         + " |")
    return "\n".join(lines)
