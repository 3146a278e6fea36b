"""``ttscale report DIR``: one static HTML page from a sweep's ``sweep.json`` and its store.

The page holds the accuracy-vs-budget figures (overall, per oracle difficulty bin, per task
difficulty, and against FLOPs), the numbers behind them, the pool diagnostics that say whether
verifier-guided search can work at all (within-question PRM AUC), and one question's search tree
from a stored beam-search trace. When ``ttscale optimal`` has written ``optimal.json`` /
``flops.json`` into the folder, the page also shows the compute-optimal frontier against
best-of-N and the FLOPs-matched table (sections absent otherwise). Figures are embedded as base64
PNGs, so the single file can be mailed or archived and opens offline in any browser.
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ttscale.analysis.sweep import read_summary
from ttscale.report import plots
from ttscale.report.beyond import beyond_section
from ttscale.report.tree import TREE_CSS, render_tree

REPORT_NAME = "report.html"
#: strategies whose trace is a tree worth drawing, in order of preference
TREE_STRATEGIES = ("beam-m4", "beam-msqrt", "dvts", "lookahead")
#: trees beyond this budget get large; the viewer prefers the largest budget up to it
TREE_BUDGET_CAP = 16


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="fig" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if abs(v) >= 1e5:
            return f"{v:.3g}"
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def accuracy_table(summary: Mapping[str, Any]) -> str:
    budgets = [str(b) for b in summary["budgets"]]
    head = "".join(f"<th>N={b}</th>" for b in budgets)
    rows = []
    for name in summary["strategies"]:
        cells = []
        for b in budgets:
            e = summary["results"].get(name, {}).get(b)
            cells.append("<td>–</td>" if e is None else f"<td>{e['accuracy']:.3f}</td>")
        rows.append(f"<tr><th>{html.escape(name)}</th>{''.join(cells)}</tr>")
    return (f'<table class="num"><thead><tr><th>strategy</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def detail_table(summary: Mapping[str, Any]) -> str:
    """Every (strategy, budget): accuracy overall and per bin, and its mean cost."""
    families = [f for f in ("oracle", "difficulty") if summary.get("bins", {}).get(f)]
    bin_cols = [(f, lb) for f in families for lb in summary["bins"][f]]
    head = ["strategy", "N", "source", "accuracy"]
    head += [f"{'oracle' if f == 'oracle' else 'diff'} {lb}" for f, lb in bin_cols]
    head += ["generations", "gen. tokens", "PRM tokens", "FLOPs", "wall s"]
    rows = []
    for name in summary["strategies"]:
        for b in summary["budgets"]:
            e = summary["results"].get(name, {}).get(str(b))
            if e is None:
                continue
            c = e["cost"]
            cells = [html.escape(name), str(b), html.escape(e.get("source", "")),
                     f"<b>{e['accuracy']:.3f}</b>"]
            cells += [_fmt(e["accuracy_by_bin"].get(f, {}).get(lb)) for f, lb in bin_cols]
            cells += [_fmt(float(c.get("generations", 0)), 1),
                      _fmt(float(c.get("generated_tokens", 0)), 1),
                      _fmt(float(c.get("prm_tokens", 0)), 1),
                      _fmt(float(c.get("total_flops", 0))), _fmt(float(c.get("wall_s", 0)))]
            rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return (f'<table class="num detail"><thead><tr>{th}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def bins_table(summary: Mapping[str, Any]) -> str:
    oracle = summary.get("bins", {}).get("oracle", {})
    rows = "".join(
        f"<tr><td>{html.escape(b)}</td><td>{v['n']}</td><td>{v['pass1_min']:.3f}</td>"
        f"<td>{v['pass1_max']:.3f}</td><td>{v['pass1_mean']:.3f}</td></tr>"
        for b, v in oracle.items())
    return ('<table class="num"><thead><tr><th>oracle bin</th><th>questions</th>'
            "<th>pass@1 min</th><th>max</th><th>mean</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def pool_section(summary: Mapping[str, Any]) -> str:
    p = summary["pool"]
    auc = p.get("within_question_auc")
    auc_txt = "not scored" if auc is None and not p.get("n_auc_questions") else _fmt(auc)
    items = [
        ("samples per question (N_max)", p["budget"]),
        ("pool strategy / run key", f"{p['strategy']} / {p['run_key']}"),
        ("mean pass@1", _fmt(p["mean_pass1"])),
        ("within-question PRM AUC", f"{auc_txt} (over {p.get('n_auc_questions', 0)} questions "
                                    "with both right and wrong samples)"),
        ("distinct answers per question", _fmt(p["distinct_answers_mean"], 2)),
        ("samples without an answer", _fmt(p["no_answer_rate"])),
    ]
    lis = "".join(f"<li><b>{html.escape(k)}:</b> {v}</li>" for k, v in items)
    return (f"<ul>{lis}</ul><p class='note'>Within-question AUC is the chance that the PRM "
            "scores a right sample of a question above a wrong one of the same question; near "
            "0.5 the verifier cannot guide search, whatever its pooled accuracy.</p>")


def skipped_section(summary: Mapping[str, Any]) -> str:
    skipped = summary.get("skipped") or {}
    if not skipped:
        return ""
    lis = "".join(f"<li>{html.escape(s)} at N={html.escape(n)}: {html.escape(why)}</li>"
                  for s, per in skipped.items() for n, why in per.items())
    return f"<h3>Points not run</h3><ul>{lis}</ul>"


# ---- the tree viewer ---------------------------------------------------------------------


def _pick_run(summary: Mapping[str, Any], strategy: str | None,
              budget: int | None) -> tuple[str, int, str] | None:
    """(strategy, budget, run_key) of the tree run to draw, or None when the sweep has none."""
    names = [strategy] if strategy else list(TREE_STRATEGIES)
    for name in names:
        per = summary["results"].get(name, {})
        avail = sorted(int(b) for b, e in per.items() if e.get("source") == "run")
        if not avail:
            if strategy:
                raise ValueError(f"--tree-strategy {strategy!r}: the sweep has no stored tree "
                                 f"run of it (runs: {', '.join(_tree_names(summary)) or 'none'})")
            continue
        if budget is not None:
            if budget not in avail:
                raise ValueError(f"--tree-budget {budget}: {name} ran at N in "
                                 f"{', '.join(map(str, avail))}")
            b = budget
        else:
            small = [x for x in avail if x <= TREE_BUDGET_CAP]
            b = max(small) if small else min(avail)
        return name, b, per[str(b)]["run_key"]
    return None


def _tree_names(summary: Mapping[str, Any]) -> list[str]:
    return [n for n, per in summary["results"].items()
            if any(e.get("source") == "run" for e in per.values())]


def _pick_question(rows: list[Any], summary: Mapping[str, Any], question: str | None) -> Any:
    """The given question, else an informative one: solved by the search, with pruned
    branches, as hard as possible (ties: problem order)."""
    if question is not None:
        for r in rows:
            if r.problem_id == question:
                return r
        raise ValueError(f"--question {question!r} is not among the stored problems of that run")
    obin = {q["id"]: q.get("oracle_bin") or 0 for q in summary.get("questions", [])}

    def pruned(r: Any) -> bool:
        return any(not n.get("kept") and not n.get("finished")
                   for rnd in r.trace for n in rnd.get("nodes", []))

    return max(rows, key=lambda r: (bool(r.correct), pruned(r), obin.get(r.problem_id, 0),
                                     r.difficulty or 0, -(r.idx or 0)))


def _labeler(summary: Mapping[str, Any], question: str) -> Callable[[list[str]], list[bool]] | None:
    if summary.get("task") != "testbed":
        return None
    from ttscale.tasks.testbed import parse_question, step_correctness

    try:
        q = parse_question(question)
    except ValueError:
        return None
    return lambda steps: step_correctness(q, steps)


def tree_section(out: Path, summary: Mapping[str, Any], *, strategy: str | None = None,
                 budget: int | None = None, question: str | None = None) -> str:
    picked = _pick_run(summary, strategy, budget)
    if picked is None:
        return ("<p class='note'>This sweep ran no tree search (beam, DVTS, lookahead), so there "
                "is no tree to show.</p>")
    name, b, key = picked
    db = out / "ttscale.db"  # the folder may have moved since the sweep wrote its db path
    if not db.is_file() and summary.get("db"):
        db = Path(summary["db"])
    if not db.is_file():
        return f"<p class='note'>No store at {html.escape(str(db))}: cannot draw the tree.</p>"
    from ttscale.store.sqlite import Store

    with Store(db) as store:
        rows = [r for r in store.results(key) if r.trace]
    if not rows:
        return (f"<p class='note'>The store has no traced result of {html.escape(name)} at "
                f"N={b} (run key {html.escape(key)}).</p>")
    row = _pick_question(rows, summary, question)
    from ttscale.session import grade_answer

    cache: dict[str, bool] = {}

    def grade(ans: str | None) -> bool:
        if ans is None or row.gold is None:
            return False
        if ans not in cache:
            cache[ans] = grade_answer(ans, row.gold)[0]
        return cache[ans]

    delim = "\n" if summary.get("task") == "testbed" else "\n\n"
    body = render_tree(row.trace, question=row.question or row.problem_id, gold=row.gold,
                       chosen=row.answer, delimiter=delim,
                       step_labels=_labeler(summary, row.question or ""), grade=grade)
    qinfo = next((q for q in summary.get("questions", []) if q["id"] == row.problem_id), {})
    verdict = "right" if row.correct else "wrong"
    head = (f"<p><b>{html.escape(name)}</b> at N={b}, question <code>"
            f"{html.escape(row.problem_id)}</code> (difficulty {_fmt(row.difficulty)}, oracle bin "
            f"{_fmt(qinfo.get('oracle_bin'))}, pool pass@1 {_fmt(qinfo.get('pass1'))}): chose "
            f"<b>{_fmt(row.answer)}</b>, gold <b>{_fmt(row.gold)}</b>: {verdict}.</p>")
    legend = ("<p class='legend'><span class='node kept'>kept</span> expanded next round · "
              "<span class='node pruned'>pruned</span> dropped · "
              "<span class='node finished ok'>finished ✓</span> / "
              "<span class='node finished bad'>finished ✗</span> answer graded against gold · "
              "★ the chosen answer · score = PRM score the search ranked by"
              + (" · ✓/✗ before a step: its exact label" if summary.get("task") == "testbed"
                 else "") + "</p>")
    return head + legend + body


# ---- compute-optimal and FLOPs-matched (present when `ttscale optimal` has run) -----------


def optimal_section(optimal: Mapping[str, Any] | None) -> str:
    """Frontier figure and the matches of best-of-N, from ``optimal.json``; empty if absent."""
    if not optimal:
        return ""
    rows = []
    for kind, per in optimal.get("bins", {}).items():
        for target, m in per.get("matches", {}).items():
            boot = m.get("bootstrap") or {}
            gens = m.get("matched_generations")
            at = "not reached" if gens is None else (
                f"{'≤ ' if m.get('bound') else ''}{gens:.1f}")
            ratio = "–" if m.get("ratio") is None else (
                f"{'≥ ' if m.get('bound') else ''}{m['ratio']:.2f}×")
            spread = (f"{boot['ratio_p05']:.2f}–{boot['ratio_p95']:.2f} "
                      f"(reached {boot['reached']:.0%})" if boot.get("n") else "–")
            fr = m.get("flops_ratio")
            cells = [html.escape(kind), f"N={html.escape(str(target))}",
                     _fmt(m.get("baseline_accuracy")), at, ratio, spread,
                     "–" if fr is None else f"{fr:.2f}×"]
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in (
        "bins", "best-of-N at", "its accuracy", "compute-optimal matches at (generations)",
        "efficiency ratio", "bootstrap 5–95%", "FLOPs ratio"))
    table = (f'<table class="num"><thead><tr>{head}</tr></thead>'
             f"<tbody>{''.join(rows)}</tbody></table>")
    note = (f"<p class='note'>Compute-optimal = the strategy chosen per (difficulty bin, budget) "
            f"on one half of the questions and scored on the other (2-fold cross-validation, "
            f"{optimal.get('n_problems')} questions). Its cost includes estimating difficulty: "
            f"a probe of k={optimal.get('probe_k')} PRM-scored samples per question, reused by "
            f"majority/best-of-N. Baseline: {html.escape(str(optimal.get('baseline')))}. "
            f"Ratio = best-of-N's budget / the generations at which compute-optimal reaches its "
            f"accuracy; bootstrap over questions. Policy table: "
            f"{html.escape(str(optimal.get('table', '–')))}.</p>")
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in optimal.get("notes", []))
    return ("<h2 id='optimal'>Compute-optimal vs best-of-N</h2>"
            + _img(plots.optimal_frontier(optimal), "compute-optimal frontier vs best-of-N")
            + table + note + groups_table(optimal)
            + (f"<ul class='note'>{notes}</ul>" if notes else ""))


def groups_table(optimal: Mapping[str, Any]) -> str:
    """Every group of arms (by sampler) under both protocols, each ratio stated against the
    strongest best-of-N variant of the same sampler (named); empty for an older optimal.json."""
    from ttscale.optimal.analysis import GROUP_COLUMNS, group_rows

    rows = group_rows(optimal)
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in GROUP_COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(r[k])}</td>" for k, _ in GROUP_COLUMNS)
                   + "</tr>" for r in rows)
    return ("<h3>By sampler and protocol</h3><p class='note'>Search arms (base policy + PRM) "
            "against best-of-N of the base policy; revision arms against the revision model's "
            "own parallel sampling (revisions-par). Protocol <i>paper</i>: difficulty estimated "
            "free of charge from the whole sample pool, as in the paper; <i>strict</i>: the "
            "difficulty probe is charged and new questions are binned from its k samples.</p>"
            f'<table class="num"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')


def flops_section(flops: Mapping[str, Any] | None) -> str:
    """The FLOPs-matched table (small + test-time compute vs the larger model), from
    ``flops.json``; empty if absent."""
    if not flops:
        return ""
    head = "".join(f"<th>{h}</th>" for h in (
        "accounting", "R = D<sub>inf</sub>/D<sub>pre</sub>", "X (token multiplier)", "bin",
        "questions", "large greedy", "small generations at the allowance", "small + test-time",
        "Δ accuracy", "winner"))
    rows = []
    for r in [*flops.get("rows", []), *flops.get("paper_rows", [])]:
        gens = r.get("small_generations")
        budget = "–" if r.get("small_budget") is None else (
            (f"{gens:.1f}" if gens is not None else str(r["small_budget"]))
            + ("+" if r.get("capped") else ""))
        delta = "–" if r.get("delta") is None else f"{r['delta']:+.3f}"
        cells = [html.escape(str(r.get("accounting", "strict"))), f"{r['R']:g}",
                 f"{r['multiplier_X']:.1f}", html.escape(str(r["bin"])),
                 str(r["n"]), _fmt(r["large_accuracy"]), budget, _fmt(r.get("small_accuracy")),
                 delta, html.escape(str(r["winner"]))]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    note = (f"<p class='note'>Larger model: {html.escape(str(flops.get('large')))} "
            f"({flops.get('multiplier_M', 0):.1f}× the parameters). At equal pretraining + "
            "inference FLOPs the small model may process X = M + 3(M−1)/R times the large "
            "model's inference tokens; the small side is the cross-validated compute-optimal "
            "policy (oracle bins) read along its curve at exactly that allowance (interpolated "
            "in log FLOPs; +: even the sweep's largest budget fits). Strict accounting: the "
            "small side pays the difficulty probe and its PRM, the large side its own tokens. "
            "Paper accounting: difficulty free, the verifier counted on both sides.</p>")
    return ("<h2 id='flops'>FLOPs-matched comparison</h2>"
            f'<table class="num"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>" + note)


# ---- the page ----------------------------------------------------------------------------

PAGE_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1200px; color: #222; padding: 0 16px; }
h1 { font-size: 22px; } h2 { font-size: 18px; border-bottom: 1px solid #ddd; padding-bottom: 4px;
     margin-top: 28px; } h3 { font-size: 15px; }
img.fig { max-width: 100%; display: block; margin: 8px 0 16px; }
table.num { border-collapse: collapse; font-size: 13px; margin: 8px 0 16px; }
table.num th, table.num td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
table.num th:first-child, table.num td:first-child { text-align: left; }
table.num thead th { background: #f4f4f4; }
table.detail { font-size: 12px; }
.note, .meta { color: #555; font-size: 13px; }
.legend { font-size: 12px; }
"""


