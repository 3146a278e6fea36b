"""Where a revision changes the attempt before it, measured with the task's step labels.

Snell et al. 2024 (section 6.1) train the revision model on trajectories whose last wrong
attempt is close to the right answer, so that it learns to correct locally; sequential revisions
beat parallel sampling only if it does (it must keep what is right and fix what is wrong). The
flip shares (``revisions.py``) say how often answers change; this says *where* the text
changes, for tasks that label each step (the testbed: ``task.step_labels``).

For each revision (attempt k -> k + 1 of a chain), with ``j`` the index of the first wrong step
of attempt k and ``p`` the number of leading steps the two attempts share:

* attempt k step-correct: ``right_kept`` (copied whole) or ``right_changed``;
* attempt k wrong from its first step (``j == 0``): ``wrong_first_step`` (any rewrite fixes the
  right step, so it says nothing about locality);
* otherwise ``wrong_before`` (``p < j``: a right step was changed too), ``wrong_at`` (``p == j``:
  the right prefix kept and the first wrong step changed: a local correction) or ``wrong_after``
  (``p > j``: the wrong step was copied).

``ttscale flips OUT --locality`` runs this over the revision runs stored in an output folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

StepLabels = Callable[[list[str]], list[bool]]


@dataclass
class Locality:
    """Counts of where revisions changed the attempt before them."""

    right_kept: int = 0
    right_changed: int = 0
    wrong_first_step: int = 0
    wrong_before: int = 0
    wrong_at: int = 0
    wrong_after: int = 0

    def add(self, before: Sequence[str], labels: Sequence[bool], after: Sequence[str]) -> None:
        """One revision: ``before``'s steps and their labels, then ``after``'s steps."""
        if all(labels) and before:
            if list(before) == list(after):
                self.right_kept += 1
            else:
                self.right_changed += 1
            return
        j = next((i for i, ok in enumerate(labels) if not ok), len(labels))
        if j == 0:
            self.wrong_first_step += 1
            return
        p = 0
        while p < min(len(before), len(after)) and before[p] == after[p]:
            p += 1
        if p < j:
            self.wrong_before += 1
        elif p == j:
            self.wrong_at += 1
        else:
            self.wrong_after += 1

    def to_dict(self) -> dict[str, Any]:
        right = self.right_kept + self.right_changed
        located = self.wrong_before + self.wrong_at + self.wrong_after
        return {**self.__dict__,
                "right_kept_share": self.right_kept / right if right else None,
                "local_correction_share": self.wrong_at / located if located else None,
                "wrong_before_share": self.wrong_before / located if located else None,
                "wrong_after_share": self.wrong_after / located if located else None}


def chain_locality(chains: Sequence[Sequence[Sequence[str]]], labels: StepLabels,
                   into: Locality | None = None) -> Locality:
    """Locality of every revision in ``chains`` (each a list of attempts' steps, in order)."""
    out = into or Locality()
    for chain in chains:
        for before, after in pairwise(chain):
            out.add(before, labels(list(before)), after)
    return out


def result_chains(candidates: Sequence[Any],
                  meta: dict[str, Any] | None = None) -> list[list[list[str]]]:
    """A revisions/combined result's chains (``meta["chain"]``, ordered by
    ``meta["attempt"]``), each attempt as its steps; a ``combined`` chain starts with its beam
    search seed (the result's ``meta["chain_seeds"]`` names the seed nodes), as in the flips."""
    chains: dict[int, list[Any]] = {}
    for c in candidates:
        if "chain" in c.meta and "attempt" in c.meta:
            chains.setdefault(c.meta["chain"], []).append(c)
    by_node = {c.meta.get("node"): c for c in candidates}
    seeds = (meta or {}).get("chain_seeds") or []
    out = []
    for index, chain in sorted(chains.items()):
        attempts = [list(c.steps) for c in sorted(chain, key=lambda c: c.meta["attempt"])]
        seed = by_node.get(seeds[index]) if index < len(seeds) else None
        out.append(([list(seed.steps)] if seed is not None else []) + attempts)
    return out


def store_locality(runs: Sequence[dict[str, Any]], rows: dict[str, Sequence[Any]],
                   task_of: Callable[[dict[str, Any]], Any]) -> dict[str, dict[str, Any]]:
    """Locality per stored revision run (``rows``: its stored results; ``task_of(run)``: the
    run's task, which must label steps)."""
    out = {}
    for run in runs:
        task = task_of(run)
        step_labels = getattr(task, "step_labels", None)
        if step_labels is None:
            raise ValueError(f"task {getattr(task, 'name', '?')!r} of run {run['run_key']} has "
                             "no step labels; --locality needs a task that labels steps "
                             "(e.g. the testbed)")
        problems = {p.id: p for p in task.problems()}
        loc = Locality()
        for row in rows[run["run_key"]]:
            problem = problems.get(row.problem_id)
            if problem is None:
                raise LookupError(f"problem {row.problem_id!r} of run {run['run_key']} is not "
                                  "in its task")
            chain_locality(result_chains(row.candidates, row.meta),
                           lambda steps, p=problem, f=step_labels: list(f(p, steps)), loc)
        out[run["run_key"]] = loc.to_dict()
    return out
