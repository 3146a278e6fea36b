"""``ttscale sweep``: accuracy and cost of several strategies over several budgets.

How the work is shared (why a sweep is much cheaper than one ``ttscale run`` per point):

* **One pool per problem.** ``N_max`` (the largest budget) full solutions are sampled once and
  scored once by the PRM: that is exactly a ``weighted-best-of-n`` run at ``N_max``, stored under
  the same run key ``ttscale run`` would use. Each sample is also graded and its grade kept in its
  candidate's meta. Majority, best-of-N, weighted best-of-N and the oracle pass@N are then read
  off that pool for every budget (``analysis.curves``).
* **Tree searches and revisions run per budget** (beam with M=4 and M=sqrt(N), DVTS, lookahead;
  revision chains at fixed sequential:parallel ratios, combined), each (strategy, budget) a run
  in the same store with the runner's run key: a rerun or a killed sweep resumes problem by
  problem, and a ``ttscale run`` of the same settings finds the sweep's results (and vice
  versa). Models (policy, PRM, revision model) are loaded once, lazily, and only if something
  is left to compute.

The summary (``sweep.json`` in ``--out``) holds, per strategy and budget, the accuracy overall
and per difficulty bin (oracle bins of pass@1 from the pool; the task's own difficulty where it
has one) and the mean cost per problem (every Cost key). Adaptive strategies (budget N is their
cap) also carry ``adaptive_cost: true`` and their mean realised generations and FLOPs per bin
(``generations_by_bin``, ``flops_by_bin``): plots place them at that cost.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttscale.analysis.bins import bin_ranges, group_mean, oracle_bins, sort_labels
from ttscale.analysis.curves import (
    CORRECT_KEY,
    curve,
    exact_pool_cost,
    mean_cost,
    oracle_curve,
    pass1,
    pool_diagnostics,
    pool_samples,
)
from ttscale.analysis.plan import ORACLE, SweepPlan, SweepStrategy
from ttscale.analysis.pools import PoolSample
from ttscale.analysis.progress import SweepProgress
from ttscale.config import RunConfig
from ttscale.session import (
    Models,
    build_task,
    grade_answer,
    is_failed,
    resolve_policy,
    resolve_prm,
    resolve_revision,
    run_key,
    select_problems,
    solve_and_store,
)
from ttscale.strategies.registry import get_spec, own_options
from ttscale.types import Cost, Problem

#: file name of the summary in the output folder (read by ``ttscale report``)
SUMMARY_NAME = "sweep.json"
#: bump when the summary layout changes
SUMMARY_VERSION = 1
#: what the testbed's own difficulty means, for the report's panel titles
DIFFICULTY_NAMES = {"testbed": "number of operations"}


class Parts(Models):
    """The models of a sweep, built on first use and shared by all its runs (the session's
    ``Models`` with the sweep's progress display)."""

    def __init__(self, config: RunConfig, policy: str, prm: str | None, *,
                 revision: str | None = None, generator: Any = None, scorer: Any = None,
                 reviser: Any = None, progress: SweepProgress | None = None) -> None:
        super().__init__(config, policy, prm, revision=revision, generator=generator,
                         scorer=scorer, reviser=reviser)
        self.progress = progress

    @classmethod
    def resolve(cls, config: RunConfig, need_prm: bool, need_reviser: bool = False,
                **ready: Any) -> Parts:
        """Check the model paths now (a missing model fails before anything runs)."""
        return cls(config, resolve_policy(config), resolve_prm(config) if need_prm else None,
                   revision=resolve_revision(config) if need_reviser else None, **ready)

    def _say(self, msg: str) -> None:
        if self.progress is not None:
            self.progress.note(msg)


@dataclass
class StageResult:
    """One stored run of the sweep."""

    run_key: str
    config: RunConfig
    resumed: int
    computed: int


def _grader(gold: str) -> Any:
    """A per-problem grade function that checks each distinct answer once."""
    cache: dict[str | None, bool] = {}

    def grade(answer: str | None) -> bool:
        if answer is None:
            return False
        if answer not in cache:
            cache[answer] = grade_answer(answer, gold)[0]
        return cache[answer]

    return grade


def _grade_candidates(problem: Problem, result: Any) -> None:
    grade = _grader(problem.answer)
    for c in result.candidates:
        c.meta[CORRECT_KEY] = grade(c.answer)


def execute(store: Any, cfg: RunConfig, problems: Sequence[Problem], task: Any, parts: Parts,
            progress: SweepProgress, label: str, *, grade_samples: bool = False) -> StageResult:
    """Compute and store every problem of one run that is not stored yet (the session's loop,
    with models shared across runs); ``grade_samples`` also grades every candidate.

    Only strategies that revise get the revision model, in their context and in their run key:
    the keys of all other runs stay what ``ttscale run`` computes for them."""
    spec = get_spec(cfg.strategy)
    options = spec.parse(cfg.options, cfg.budget)
    prm = parts.prm if spec.needs_verifier else None
    if spec.needs_verifier and prm is None:
        raise ValueError(f"strategy {cfg.strategy!r} needs a PRM; none is configured")
    revision = parts.revision if spec.uses_reviser else None
    key = run_key(cfg, parts.policy, prm, revision, options)
    store.ensure_run(key, {**cfg.model_dump(), "policy_resolved": parts.policy,
                           "prm_resolved": prm, "revision_resolved": revision, "run_key": key})
    done = store.done_ids(key)
    todo = [(i, p) for i, p in enumerate(problems) if p.id not in done]
    ids = {p.id for p in problems}
    stored_correct = sum(bool(r.correct) for r in store.results(key, ids)) if done else 0
    stage = progress.stage(label, len(problems), len(problems) - len(todo), stored_correct)
    if todo:
        ctx = parts.context(spec, cfg.search_settings(), options)
        solve_and_store(store, key, spec, cfg.budget, ctx, todo,
                        on_result=lambda _p, r: stage.advance(bool(r.correct)),
                        annotate=_grade_candidates if grade_samples else None)
    return StageResult(key, cfg, len(problems) - len(todo), len(todo))


def _entry(per_question: Mapping[str, float], costs: Sequence[Cost],
           groups: Mapping[str, Mapping[str, int | str | None]],
           **extra: Any) -> dict[str, Any]:
    n = len(per_question)
    return {
        "accuracy": sum(per_question.values()) / n if n else 0.0,
        "n_problems": n,
        "accuracy_by_bin": {family: group_mean(per_question, g) for family, g in groups.items()},
        "cost": mean_cost(costs),
        **extra,
    }


def realised_cost_by_bin(rows: Sequence[Any], groups: Mapping[str, Mapping[str, int | str | None]]
                         ) -> dict[str, Any]:
    """Mean realised generations and total FLOPs per question, per bin of every family (where
    an adaptive strategy's points sit in the per-bin panels)."""
    gens = {r.problem_id: float(r.cost.generations) for r in rows}
    flops = {r.problem_id: float(r.cost.total_flops) for r in rows}
    return {"generations_by_bin": {f: group_mean(gens, g) for f, g in groups.items()},
            "flops_by_bin": {f: group_mean(flops, g) for f, g in groups.items()}}


def sweep(base: RunConfig, plan: SweepPlan, *, progress: bool = True,
          parts: Parts | None = None) -> dict[str, Any]:
    """Run (or resume) the sweep and write ``<out>/sweep.json``; returns the summary."""
    from ttscale.store.sqlite import Store

    task = build_task(base)
    problems = select_problems(task, base)
    parts = parts if parts is not None else Parts.resolve(base, plan.needs_verifier,
                                                          plan.uses_reviser)
    runs, skipped = plan.runs(base.options)  # validates beam widths before any sampling
    ids = {p.id for p in problems}
    t_start = time.perf_counter()

    with Store.in_dir(base.out) as store, SweepProgress(progress) as prog:
        parts.progress, parts.task = prog, task
        n_max = plan.pool_size
        pool_cfg = base.model_copy(update={
            "strategy": plan.pool_strategy, "budget": n_max,
            "options": own_options(plan.pool_strategy, base.options)})
        pool_stage = execute(store, pool_cfg, problems, task, parts, prog,
                             f"pool {plan.pool_strategy} N={n_max}", grade_samples=True)
        for name, reasons in skipped.items():
            for n, why in reasons.items():
                prog.note(f"{name}: no run at N={n} ({why})")
        stages: list[tuple[SweepStrategy, int, StageResult]] = []
        for s, n in runs:
            cfg = base.model_copy(update={"strategy": s.base, "budget": n,
                                          "options": s.run_options(n, base.options)})
            stages.append((s, n, execute(store, cfg, problems, task, parts, prog,
                                         f"{s.name} N={n}")))

        pool_rows = store.results(pool_stage.run_key, ids)
        run_rows = {(s.name, n): store.results(st.run_key, ids) for s, n, st in stages}
        db_path = str(store.path)

    summary = summarize(base, plan, problems, task, pool_stage, pool_rows, stages, run_rows,
                        skipped)
    summary["db"] = db_path
    summary["revision_resolved"] = parts.revision if plan.uses_reviser else None
    summary["seconds"] = time.perf_counter() - t_start
    write_summary(Path(base.out), summary)
    return summary


def summarize(base: RunConfig, plan: SweepPlan, problems: Sequence[Problem], task: Any,
              pool_stage: StageResult, pool_rows: Sequence[Any],
              stages: Sequence[tuple[SweepStrategy, int, StageResult]],
              run_rows: Mapping[tuple[str, int], Sequence[Any]],
              skipped: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """Turn the stored pool and runs into the sweep summary (pure: no model, no store)."""
    how = str(base.options.get("aggregation", "last"))
    gold = {p.id: p.answer for p in problems}
    pools: dict[str, list[PoolSample]] = {}
    pool_cost: dict[str, Cost] = {}
    pool_cands: dict[str, list[Any]] = {}
    for r in pool_rows:
        pool_cands[r.problem_id] = list(r.candidates)
        if is_failed(r.meta):  # failed on its own: no samples, every budget counts it wrong
            pools[r.problem_id] = [PoolSample(None, False, 0.0)] * plan.pool_size
        else:
            pools[r.problem_id] = pool_samples(r.candidates, how, _grader(gold[r.problem_id]))
        pool_cost[r.problem_id] = r.cost
    for pid, pool in pools.items():
        if len(pool) < plan.pool_size:
            raise ValueError(f"stored pool of problem {pid!r} has {len(pool)} samples, fewer "
                             f"than N_max={plan.pool_size}")

    p1 = {pid: pass1(pool) for pid, pool in pools.items()}
    obins = oracle_bins(p1)
    difficulty = {p.id: p.difficulty for p in problems}
    groups: dict[str, dict[str, Any]] = {"oracle": dict(obins)}
    has_difficulty = any(d is not None for d in difficulty.values())
    if has_difficulty:
        groups["difficulty"] = dict(difficulty)

    results: dict[str, dict[str, Any]] = {}
    pool_strats = [ORACLE, *[s for s in plan.strategies if s.from_pool]]
    for s in pool_strats:
        per_budget: dict[str, Any] = {}
        for n in plan.budgets:
            if s.pool_method == "pass":
                acc = oracle_curve(pools, n)
            else:
                assert s.pool_method is not None
                acc = curve(pools, n, s.pool_method, base.seed)
            costs = [exact_pool_cost(pool_cands[pid], pool_cost[pid], n, base.seed, pid,
                                     s.needs_verifier) for pid in acc]
            per_budget[str(n)] = _entry(acc, costs, groups, source="pool",
                                        run_key=pool_stage.run_key)
        results[s.name] = per_budget
    for s, n, st in stages:
        rows = run_rows[(s.name, n)]
        acc = {r.problem_id: float(bool(r.correct)) for r in rows}
        extra: dict[str, Any] = {}
        if s.adaptive_cost:  # N is a cap: curves place the point at the realised cost
            extra = {"adaptive_cost": True, **realised_cost_by_bin(rows, groups)}
        results.setdefault(s.name, {})[str(n)] = _entry(
            acc, [r.cost for r in rows], groups, source="run", run_key=st.run_key,
            options=dict(st.config.options), resumed=st.resumed, computed=st.computed,
            **extra)

    bins: dict[str, Any] = {"oracle": bin_ranges(p1, obins)}
    if has_difficulty:
        counts: dict[str, int] = {}
        for d in difficulty.values():
            if d is not None:
                counts[str(d)] = counts.get(str(d), 0) + 1
        bins["difficulty"] = {k: {"n": counts[k]} for k in sort_labels(counts)}

    config = base.model_dump()
    for k in ("strategy", "budget"):
        config.pop(k, None)
    return {
        "version": SUMMARY_VERSION,
        "task": base.task,
        "task_name": getattr(task, "name", base.task),
        "split": base.split if base.task == "testbed" else None,
        "n_problems": len(problems),
        "budgets": list(plan.budgets),
        "strategies": [s.name for s in pool_strats] + [s.name for s in plan.strategies
                                                       if not s.from_pool],
        "seed": base.seed,
        "aggregation": how,
        "pool": {"strategy": pool_stage.config.strategy, "budget": plan.pool_size,
                 "run_key": pool_stage.run_key, "resumed": pool_stage.resumed,
                 "computed": pool_stage.computed,
                 **pool_diagnostics(pools, scored=plan.needs_verifier)},
        "results": results,
        "skipped": {k: dict(v) for k, v in skipped.items()},
        "bins": bins,
        "difficulty_name": DIFFICULTY_NAMES.get(getattr(task, "name", ""), "task difficulty"),
        "questions": [{"id": p.id, "difficulty": p.difficulty, "pass1": p1.get(p.id),
                       "oracle_bin": obins.get(p.id)} for p in problems],
        "config": config,
        "out": str(Path(base.out)),
    }


def write_summary(out: Path, summary: Mapping[str, Any]) -> Path:
    """Write ``sweep.json`` atomically (a reader never sees half a file)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / SUMMARY_NAME
    tmp = path.with_name(f".{SUMMARY_NAME}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_summary(out: str | Path) -> dict[str, Any]:
    """Load ``<out>/sweep.json``, with a one-line error naming the fix when it is not there."""
    path = Path(out) / SUMMARY_NAME
    if not Path(out).is_dir():
        raise FileNotFoundError(f"{out} is not a folder; give the --out folder of a sweep")
    if not path.is_file():
        raise FileNotFoundError(f"no {SUMMARY_NAME} in {out}; run `ttscale sweep --out {out}` "
                                "first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or "results" not in data or "budgets" not in data:
        raise ValueError(f"{path} is not a ttscale sweep summary (no 'results'/'budgets')")
    if data.get("version", 0) > SUMMARY_VERSION:
        raise ValueError(f"{path} was written by a newer ttscale (version {data['version']})")
    return data
