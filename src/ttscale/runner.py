"""Run one strategy at one budget over a task, grading and storing every problem as it finishes.

Resume is by construction: each problem's result is committed to ``<out>/ttscale.db`` under a
``run_key`` that hashes every setting that changes results, and a rerun skips the problems already
stored. Strategies derive every engine call's seed from the run seed and the problem id
(``strategies.common.derive_seed``), and each problem gets a fresh context, so a problem's result
does not depend on which problems ran before it in the same process: a resumed run ends with
exactly the results of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ttscale.config import RunConfig, parse_shard
from ttscale.store.sqlite import Store, StoredResult
from ttscale.testbed.paths import resolve_model
from ttscale.types import Cost, Problem

#: bump when the runner changes what a run computes or how runs are keyed, so old stored results
#: are not resumed under a wrong key. 2: the run key holds the parsed strategy options with their
#: defaults filled (was: the raw options dict)
RESULTS_VERSION = 2
#: files at most this large (and the first 4x this in all) are fingerprinted by content, the rest
#: by size and mtime: cheap for the testbed models, bounded for multi-GB checkpoints
_HASH_LIMIT = 64 * 2**20


@dataclass
class RunSummary:
    """What ``ttscale run --json`` prints (contract keys: accuracy, n_problems, budget,
    strategy, cost)."""

    accuracy: float
    n_problems: int
    n_correct: int
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


# ---- identity of a run ---------------------------------------------------------------------


def fingerprint(spec: str) -> dict[str, Any]:
    """Identify a model or data file by content, so a retrained model in the same folder does not
    resume stale results and a copied one still does. Non-paths (served model names) are kept
    as given."""
    p = Path(spec)
    if not p.exists():
        return {"name": spec}
    files = sorted(f for f in (p.rglob("*") if p.is_dir() else [p]) if f.is_file())
    h = hashlib.sha256()
    hashed = 0
    for f in files:
        st = f.stat()
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
        if st.st_size <= _HASH_LIMIT and hashed + st.st_size <= 4 * _HASH_LIMIT:
            h.update(hashlib.sha256(f.read_bytes()).digest())
            hashed += st.st_size
        else:
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return {"sha256": h.hexdigest()}


def run_key(config: RunConfig, policy: str, prm: str | None,
            revision: str | None = None, options: Any = None) -> str:
    """Hash of everything that changes a problem's result (not limit, out or progress).

    ``prm``/``revision`` are the resolved models the strategy uses (None when it uses none);
    ``options`` the parsed strategy options (parsed from ``config.options`` when None), so a
    default spelled out and a default left out give the same key, and a typo gives none."""
    from ttscale.strategies.registry import get_spec

    spec = get_spec(config.strategy)
    if options is None:
        options = spec.parse(config.options)
    dumped = options.model_dump(mode="json")
    task_id: dict[str, Any] = {"task": config.task, "task_options": config.task_options}
    if config.task == "testbed":
        task_id["split"] = config.split
    elif Path(config.task).is_file():
        task_id = {"task_file": fingerprint(config.task), "task_options": config.task_options}
    ident = {
        "v": RESULTS_VERSION, "task": task_id, "strategy": config.strategy,
        "budget": config.budget, "options": dumped, "seed": config.seed,
        "temperature": config.temperature, "top_p": config.top_p,
        "max_step_tokens": config.max_step_tokens,
        "max_solution_tokens": config.max_solution_tokens, "max_rounds": config.max_rounds,
        "engine": config.engine, "base_url": config.base_url if config.engine != "hf" else None,
        "policy": fingerprint(policy), "device": config.device,
        "prm": None if prm is None else {"model": fingerprint(prm), "kind": config.prm_kind},
    }
    if revision is not None:  # absent otherwise, so keys of runs without one stay as they were
        ident["revision"] = fingerprint(revision)
    for name in spec.file_options:  # e.g. compute-optimal's policy table: its content
        path = dumped.get(name)
        if isinstance(path, str) and Path(path).is_file():
            ident[name] = fingerprint(path)
    blob = json.dumps(ident, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---- building the parts ------------------------------------------------------------------


def build_task(config: RunConfig) -> Any:
    from ttscale.tasks import load_task

    kwargs = dict(config.task_options)
    if config.task == "testbed":
        kwargs.setdefault("split", config.split)
        # testbed problems are generated in a fixed order, so the first K are the same for any n
        kwargs.setdefault("n", config.limit or 500)
    return load_task(config.task, **kwargs)


def select_problems(task: Any, config: RunConfig) -> list[Problem]:
    problems = list(task.problems())
    if config.limit is not None:
        problems = problems[: config.limit]
    if not problems:
        raise ValueError(f"task {config.task!r} has no problems")
    seen: set[str] = set()
    for p in problems:
        if p.id in seen:
            raise ValueError(f"task {config.task!r} has two problems with id {p.id!r}; "
                             "ids must be unique for results to be stored and resumed")
        seen.add(p.id)
    return problems


def resolve_policy(config: RunConfig) -> str:
    policy = resolve_model(config.policy, "policy-small")
    if config.engine == "hf" and not Path(policy).exists():
        raise FileNotFoundError(f"policy model not found at {policy}")
    return policy


def resolve_prm(config: RunConfig) -> str:
    prm = resolve_model(config.prm, "prm")
    if not Path(prm).exists() and "://" not in prm:
        raise FileNotFoundError(f"PRM not found at {prm}")
    return prm


def resolve_revision(config: RunConfig) -> str | None:
    """The configured revision model, checked now; None when the policy revises itself.

    On the testbed with the shipped policy the shipped revision model is the default: the
    testbed policy never saw the revision prompt format, so it cannot revise its own attempts."""
    name = config.revision
    if name is None:
        if config.task != "testbed" or config.policy is not None or config.engine != "hf":
            return None
        name = "testbed:revision"
    revision = resolve_model(name, "revision")
    if config.engine == "hf" and not Path(revision).exists():
        raise FileNotFoundError(f"revision model not found at {revision}")
    return revision


def build_generator(config: RunConfig, policy: str) -> Any:
    if config.engine == "openai":
        if not config.base_url:
            raise ValueError("engine 'openai' needs base_url (the server, e.g. "
                             "http://localhost:8000/v1)")
        try:
            from ttscale.engines.openai import OpenAIGenerator
        except ImportError as e:
            raise ValueError(f"engine 'openai' is not available in this install: {e}") from e

        return OpenAIGenerator(base_url=config.base_url, model=policy,
                               num_parameters=config.policy_params,
                               context_length=config.context_length)
    from ttscale.engines.hf import HFGenerator

    return HFGenerator.from_pretrained(policy, device=config.device)


def build_scorer(config: RunConfig, prm: str, task: Any = None) -> Any:
    """Load the verifier on ``config.device``. Given the task, the PRM joins steps with the
    task's delimiter (the way the policy wrote them); without it, with the delimiter the PRM
    recorded at training time. Qwen PRMs fix their own separator."""
    from ttscale.verifiers import load_verifier

    kwargs: dict[str, Any] = {"device": config.device}
    if task is not None and config.prm_kind != "qwen-prm":
        kwargs["step_delimiter"] = task.step_delimiter
    return load_verifier(prm, kind=config.prm_kind, **kwargs)


def grade_answer(pred: str | None, gold: str) -> tuple[bool, str]:
    from ttscale.grading import grade

    g = grade(pred, gold)
    return bool(g.equal), str(g.reason)


# ---- the run -------------------------------------------------------------------------------


def run(config: RunConfig, progress: bool = True, *, generator: Any = None,
        scorer: Any = None) -> RunSummary:
    """Solve every selected problem not yet stored for this run, then summarise all of them.

    Cheap checks (strategy name, task, model paths) come before any model is loaded, and nothing
    is loaded when every problem is already stored. ``generator``/``scorer``, when given, are
    used instead of loading ``config.policy``/``config.prm`` (callers that run many configs
    share loaded models); the run key still names the configured model paths.
    """
    from ttscale.strategies.base import SearchContext
    from ttscale.strategies.registry import get_spec

    strategy = get_spec(config.strategy)
    options = strategy.parse(config.options, config.budget)  # a typo fails before any loading
    use_prm = strategy.needs_verifier
    task = build_task(config)
    problems = select_problems(task, config)
    policy = resolve_policy(config)
    prm = resolve_prm(config) if use_prm else None
    revision = resolve_revision(config) if strategy.uses_reviser else None
    key = run_key(config, policy, prm, revision, options)

    with Store.in_dir(config.out) as store:
        store.ensure_run(key, {**config.model_dump(), "policy_resolved": policy,
                               "prm_resolved": prm, "revision_resolved": revision,
                               "run_key": key})
        done = store.done_ids(key)
        # a shard keeps each problem's position in the whole run (idx orders reports)
        index, count = parse_shard(config.shard) if config.shard is not None else (0, 1)
        mine = list(enumerate(problems))[index::count]
        problems = [p for _, p in mine]
        todo = [(i, p) for i, p in mine if p.id not in done]
        resumed = len(problems) - len(todo)
        if todo:
            if generator is None:
                generator = build_generator(config, policy)
            if scorer is None and prm is not None:
                scorer = build_scorer(config, prm, task)
            ctx = SearchContext(
                task=task, generator=generator, scorer=scorer if prm is not None else None,
                seed=config.seed, temperature=config.temperature, top_p=config.top_p,
                max_step_tokens=config.max_step_tokens,
                max_solution_tokens=config.max_solution_tokens, max_rounds=config.max_rounds,
                options=options,
                reviser=build_generator(config, revision) if revision is not None else None)
            stored = store.results(key, {p.id for p in problems})
            with _Progress(progress, len(problems), resumed,
                           sum(bool(r.correct) for r in stored), config) as bar:
                for idx, problem in todo:
                    pctx = ctx.fresh()
                    t0 = time.perf_counter()
                    result = strategy(problem, config.budget, pctx)
                    if not result.cost.wall_s:
                        result.cost.wall_s = time.perf_counter() - t0
                    result.correct, reason = grade_answer(result.answer, problem.answer)
                    store.add_result(key, problem, result, grade_reason=reason, idx=idx)
                    bar.advance(bool(result.correct))
        rows = store.results(key, {p.id for p in problems})
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
    order = sorted(by_diff, key=lambda d: (not d.isdigit(), int(d) if d.isdigit() else 0, d))
    cost = total.to_dict()  # every contract key of COST_KEYS, plus total_flops
    return RunSummary(
        accuracy=n_correct / len(rows) if rows else 0.0, n_problems=len(rows),
        n_correct=n_correct, budget=config.budget, strategy=config.strategy, task=config.task,
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
