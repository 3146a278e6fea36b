"""The composition root: settings -> task, problems and models -> the one per-problem loop.

Why one place: ``ttscale run``, ``ttscale sweep``, ``ttscale optimal flops``, the proxy and the
testbed evaluation all turn settings into a task, a policy, a PRM and a revision model, and run a
strategy problem by problem; written once here, they cannot drift apart (the proxy once revised
with the policy because its copy never set a revision model).

What lives here:

* **run identity**: :func:`fingerprint` (a model or data file by content) and :func:`run_key` (a
  hash of everything that changes a problem's result, with the parsed strategy options);
* **selection**: :func:`build_task`, :func:`select_problems`;
* **models**: :func:`resolve_policy` / :func:`resolve_prm` / :func:`resolve_revision` (checked
  before anything loads) and :func:`build_generator` / :func:`build_scorer` (in-process
  transformers or OpenAI-compatible HTTP), held lazily by :class:`Models`;
* **grading**: :func:`grade_answer`;
* **the loop**: :func:`solve_and_store` (solve -> grade -> store, one problem at a time, with a
  progress callback; a problem that fails on its own is stored as that problem's failure and the
  run goes on);
* **the public Python API**: :class:`Session` (``from ttscale import Session``).
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttscale.config import RunConfig
from ttscale.errors import ProblemError
from ttscale.shipped import resolve_model
from ttscale.strategies.base import SearchContext, SearchSettings, StrategyOptions, StrategySpec
from ttscale.strategies.registry import get_spec
from ttscale.types import Cost, Problem, Result

#: bump when what a run computes or how runs are keyed changes, so old stored results are not
#: resumed under a wrong key. 2: the run key holds the parsed strategy options with their
#: defaults filled (was: the raw options dict); also the paper's rules (lookahead counted as
#: N x (k+1) generations, hierarchical revision selection, beam pool cut to N, DVTS over all
#: leaves) and per-prompt seeds on HTTP engines change what a stored run holds
RESULTS_VERSION = 2
#: files at most this large (and the first 4x this in all) are fingerprinted by content, the rest
#: by size and mtime: cheap for the testbed models, bounded for multi-GB checkpoints
_HASH_LIMIT = 64 * 2**20
#: ``Result.meta`` key of a problem that failed on its own (its value is the reason)
FAILED_KEY = "failed"


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
            revision: str | None = None, options: StrategyOptions | None = None) -> str:
    """Hash of everything that changes a problem's result (not limit, out or progress).

    ``prm``/``revision`` are the resolved models the strategy uses (None when it uses none);
    ``options`` the parsed strategy options (parsed from ``config.options`` when None), so a
    default spelled out and a default left out give the same key, and a typo gives none."""
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


# ---- task and problems -----------------------------------------------------------------------


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


def problem_from_text(task: Any, text: str, pid: str | None = None) -> Problem:
    """A problem for a question given as text (its gold answer unknown): the task's own prompt
    format when it has one (``problem(pid, question)``), the testbed's line format otherwise."""
    pid = pid or f"q-{zlib.crc32(text.encode()):08x}"
    make = getattr(task, "problem", None)
    if callable(make):
        return make(pid, text)
    template = getattr(task, "prompt_template", None)
    if isinstance(template, str) and "{question}" in template:
        return Problem(pid, text, "", template.replace("{question}", text))
    return Problem(pid, text.strip(), "", text.strip() + "\n")


# ---- models ----------------------------------------------------------------------------------


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
    remote = "://" in prm
    if remote and config.prm_params is not None:
        kwargs["num_parameters"] = config.prm_params
    scorer = load_verifier(prm, kind=config.prm_kind, **kwargs)
    if not remote and config.prm_params is not None:  # the override wins over the count
        scorer.num_parameters = config.prm_params
    return scorer