def build_report(out: str | Path, *, strategy: str | None = None, budget: int | None = None,
                 question: str | None = None, dest: str | Path | None = None) -> Path:
    """Write the report of the sweep in ``out`` (to ``dest``, default ``out/report.html``)."""
    out = Path(out)
    summary = read_summary(out)
    # the tree first: a bad --question/--tree-* fails before any figure is drawn
    tree = tree_section(out, summary, strategy=strategy, budget=budget, question=question)
    from ttscale.optimal.analysis import FLOPS_NAME, OPTIMAL_NAME, read_optional

    optimal = optimal_section(read_optional(out, OPTIMAL_NAME))
    flops_matched = flops_section(read_optional(out, FLOPS_NAME))
    figs = [(plots.accuracy_vs_budget(summary), "accuracy vs budget")]
    flops = plots.accuracy_vs_flops(summary)
    oracle = plots.accuracy_by_bin(summary, "oracle", "accuracy vs budget per oracle difficulty "
                                   "bin (1 easiest .. 5 hardest, by pool pass@1)")
    diff = plots.accuracy_by_bin(summary, "difficulty", "accuracy vs budget per task difficulty "
                                 f"({summary.get('difficulty_name', 'task difficulty')})")
    title = f"ttscale sweep report: {summary['task']}"
    meta = (f"{summary['n_problems']} questions · budgets "
            f"{', '.join(map(str, summary['budgets']))} · seed {summary['seed']} · aggregation "
            f"{html.escape(str(summary.get('aggregation')))} · store "
            f"{html.escape(str(summary.get('db', '')))} · written "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{PAGE_CSS}{TREE_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p class='meta'>{meta}</p>",
        "<h2 id='accuracy'>Accuracy vs budget</h2>",
        "".join(_img(png, alt) for png, alt in figs),
        accuracy_table(summary),
        "<h2 id='compute'>Accuracy vs compute</h2>", _img(flops, "accuracy vs FLOPs"),
        "<h2 id='bins'>By difficulty</h2>",
        _img(oracle, "accuracy per oracle bin") if oracle else "",
        bins_table(summary),
        _img(diff, "accuracy per task difficulty") if diff else "",
        optimal, flops_matched, beyond_section(summary),
        "<h2 id='numbers'>All numbers</h2>",
        "<p class='note'>Pool strategies are read off one pool of N_max samples per question "
        "(mean over disjoint subsets; oracle = unbiased pass@N); their cost is the expected cost "
        "of N of those samples. Costs are means per question.</p>",
        detail_table(summary), skipped_section(summary),
        "<h2 id='pool'>Sample pool and verifier</h2>", pool_section(summary),
        "<h2 id='tree'>Search tree of one question</h2>", tree,
        "</body></html>",
    ]
    dest_path = Path(dest) if dest is not None else out / REPORT_NAME
    dest_path.parent.mkdir(parents=True, exist_ok=True)
    dest_path.write_text("\n".join(parts), encoding="utf-8")
    return dest_path
