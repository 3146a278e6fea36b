"""A sweep as per-question tables: for every strategy configuration ("arm") and budget, each
question's accuracy, generations and FLOPs. Selection and the frontier work on these tables only.

Why per question: cross-validation splits questions, difficulty bins group them and the bootstrap
resamples them, so every number must be available question by question. The sweep summary holds
only means; the per-question values come from its store:

* **pool arms** are read off each question's pool of ``N_max`` PRM-scored samples, exactly as the
  sweep does (``analysis.curves``: mean over disjoint subsets, per-question shuffle seed), for
  majority voting and for best-of-N and weighted best-of-N under every score aggregation
  (``last``, ``min``, ``prod``, ``mean``): the aggregation is a hyper-parameter chosen per bin
  too, at no extra sampling cost. Their cost is the expected cost of ``N`` pool samples
  (``analysis.curves.scale_pool_cost``);
* **run arms** are the sweep's per-budget runs (beam M=4 and M=sqrt(N), DVTS, lookahead, and
  revisions when a sweep stored them): their stored per-question grade and Cost. The registered
  strategy and options come from the stored run config, so any run strategy a sweep stores is
  an arm, without a list to keep up to date here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ttscale.analysis.curves import curve, pass1, pool_samples, scale_pool_cost
from ttscale.analysis.plan import STRATEGIES as SWEEP_STRATEGIES
from ttscale.analysis.sweep import _grader, read_summary
from ttscale.optimal.difficulty import (
    charged_generations,
    final_score,
    reused_samples,
)
from ttscale.types import Cost
from ttscale.verifiers.base import AGGREGATIONS

#: pool methods of the pool arms (``analysis.pools``), by registered strategy
POOL_METHODS = {"majority": "majority", "best-of-n": "answered-argmax",
                "weighted-best-of-n": "weighted"}


@dataclass(frozen=True)
class Arm:
    """One curve of strategy configurations: the registered strategy to run and, for pool arms,
    its options (a run arm's options may change with the budget, e.g. beam M = sqrt(N): they
    are in each :class:`Point`)."""

    label: str
    strategy: str
    options: Mapping[str, Any] = field(default_factory=dict)
    source: str = "run"  # "pool" or "run"
    needs_prm: bool = True


@dataclass
class Point:
    """One arm at one budget: per-question accuracy (0..1, an expectation for pool arms),
    generations and total FLOPs (policy + PRM + difficulty)."""

    acc: dict[str, float]
    gens: dict[str, float]
    flops: dict[str, float]
    #: the options the strategy ran with at this budget
    options: dict[str, Any] = field(default_factory=dict)


Points = dict[tuple[str, int], Point]


@dataclass
class SweepData:
    """Everything the compute-optimal analysis reads from one sweep folder."""

    out: Path
    summary: dict[str, Any]
    ids: list[str]
    budgets: list[int]
    n_max: int
    arms: dict[str, Arm]
    points: Points
    pass1: dict[str, float]
    #: each pool sample's final-step PRM score, in sample order (for predicted bins and probe)
    final_scores: dict[str, list[float]]
    pool_cost: dict[str, Cost]
    scored: bool
    notes: list[str] = field(default_factory=list)
    #: the stored config of the pool run (resolved model paths: ``policy_resolved``, ...)
    pool_config: dict[str, Any] = field(default_factory=dict)

    def pool_mean(self) -> dict[str, float]:
        """Predicted-difficulty statistic: mean final-step score over the whole pool."""
        self._need_scores()
        return {q: sum(s) / len(s) for q, s in self.final_scores.items()}

    def probe_scores(self, k: int) -> dict[str, float]:
        """The online probe's statistic, offline: the mean final-step score of the first ``k``
        pool samples (the pool's samples are independent draws, so any ``k`` are a probe)."""
        self._need_k(k)
        return {q: sum(s[:k]) / k for q, s in self.final_scores.items()}

    def probe_flops(self, k: int) -> dict[str, float]:
        """What the probe costs per question: ``k`` pool samples, generated and PRM-scored."""
        self._need_k(k)
        return {q: scale_pool_cost(c, k, self.n_max, True).total_flops
                for q, c in self.pool_cost.items()}

    def charged_points(self, k: int, reuse: bool = True) -> Points:
        """Every point with the probe's cost added (``difficulty`` module docstring): ``k``
        generations and their FLOPs on top, minus the samples a pool strategy reuses."""
        probe = self.probe_flops(k)
        out: Points = {}
        for (label, n), pt in self.points.items():
            arm = self.arms[label]
            r = reused_samples(arm.strategy, n, k, reuse)
            gens, flops = {}, {}
            for q in pt.acc:
                saved = (scale_pool_cost(self.pool_cost[q], r, self.n_max, arm.needs_prm)
                         .total_flops if r else 0.0)
                gens[q] = float(charged_generations(arm.strategy, n, k, reuse))
                flops[q] = pt.flops[q] + probe[q] - saved
            out[(label, n)] = Point(dict(pt.acc), gens, flops, dict(pt.options))
        return out

    def _need_scores(self) -> None:
        if not self.scored:
            raise ValueError(f"sweep {self.out}: its pool is not PRM-scored (a majority-only "
                             "sweep), so predicted difficulty cannot be estimated; rerun the "
                             "sweep with a verifier strategy, e.g. --strategies "
                             "majority,weighted-best-of-n")

    def _need_k(self, k: int) -> None:
        self._need_scores()
        if not 1 <= k <= self.n_max:
            raise ValueError(f"probe size k={k} must be between 1 and the pool size "
                             f"N_max={self.n_max}")


def pool_arms(scored: bool) -> list[Arm]:
    arms = [Arm("majority", "majority", {}, "pool", needs_prm=False)]
    if scored:
        for strategy in ("best-of-n", "weighted-best-of-n"):
            arms += [Arm(f"{strategy}/{how}", strategy, {"aggregation": how}, "pool")
                     for how in AGGREGATIONS]
    return arms


def load_sweep(out: str | Path) -> SweepData:
    """Read a finished sweep folder (``sweep.json`` + ``ttscale.db``) into per-question tables.

    Fails with one line naming the folder when the store is missing or incomplete.
    """
    from ttscale.store.sqlite import DB_NAME, Store

    out = Path(out)
    summary = read_summary(out)
    db = out / DB_NAME
    if not db.is_file() and summary.get("db") and Path(summary["db"]).is_file():
        db = Path(summary["db"])
    if not db.is_file():
        raise FileNotFoundError(f"sweep {out}: no store {DB_NAME} beside sweep.json; the "
                                "per-question results are needed (rerun `ttscale sweep`)")
    ids = [q["id"] for q in summary.get("questions", [])]
    if not ids:
        raise ValueError(f"sweep {out}: sweep.json lists no questions")
    budgets = [int(b) for b in summary["budgets"]]
    n_max = int(summary["pool"]["budget"])
    seed = int(summary.get("seed", 0))
    with Store(db) as store:
        pool_rows = store.results(summary["pool"]["run_key"], ids)
        pool_config = store.run_config(summary["pool"]["run_key"]) or {}
        run_rows: dict[tuple[str, int], tuple[str, dict[str, Any], list[Any]]] = {}
        for name, per in summary["results"].items():
            for b, entry in per.items():
                if entry.get("source") != "run":
                    continue
                cfg = store.run_config(entry["run_key"]) or {}
                rows = store.results(entry["run_key"], ids)
                run_rows[(name, int(b))] = (str(cfg.get("strategy", name)),
                                            dict(entry.get("options", {})), rows)
    missing = set(ids) - {r.problem_id for r in pool_rows}
    if missing:
        raise ValueError(f"sweep {out}: the stored pool misses {len(missing)} of {len(ids)} "
                         f"questions (e.g. {sorted(missing)[0]!r}); rerun the same "
                         "`ttscale sweep` to complete it")

    gold = {r.problem_id: r.gold or "" for r in pool_rows}
    cands = {r.problem_id: r.candidates for r in pool_rows}
    pool_cost = {r.problem_id: r.cost for r in pool_rows}
    for q, cs in cands.items():
        if len(cs) < n_max:
            raise ValueError(f"sweep {out}: stored pool of question {q!r} has {len(cs)} "
                             f"samples, fewer than N_max={n_max}")
    scored = summary["pool"].get("strategy") != "majority" and any(
        c.scores for cs in cands.values() for c in cs)
    graders = {q: _grader(gold[q]) for q in ids}
    final_scores = {q: [final_score(c.scores) for c in cands[q]] for q in ids}
    p1 = {q: pass1(pool_samples(cands[q], "last", graders[q])) for q in ids}

    arms: dict[str, Arm] = {}
    points: Points = {}
    for arm in pool_arms(scored):
        how = str(arm.options.get("aggregation", "last"))
        pools = {q: pool_samples(cands[q], how, graders[q]) for q in ids}
        arms[arm.label] = arm
        for n in budgets:
            acc = curve(pools, n, POOL_METHODS[arm.strategy], seed)
            gens = {q: float(n) for q in ids}
            flops = {q: scale_pool_cost(pool_cost[q], n, n_max, arm.needs_prm).total_flops
                     for q in ids}
            points[(arm.label, n)] = Point(acc, gens, flops, dict(arm.options))

    notes: list[str] = []
    for (name, n), (strategy, options, rows) in sorted(run_rows.items()):
        have = {r.problem_id for r in rows}
        if have != set(ids):
            notes.append(f"{name} N={n}: {len(have)} of {len(ids)} questions stored, left out")
            continue
        known = arms.get(name)
        if known is not None and known.strategy != strategy:
            raise ValueError(f"sweep {out}: curve {name!r} ran strategy {strategy!r} at N={n} "
                             f"but {known.strategy!r} elsewhere")
        arms.setdefault(name, Arm(name, strategy, {}, "run",
                                  needs_prm=_needs_prm(name, strategy)))
        points[(name, n)] = Point({r.problem_id: float(bool(r.correct)) for r in rows},
                                  {r.problem_id: float(r.cost.generations) for r in rows},
                                  {r.problem_id: r.cost.total_flops for r in rows}, options)
    return SweepData(out, summary, ids, budgets, n_max, arms, points, p1, final_scores,
                     pool_cost, scored, notes, pool_config)


def _needs_prm(name: str, strategy: str) -> bool:
    s = SWEEP_STRATEGIES.get(name)
    return s.needs_verifier if s is not None else strategy != "majority"


def baseline_label(data: SweepData, baseline: str) -> str:
    """The pool arm that is the best-of-N baseline, at the sweep's own aggregation."""
    if baseline not in ("best-of-n", "weighted-best-of-n"):
        raise ValueError(f"--baseline {baseline!r}: choose best-of-n or weighted-best-of-n")
    label = f"{baseline}/{data.summary.get('aggregation', 'last')}"
    if label not in data.arms:
        raise ValueError(f"sweep {data.out}: no PRM-scored pool, so there is no {baseline} "
                         "baseline; rerun the sweep with a verifier strategy")
    return label