class Models:
    """The policy, PRM and revision model of a run, resolved now and loaded on first use.

    ``policy``/``prm``/``revision`` are the resolved specs that go into run keys (``revision``
    None: the policy revises its own attempts). Ready objects (``generator``/``scorer``/
    ``reviser``: models a caller already holds, or test doubles) are used instead of loading.
    ``note`` is called with a line before each load (progress display).
    """

    def __init__(self, config: RunConfig, policy: str, prm: str | None, *,
                 revision: str | None = None, generator: Any = None, scorer: Any = None,
                 reviser: Any = None) -> None:
        self.config, self.policy, self.prm, self.revision = config, policy, prm, revision
        self._generator, self._scorer, self._reviser = generator, scorer, reviser
        #: the task, so the PRM joins steps with the task's delimiter
        self.task: Any = None
        self.note: Callable[[str], None] | None = None

    @classmethod
    def resolve(cls, config: RunConfig, need_prm: bool, need_reviser: bool = False,
                **ready: Any) -> Models:
        """Check the model paths now (a missing model fails before anything runs)."""
        policy = resolve_policy(config) if ready.get("generator") is None else (
            config.policy or "given")
        prm = None
        if need_prm:
            prm = resolve_prm(config) if ready.get("scorer") is None else (config.prm or "given")
        revision = resolve_revision(config) if need_reviser else None
        return cls(config, policy, prm, revision=revision, **ready)

    def generator(self) -> Any:
        if self._generator is None:
            self._say(f"loading policy {self.policy}")
            self._generator = build_generator(self.config, self.policy)
        return self._generator

    def scorer(self) -> Any:
        if self.prm is None:
            raise ValueError("no PRM is configured")
        if self._scorer is None:
            self._say(f"loading PRM {self.prm}")
            self._scorer = build_scorer(self.config, self.prm, self.task)
        return self._scorer

    def reviser(self) -> Any:
        """The revision model's generator (None when the policy revises itself)."""
        if self.revision is None:
            return None
        if self._reviser is None:
            self._say(f"loading revision model {self.revision}")
            self._reviser = build_generator(self.config, self.revision)
        return self._reviser

    def context(self, spec: StrategySpec, settings: SearchSettings,
                options: StrategyOptions) -> SearchContext:
        """The search context of one run of ``spec`` (see :func:`search_context`)."""
        return search_context(
            spec, self.task, settings, self.generator(),
            scorer=self.scorer() if spec.needs_verifier and self.prm is not None else None,
            reviser=self.reviser() if spec.uses_reviser else None, options=options)

    def _say(self, msg: str) -> None:
        if self.note is not None:
            self.note(msg)


def search_context(spec: StrategySpec, task: Any, settings: SearchSettings, generator: Any, *,
                   scorer: Any = None, reviser: Any = None,
                   options: StrategyOptions | None = None) -> SearchContext:
    """The one way a SearchContext is assembled: the PRM only for a strategy that needs one, the
    revision model only for one that revises (else the policy revises its own attempts), the
    options parsed by the strategy's model."""
    return SearchContext.from_settings(
        task, generator, settings, scorer=scorer if spec.needs_verifier else None,
        reviser=reviser if spec.uses_reviser else None,
        options=spec.parse(options))


# ---- grading and the loop --------------------------------------------------------------------


def grade_answer(pred: str | None, gold: str) -> tuple[bool, str]:
    from ttscale.grading import grade

    g = grade(pred, gold)
    return bool(g.equal), str(g.reason)


def failed_result(problem: Problem, reason: str, cost: Cost | None = None) -> Result:
    """What is stored for a problem that failed on its own: no answer, wrong, the reason."""
    return Result(problem.id, None, [], Cost() if cost is None else cost.copy(), [],
                  correct=False, meta={FAILED_KEY: reason})


def solve_one(spec: StrategySpec, problem: Problem, budget: int, ctx: SearchContext, *,
              grade: bool = True) -> tuple[Result, str]:
    """Solve ``problem`` with a fresh copy of ``ctx`` and grade it: (result, grade reason).

    A ``ProblemError`` (a request refused for this problem, a PRM refusal, a context overflow)
    or a crash of the grader becomes this problem's failure (stored, counted wrong, the reason
    kept); anything else (a server down after retries, a bug) propagates and stops the run."""
    pctx = ctx.fresh()
    t0 = time.perf_counter()
    try:
        result = spec(problem, budget, pctx)
    except ProblemError as e:
        pctx.cost.wall_s = time.perf_counter() - t0
        return failed_result(problem, f"{type(e).__name__}: {e}", pctx.cost), "failed"
    if not result.cost.wall_s:
        result.cost.wall_s = time.perf_counter() - t0
    reason = ""
    if grade:
        try:
            result.correct, reason = grade_answer(result.answer, problem.answer)
        except Exception as e:  # noqa: BLE001  (a grader crash is this problem's failure)
            result.correct = False
            result.meta = {**result.meta, FAILED_KEY: f"grading failed: {type(e).__name__}: {e}"}
            reason = "failed"
    return result, reason


