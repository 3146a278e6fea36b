"""A static HTML view of one question's search tree, built from a stored ``Result.trace``.

The trace (see ``strategies/common.py``) is one dict per round, each listing the nodes sampled in
that round with ``id``, ``parent`` (0 = the question), ``step``, ``score`` (what the search ranked
by), ``kept``, ``finished`` and ``answer``. Following the parent links gives the tree: every
node is rendered as a nested list item with its step text, its PRM score (coloured red to
green) and what the search did with it: kept (expanded next round), pruned, or finished (with
its answer graded against the gold one). On the testbed each step also shows its exact label,
so a reader sees at a glance where the PRM's ranking and the truth disagree.

Nested ``<details>`` elements make every subtree collapsible without any JavaScript.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ROOT_ID = 0


@dataclass
class TreeNode:
    id: int
    parent: int
    step: str
    score: float | None
    kept: bool
    finished: bool
    answer: str | None
    round: int
    extra: dict[str, Any] = field(default_factory=dict)
    children: list[TreeNode] = field(default_factory=list)
    #: steps from the question to this node (inclusive)
    path: list[str] = field(default_factory=list)
    #: exact label of this node's last step (testbed), None when unknown
    step_ok: bool | None = None


def build_tree(trace: Sequence[Mapping[str, Any]], delimiter: str = "\n") -> dict[int, TreeNode]:
    """Every node of a trace by id, children attached, ``path`` filled; id 0 is the question.

    Raises ValueError naming the node when the trace is malformed (a parent that never
    appeared, a repeated id): a report must not quietly draw a wrong tree.
    """
    nodes: dict[int, TreeNode] = {ROOT_ID: TreeNode(ROOT_ID, -1, "", None, True, False, None, -1)}
    for r_i, rnd in enumerate(trace):
        if not isinstance(rnd, Mapping) or not isinstance(rnd.get("nodes"), list):
            raise ValueError(f"trace round {r_i} has no 'nodes' list")
        for d in rnd["nodes"]:
            try:
                nid, parent = int(d["id"]), int(d["parent"])
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"trace round {r_i}: node without integer id/parent: {d!r}"
                                 ) from e
            if nid in nodes:
                raise ValueError(f"trace round {r_i}: node id {nid} appears twice")
            if parent not in nodes:
                raise ValueError(f"trace round {r_i}: node {nid} has unknown parent {parent}")
            extra = {k: v for k, v in d.items() if k not in
                     ("id", "parent", "step", "score", "kept", "finished", "answer")}
            score = d.get("score")
            node = TreeNode(nid, parent, str(d.get("step") or ""),
                            None if score is None else float(score), bool(d.get("kept")),
                            bool(d.get("finished")), d.get("answer"),
                            int(rnd.get("round", r_i)), extra)
            new = [s for s in node.step.split(delimiter) if s.strip()] if node.step else []
            node.path = nodes[parent].path + new
            nodes[parent].children.append(node)
            nodes[nid] = node
    return nodes


def _score_badge(score: float | None) -> str:
    if score is None:
        return '<span class="score none" title="not scored">–</span>'
    s = min(1.0, max(0.0, score))
    return (f'<span class="score" style="background:hsl({120 * s:.0f},65%,82%)" '
            f'title="PRM score">{score:.3f}</span>')


def _status(node: TreeNode, grade: Callable[[str | None], bool] | None,
            chosen: str | None) -> tuple[str, str]:
    """(css class, label) of what the search did with a node."""
    if node.finished:
        if node.answer is None:
            return "finished bad", "finished, no answer"
        ok = grade(node.answer) if grade is not None else None
        mark = "" if ok is None else (" ✓" if ok else " ✗")
        star = " ★ chosen" if chosen is not None and node.answer == chosen else ""
        return ("finished " + ("ok" if ok else "bad" if ok is not None else "")).strip(), \
            f"answer {node.answer}{mark}{star}"
    if node.kept:
        return "kept", "kept"
    return "pruned", "pruned"


def _node_html(node: TreeNode, grade: Callable[[str | None], bool] | None,
               chosen: str | None) -> str:
    cls, label = _status(node, grade, chosen)
    step = html.escape(node.step) if node.step else "<i>(empty step)</i>"
    truth = ""
    if node.step_ok is not None:
        truth = ('<span class="truth ok" title="exact step label: right">✓</span>' if node.step_ok
                 else '<span class="truth bad" title="exact step label: wrong">✗</span>')
    bits = [f'<span class="node {cls}">', truth, f"<code>{step}</code>",
            _score_badge(node.score), f'<span class="tag">{html.escape(label)}</span>']
    if "subtree" in node.extra:
        bits.append(f'<span class="sub">tree {int(node.extra["subtree"])}</span>')
    rollout = node.extra.get("rollout")
    if rollout:
        bits.append(f'<span class="rollout" title="lookahead rollout">⟶ '
                    f'{html.escape(" | ".join(str(s) for s in rollout))}</span>')
    bits.append("</span>")
    head = "".join(bits)
    if not node.children:
        return f"<li>{head}</li>"
    kids = "".join(_node_html(c, grade, chosen) for c in node.children)
    return f"<li><details open><summary>{head}</summary><ul>{kids}</ul></details></li>"


def render_tree(trace: Sequence[Mapping[str, Any]], *, question: str, gold: str | None,
                chosen: str | None, delimiter: str = "\n",
                step_labels: Callable[[list[str]], list[bool]] | None = None,
                grade: Callable[[str | None], bool] | None = None) -> str:
    """The tree as an HTML fragment (a legend, counts and nested lists)."""
    nodes = build_tree(trace, delimiter)
    if step_labels is not None:
        for n in nodes.values():
            if n.id != ROOT_ID and n.path:
                try:
                    n.step_ok = bool(step_labels(n.path)[-1])
                except (ValueError, IndexError):
                    n.step_ok = None
    inner = list(nodes.values())[1:]
    n_fin = sum(n.finished for n in inner)
    n_kept = sum(n.kept and not n.finished for n in inner)
    counts = (f"{len(inner)} nodes over {len(trace)} rounds: {n_kept} kept, "
              f"{len(inner) - n_kept - n_fin} pruned, {n_fin} finished")
    root = nodes[ROOT_ID]
    kids = "".join(_node_html(c, grade, chosen) for c in root.children)
    q = html.escape(question)
    gold_txt = "" if gold is None else f' <span class="tag">gold {html.escape(str(gold))}</span>'
    return (f'<p class="counts">{html.escape(counts)}</p>'
            f'<ul class="tree"><li><details open><summary><span class="node root">'
            f'<code>{q}</code>{gold_txt}</span></summary><ul>{kids}</ul></details></li></ul>')


TREE_CSS = """
ul.tree, ul.tree ul { list-style: none; margin: 0; padding-left: 1.1em; }
ul.tree li { position: relative; margin: 1px 0; border-left: 1px solid #ccc; padding-left: .6em; }
ul.tree summary { cursor: pointer; }
ul.tree summary::marker { color: #999; }
.node { display: inline-flex; gap: .4em; align-items: baseline; padding: 0 .3em;
        border-radius: 3px; font-size: 13px; }
.node code { white-space: pre; }
.node.pruned { opacity: .55; }
.node.kept { background: #eef5ff; }
.node.finished.ok { background: #e3f6e3; }
.node.finished.bad { background: #fbe7e7; }
.node.root { font-weight: bold; }
.score { font-family: monospace; font-size: 12px; padding: 0 .3em; border-radius: 3px; }
.score.none { background: #eee; }
.tag { font-size: 11px; color: #555; }
.sub { font-size: 11px; color: #8c564b; }
.rollout { font-size: 11px; color: #777; font-family: monospace; }
.truth.ok { color: #1a7f1a; font-weight: bold; }
.truth.bad { color: #c0392b; font-weight: bold; }
.counts { color: #444; }
"""
