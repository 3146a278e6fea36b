"""Run one strategy at one budget over a task, grading and storing every problem as it finishes.

Resume is by construction: each problem's result is committed to ``<out>/ttscale.db`` under a
``run_key`` that hashes every setting that changes results, and a rerun skips the problems already
stored. Strategies derive every engine call's seed from the run seed and the problem id
(``strategies.common.derive_seed``), and each problem gets a fresh context, so a problem's result
does not depend on which problems ran before it in the same process: a resumed run ends with
exactly the results of an uninterrupted one.

The parts (run key, models, the per-problem loop) come from the composition root
(``ttscale.session``); this module is the ``ttscale run`` command's summary and progress bar.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ttscale.config import RunConfig, parse_shard
from ttscale.session import (  # noqa: F401  (fingerprint ... grade_answer: older import paths)
    RESULTS_VERSION,
    Models,
    build_generator,
    build_scorer,
    build_task,
    fingerprint,
    grade_answer,
    is_failed,
    resolve_policy,
    resolve_prm,
    resolve_revision,
    run_key,
    select_problems,
    solve_and_store,
)
from ttscale.store.sqlite import Store, StoredResult
from ttscale.types import Cost


@dataclass
class RunSummary:
    """What ``ttscale run --json`` prints (contract keys: accuracy, n_problems, budget,
    strategy, cost, n_failed)."""

    accuracy: float
    n_problems: int
    n_correct: int
    #: problems that failed on their own (stored with their reason, counted wrong)
    n_failed: int
    budget: int
    strategy: str
    task: str
    cost: dict[str, float]
    accuracy_by_difficulty: dict[str, float] = field(default_factory=dict)
    n_by_difficulty: dict[str, int] = field(default_factory=dict)
    resumed: int = 0
    computed: int = 0
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    run_key: str = ""
    out: str = ""
    db: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- the run -------------------------------------------------------------------------------


def run(config: RunConfig, progress: bool = True, *, generator: Any = None,
        scorer: Any = None, retry_failed: bool = False) -> RunSummary:
    """Solve every selected problem not yet stored for this run, then summarise all of them.

    Cheap checks (strategy name and options, task, model paths) come before any model is
    loaded, and nothing is loaded when every problem is already stored. ``generator``/
    ``scorer``, when given, are used instead of loading ``config.policy``/``config.prm``
    (callers that run many configs share loaded models); the run key still names the configured
    model paths. Problems stored as failed are solved again only with ``retry_failed``.
    """
    from ttscale.strategies.registry import get_spec

    spec = get_spec(config.strategy)
    options = spec.parse(config.options, config.budget)  # a typo fails before any loading
    task = build_task(config)
    problems = select_problems(task, config)
    models = Models(config, resolve_policy(config),
                    resolve_prm(config) if spec.needs_verifier else None,
                    revision=resolve_revision(config) if spec.uses_reviser else None,
                    generator=generator, scorer=scorer)
    models.task = task
    key = run_key(config, models.policy, models.prm, models.revision, options)

    with Store.in_dir(config.out) as store:
        store.ensure_run(key, {**config.model_dump(), "policy_resolved": models.policy,
                               "prm_resolved": models.prm, "revision_resolved": models.revision,
                               "run_key": key})
        # a shard keeps each problem's position in the whole run (idx orders reports)
        index, count = parse_shard(config.shard) if config.shard is not None else (0, 1)
        mine = list(enumerate(problems))[index::count]
        problems = [p for _, p in mine]
        ids = {p.id for p in problems}
        if retry_failed:
            store.forget(key, {r.problem_id for r in store.results(key, ids) if is_failed(r.meta)})
        done = store.done_ids(key)
        todo = [(i, p) for i, p in mine if p.id not in done]
        resumed = len(problems) - len(todo)
        if todo:
            ctx = models.context(spec, config.search_settings(), options)
            stored = store.results(key, ids)
            with _Progress(progress, len(problems), resumed,
                           sum(bool(r.correct) for r in stored), config) as bar:
                solve_and_store(store, key, spec, config.budget, ctx, todo,
                                on_result=lambda _p, r: bar.advance(bool(r.correct)))
        rows = store.results(key, ids)
        return summarize(config, rows, key, resumed, len(todo), store,
                         options.model_dump(mode="json"))


def summarize(config: RunConfig, rows: list[StoredResult], key: str, resumed: int,
              computed: int, store: Store, options: dict[str, Any] | None = None
              ) -> RunSummary:
    total = Cost()
    by_diff: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        total.add(r.cost)
        by_diff["unknown" if r.difficulty is None else str(r.difficulty)].append(bool(r.correct))
    n_correct = sum(bool(r.correct) for r in rows)
    n_failed = sum(is_failed(r.meta) for r in rows)
    order = sorted(by_diff, key=lambda d: (not d.isdigit(), int(d) if d.isdigit() else 0, d))
    cost = total.to_dict()  # every contract key of COST_KEYS, plus total_flops
    return RunSummary(
        accuracy=n_correct / len(rows) if rows else 0.0, n_problems=len(rows),
        n_correct=n_correct, n_failed=n_failed, budget=config.budget, strategy=config.strategy,
        task=config.task,
        cost=cost,
        accuracy_by_difficulty={d: sum(by_diff[d]) / len(by_diff[d]) for d in order},
        n_by_difficulty={d: len(by_diff[d]) for d in order}, resumed=resumed,
        computed=computed, seed=config.seed,
        options=dict(config.options) if options is None else options, run_key=key,
        out=str(Path(config.out)), db=str(store.path))


class _Progress:
    """A rich progress bar on stderr with the running accuracy; a no-op when disabled."""

    def __init__(self, enabled: bool, total: int, done: int, correct: int,
                 config: RunConfig) -> None:
        self.enabled, self.total, self.done, self.correct = enabled, total, done, correct
        self.label = f"{config.strategy} N={config.budget}"
        self._bar: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from ttscale.progress import accuracy_bar

            self._bar, _ = accuracy_bar()
            self._id = self._bar.add_task(self.label, total=self.total, completed=self.done,
                                          acc=self._acc())
        return self

    def _acc(self) -> str:
        return f"{self.correct / self.done:.3f}" if self.done else "-"

    def advance(self, correct: bool) -> None:
        self.done += 1
        self.correct += int(correct)
        if self._bar is not None:
            self._bar.update(self._id, advance=1, acc=self._acc())

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