def solve_and_store(store: Any, key: str, spec: StrategySpec, budget: int, ctx: SearchContext,
                    todo: Iterable[tuple[int, Problem]], *,
                    on_result: Callable[[Problem, Result], None] | None = None,
                    annotate: Callable[[Problem, Result], None] | None = None) -> int:
    """THE per-problem loop of every command: solve -> grade -> store, one problem at a time
    (a killed run loses at most the problem in flight), ``on_result`` after each (progress).

    ``annotate`` may add to a result before it is stored (the sweep grades every sample).
    Returns how many problems were computed."""
    n = 0
    for idx, problem in todo:
        result, reason = solve_one(spec, problem, budget, ctx)
        if annotate is not None and FAILED_KEY not in result.meta:
            annotate(problem, result)
        store.add_result(key, problem, result, grade_reason=reason, idx=idx)
        n += 1
        if on_result is not None:
            on_result(problem, result)
    return n


def is_failed(meta: dict[str, Any] | None) -> bool:
    return bool(meta) and FAILED_KEY in meta  # type: ignore[operator]


# ---- the public API --------------------------------------------------------------------------


@dataclass
class Session:
    """Test-time search from Python, without the CLI.

    Build one from settings (the keys of a recipe; models load on first use)::

        from ttscale import Session
        session = Session.from_settings(task="testbed")
        result = session.solve(session.problems()[0], strategy="beam", budget=8, beam_width=2)
        print(result.answer, result.correct, result.cost.total_flops)

    or from models already held (``Session(generator=..., scorer=..., task=...)``). ``solve``
    takes a ``Problem`` or a question text; options are the strategy's typed options, checked
    before anything is spent. Results are graded when the problem has a gold answer.
    """

    config: RunConfig
    models: Models

    @classmethod
    def from_settings(cls, **settings: Any) -> Session:
        """A session from recipe keys (``task``, ``policy``, ``prm``, ``revision``, ``engine``,
        ``base_url``, ``seed``, ``temperature``, ...); ``strategy``/``budget`` are per solve."""
        config = RunConfig.model_validate({"strategy": "majority", "budget": 1, **settings})
        return cls(config, Models.resolve(config, need_prm=True, need_reviser=True))

    @classmethod
    def from_models(cls, generator: Any, scorer: Any = None, *, task: Any = "testbed",
                    reviser: Any = None, **settings: Any) -> Session:
        """A session over a policy (and PRM, revision model) you already hold. ``task`` is a
        task object or a task name (``testbed``, a .jsonl file)."""
        data = {"strategy": "majority", "budget": 1,
                "task": task if isinstance(task, str) else "given", **settings}
        config = RunConfig.model_validate(data)
        models = Models(config, "given", None if scorer is None else "given",
                        revision=None if reviser is None else "given", generator=generator,
                        scorer=scorer, reviser=reviser)
        if not isinstance(task, str):
            models.task = task
        return cls(config, models)

    @property
    def task(self) -> Any:
        if self.models.task is None:
            self.models.task = build_task(self.config)
        return self.models.task

    def problems(self) -> list[Problem]:
        """The task's problems (the first ``limit`` when set)."""
        return select_problems(self.task, self.config)

    def solve(self, problem: Problem | str, strategy: str = "weighted-best-of-n",
              budget: int = 4, **options: Any) -> Result:
        """One problem (or question text) with ``strategy`` at ``budget``; typed Result with
        answer, candidates, cost and trace (``correct`` when the gold answer is known)."""
        return self.solve_many([problem], strategy, budget, **options)[0]

    def solve_many(self, problems: Sequence[Problem | str], strategy: str = "weighted-best-of-n",
                   budget: int = 4, **options: Any) -> list[Result]:
        """Several problems, each with a fresh context (as ``ttscale run`` does)."""
        spec = get_spec(strategy)
        opts = spec.parse(options, budget)  # a typo fails before any model loads
        if spec.needs_verifier and self.models.prm is None:
            raise ValueError(f"strategy {strategy!r} needs a verifier (PRM); this session has "
                             "none")
        task = self.task
        items = [p if isinstance(p, Problem) else problem_from_text(task, p) for p in problems]
        ctx = self.models.context(spec, self.config.search_settings(), opts)
        out = []
        for p in items:
            result, _ = solve_one(spec, p, budget, ctx, grade=bool(p.answer))
            out.append(result)
        return out
