"""How revisions change answers: correct -> incorrect and incorrect -> correct, per position.

A revision model does not only fix mistakes: Snell et al. 2024 (section 6.1) saw about 38% of
correct answers revised into incorrect ones by theirs, which is why they select over the whole
chain (a verifier or majority vote) instead of trusting the last attempt. This module measures
that for any run of the ``revisions`` or ``combined`` strategy, from ``Result.meta["chains"]``
(each chain's answers in order; for ``combined`` starting with the beam search seed) and the
gold answer; correctness is decided here, by the grader, never by the strategy.

Transition k is from attempt k to attempt k + 1 of a chain (0-based). For each transition:
``correct_to_incorrect / (correct_to_incorrect + correct_to_correct)`` is the share of correct
answers that the revision broke, ``incorrect_to_correct / (incorrect_to_correct +
incorrect_to_incorrect)`` the share of incorrect ones it fixed. An attempt without an answer
(``None``, e.g. malformed text) counts as incorrect.

``ttscale flips OUT`` (:func:`store_flips`) runs this over the runs stored in an output folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ttscale.analysis.bins import sort_labels

Grader = Callable[[list[tuple[str | None, str]]], list[bool]]


@dataclass
class Transitions:
    """Counts of answer changes over one set of transitions (one position, or all)."""

    correct_to_correct: int = 0
    correct_to_incorrect: int = 0
    incorrect_to_correct: int = 0
    incorrect_to_incorrect: int = 0

    def add(self, before: bool, after: bool) -> None:
        if before:
            if after:
                self.correct_to_correct += 1
            else:
                self.correct_to_incorrect += 1
        elif after:
            self.incorrect_to_correct += 1
        else:
            self.incorrect_to_incorrect += 1

    @property
    def n(self) -> int:
        return (self.correct_to_correct + self.correct_to_incorrect + self.incorrect_to_correct
                + self.incorrect_to_incorrect)

    @property
    def correct_turned_incorrect(self) -> float | None:
        """Share of correct answers revised into incorrect ones (None: no correct answer)."""
        base = self.correct_to_correct + self.correct_to_incorrect
        return self.correct_to_incorrect / base if base else None

    @property
    def incorrect_turned_correct(self) -> float | None:
        """Share of incorrect answers revised into correct ones (None: no incorrect answer)."""
        base = self.incorrect_to_correct + self.incorrect_to_incorrect
        return self.incorrect_to_correct / base if base else None

    @property
    def stationary_accuracy(self) -> float | None:
        """The accuracy a long chain settles at if every revision flipped answers at these
        rates (two-state Markov chain: fixed / (fixed + broken)). Below the first attempt's
        accuracy, later attempts are worse than fresh samples, and sequential revisions cannot
        beat parallel sampling at equal budget; None when either rate is unknown."""
        broke, fixed = self.correct_turned_incorrect, self.incorrect_turned_correct
        if broke is None or fixed is None or broke + fixed == 0:
            return None
        return fixed / (fixed + broke)

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "correct_to_correct": self.correct_to_correct,
                "correct_to_incorrect": self.correct_to_incorrect,
                "incorrect_to_correct": self.incorrect_to_correct,
                "incorrect_to_incorrect": self.incorrect_to_incorrect,
                "correct_turned_incorrect": self.correct_turned_incorrect,
                "incorrect_turned_correct": self.incorrect_turned_correct,
                "stationary_accuracy": self.stationary_accuracy}


@dataclass
class RevisionFlips:
    """Transitions per position (``by_position[k]``: attempt k -> k + 1), over all positions,
    and the accuracy of the attempts at each position (``accuracy_by_position[k]``)."""

    by_position: list[Transitions] = field(default_factory=list)
    overall: Transitions = field(default_factory=Transitions)
    accuracy_by_position: list[float] = field(default_factory=list)
    n_chains: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"n_chains": self.n_chains, "overall": self.overall.to_dict(),
                "by_position": [t.to_dict() for t in self.by_position],
                "accuracy_by_position": list(self.accuracy_by_position)}


def flips_from_correctness(chains: Iterable[Sequence[bool]]) -> RevisionFlips:
    """Count transitions over chains of per-attempt correctness (chains may differ in length)."""
    out = RevisionFlips()
    right: list[int] = []
    seen: list[int] = []
    for chain in chains:
        out.n_chains += 1
        for k, ok in enumerate(chain):
            if k == len(seen):
                seen.append(0)
                right.append(0)
            seen[k] += 1
            right[k] += bool(ok)
        for k in range(len(chain) - 1):
            while len(out.by_position) <= k:
                out.by_position.append(Transitions())
            out.by_position[k].add(bool(chain[k]), bool(chain[k + 1]))
            out.overall.add(bool(chain[k]), bool(chain[k + 1]))
    out.accuracy_by_position = [r / s for r, s in zip(right, seen, strict=True)]
    return out


def default_grader(pairs: list[tuple[str | None, str]]) -> list[bool]:
    """The project's grader (``ttscale.grading.grade_many``: fast path, then math-verify in a
    bounded worker); a missing answer is incorrect."""
    from ttscale.grading import grade_many

    return [g.equal for g in grade_many(pairs)]


def _check_chains(chains: object, where: str) -> list[list[str | None]]:
    if not isinstance(chains, list):
        raise ValueError(f"{where}: 'chains' must be a list of chains, got "
                         f"{type(chains).__name__}")
    for i, chain in enumerate(chains):
        if not isinstance(chain, list) or not all(a is None or isinstance(a, str) for a in chain):
            raise ValueError(f"{where}: chain {i} must be a list of answers (strings or null)")
    return chains


def revision_flips(records: Iterable[tuple[Sequence[Sequence[str | None]], str]],
                   grader: Grader | None = None) -> RevisionFlips:
    """Flips over ``records`` = (chains of attempt answers, gold answer), one per problem.

    All answers are graded in one ``grader`` call (default: :func:`default_grader`).
    """
    grade = grader or default_grader
    records = [([list(c) for c in chains], gold) for chains, gold in records]
    pairs = [(a, gold) for chains, gold in records for chain in chains for a in chain]
    verdicts = iter(grade(pairs) if pairs else [])
    correct = [[bool(next(verdicts)) for _ in chain] for chains, _ in records for chain in chains]
    return flips_from_correctness(correct)


def records_from_results(results: Iterable[Any], gold: Mapping[str, str] | None = None
                         ) -> list[tuple[list[list[str | None]], str]]:
    """(chains, gold) of each result of a ``revisions``/``combined`` run.

    ``results``: ``Result`` objects with ``gold`` mapping problem ids to gold answers, or stored
    results (``store.StoredResult``, which carry their ``gold``). A result without
    ``meta["chains"]`` is an error: it did not come from a revision strategy.
    """
    out = []
    for r in results:
        where = f"result {r.problem_id!r}"
        if "chains" not in r.meta:
            raise ValueError(f"{where}: no meta['chains'] (not a revisions/combined result; "
                             f"strategy {r.meta.get('strategy')!r})")
        answer = gold.get(r.problem_id) if gold is not None else getattr(r, "gold", None)
        if answer is None:
            raise ValueError(f"{where}: no gold answer (pass gold={{problem_id: answer}})")
        out.append((_check_chains(r.meta["chains"], where), answer))
    return out


# ---- runs in a store (``ttscale flips``) ---------------------------------------------------

#: strategies whose results carry ``meta["chains"]``
REVISION_STRATEGIES = ("revisions", "combined")


def caching_grader(grader: Grader | None = None) -> Grader:
    """``grader`` that grades each distinct (answer, gold) pair once: the split by difficulty
    then reuses the verdicts of the overall count instead of grading every answer again."""
    grade = grader or default_grader
    cache: dict[tuple[str | None, str], bool] = {}

    def cached(pairs: list[tuple[str | None, str]]) -> list[bool]:
        todo = list(dict.fromkeys(p for p in pairs if p not in cache))
        if todo:
            cache.update(zip(todo, (bool(v) for v in grade(todo)), strict=True))
        return [cache[p] for p in pairs]

    return cached


def run_flips(run: Mapping[str, Any], rows: Sequence[Any], grader: Grader,
              by_difficulty: bool = False) -> dict[str, Any]:
    """The flips of one stored run (``run``: a ``Store.runs()`` entry; ``rows``: its stored
    results), with what identifies it. ``seeded``: position 0 of every chain is the beam search
    seed (``combined``), not an attempt of the revision model."""
    config = run.get("config", {})
    meta = rows[0].meta if rows else {}
    out: dict[str, Any] = {
        "run_key": run["run_key"], "strategy": config.get("strategy"),
        "budget": config.get("budget"), "options": dict(config.get("options") or {}),
        "n_problems": len(rows), "chain_length": meta.get("chain_length"),
        "chains_per_problem": meta.get("n_chains"),
        "seeded": config.get("strategy") == "combined",
        **revision_flips(records_from_results(rows), grader).to_dict(),
    }
    if by_difficulty:
        out["by_difficulty"] = {
            d: {"n_problems": len(group),
                **revision_flips(records_from_results(group), grader).to_dict()}
            for d, group in by_difficulty_label(rows).items()}
    return out


def by_difficulty_label(rows: Sequence[Any]) -> dict[str, list[Any]]:
    """Stored results grouped by the problem's difficulty (``"unknown"`` when it has none),
    easiest first."""
    groups: dict[str, list[Any]] = {}
    for r in rows:
        groups.setdefault("unknown" if r.difficulty is None else str(r.difficulty), []).append(r)
    return {d: groups[d] for d in sort_labels(groups)}


def _describe(runs: Sequence[Mapping[str, Any]], limit: int = 6) -> str:
    """``beam N=4, majority N=16, ...``: what a store holds, for an error message."""
    names = list(dict.fromkeys(f"{r['config'].get('strategy')} N={r['config'].get('budget')}"
                               for r in runs))
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "no runs"


def pick_revision_runs(runs: Sequence[Mapping[str, Any]], run_key: str | None,
                       where: str) -> list[Mapping[str, Any]]:
    """The runs to analyse: the one named by ``run_key``, else every revisions/combined run.

    One-line errors name what the store does hold, so the fix is in the message."""
    revision_runs = [r for r in runs if r["config"].get("strategy") in REVISION_STRATEGIES]
    if run_key is not None:
        match = [r for r in runs if r["run_key"] == run_key]
        if not match:
            keys = ", ".join(r["run_key"] for r in revision_runs) or "none"
            raise LookupError(f"no run with key {run_key!r} in {where} (its revisions/combined "
                              f"runs: {keys})")
        strategy = match[0]["config"].get("strategy")
        if strategy not in REVISION_STRATEGIES:
            raise ValueError(f"run {run_key} in {where} is a {strategy!r} run; flips need a "
                             "revisions or combined run (its results list each chain's answers)")
        return match
    if not revision_runs:
        raise ValueError(f"no revisions or combined run in {where} (it holds: {_describe(runs)});"
                         " run one, e.g. `ttscale run --strategy revisions` or `ttscale sweep "
                         "--strategies revisions`, with this --out")
    return revision_runs


def run_task(run: Mapping[str, Any]) -> Any:
    """The task a stored run solved, rebuilt from its stored configuration."""
    from ttscale.config import RunConfig
    from ttscale.session import build_task

    fields = {k: v for k, v in run["config"].items() if k in RunConfig.model_fields}
    return build_task(RunConfig.model_validate(fields))


def store_flips(out: str | Path, run_key: str | None = None, by_difficulty: bool = False,
                grader: Grader | None = None, locality: bool = False) -> dict[str, Any]:
    """Flips of every revisions/combined run stored in the output folder ``out`` (of a ``ttscale
    run`` or ``ttscale sweep``), or of the run ``run_key``; answers are graded once.
    ``locality``: also where each revision changed the attempt before it
    (``revision_locality``; tasks with step labels)."""
    from ttscale.store.sqlite import DB_NAME, Store

    out = Path(out)
    db = out / DB_NAME
    if not out.is_dir():
        raise FileNotFoundError(f"{out} is not a folder; give the --out folder of a `ttscale "
                                "run` or `ttscale sweep`")
    if not db.is_file():
        raise FileNotFoundError(f"no {DB_NAME} in {out}; give the --out folder of a `ttscale "
                                "run` or `ttscale sweep`")
    with Store(db) as store:
        runs = pick_revision_runs(store.runs(), run_key, str(db))
        rows = {r["run_key"]: store.results(r["run_key"]) for r in runs}
    grade = caching_grader(grader)
    report = [run_flips(r, rows[r["run_key"]], grade, by_difficulty) for r in runs]
    if locality:
        from ttscale.analysis.revision_locality import store_locality

        where = store_locality(runs, rows, run_task)
        for r in report:
            r["locality"] = where[r["run_key"]]
    return {"out": str(out), "db": str(db), "runs": report}
