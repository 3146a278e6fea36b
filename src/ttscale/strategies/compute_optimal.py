"""Compute-optimal test-time scaling (Snell et al. 2024): per question, estimate its difficulty,
then run the strategy a policy table chose for that difficulty and budget.

Options (``ComputeOptimalOptions``): ``policy_table`` (required): a policy table built by
``ttscale optimal`` (``strategies.policy_table``); ``probe_k`` (default: the table's
``probe.k``): probe size; ``reuse_probe``
(default: the table's ``probe.reuse``); ``probe_within_budget`` (default false, see step 2). The
chosen strategy runs with exactly the table's options for its entry (the other options of this
run are not passed on).

With budget N, per question:

1. **difficulty probe** (``difficulty_probe.run_probe``): ``k`` full solutions, scored by the
   PRM; their mean final-step score is binned with the table's cut points. Its FLOPs are charged
   to ``Cost.difficulty_flops``, its tokens to the token counters, its ``k`` samples to
   ``generations``;
2. **lookup** (``PolicyTable.lookup``): the entry of the question's bin at the largest table
   budget ``b <= N``; the probe's cost comes on top of it (``N + k`` generations at most, or
   ``max(N, k)`` when its samples are reused), which is exactly what the offline analysis
   charges for "compute-optimal at budget N". With ``probe_within_budget`` true, the probe is
   paid out of N instead: the largest ``b`` whose entry fits in N generations with the probe
   counted (a budget too small for the probe is then an error);
3. **delegation**: the entry's strategy runs at budget ``b`` through its registry spec, with the
   entry's options. When it is majority / best-of-N / weighted best-of-N (``reuses_probe``) the
   probe's samples are reused as ``min(b, k)`` of its ``b`` samples: its first full-solution
   call gets them back and only the rest is sampled (with a seed of its own, so the fresh
   samples are not copies of the probe's), and already scored solutions are not scored again.
   Their tokens and FLOPs are then not counted a second time.

The Result is the delegate's, with cost = probe + delegate - reused, ``meta["compute_optimal"]``
recording the choice (bin, probe score, table budget, strategy, options, reused samples,
difficulty FLOPs), and a first trace entry ``{"compute_optimal": {...}, "nodes": []}`` with the
same and the probe's answers and scores (``nodes`` is empty so that trace readers that walk
nodes see only the delegate's search).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, StrictBool

from ttscale.engines.base import SamplingParams
from ttscale.strategies.base import OptInt, SearchContext, StrategyOptions
from ttscale.strategies.common import checked_options, derive_seed, require_scorer
from ttscale.strategies.difficulty_probe import Probe, reused_samples, run_probe
from ttscale.strategies.policy_table import PolicyTable, load_table
from ttscale.types import Completion, Cost, Problem, Result
from ttscale.verifiers.base import StepScores

_TABLES: dict[tuple[str, int, int], PolicyTable] = {}


def load_policy_table(spec: str | Path) -> PolicyTable:
    """The policy table at ``spec``, loaded once per file version."""
    path = Path(spec)
    try:
        st = path.stat()
    except OSError:
        return load_table(path)  # raises the one-line "not found" error
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _TABLES:
        _TABLES[key] = load_table(path)
    return _TABLES[key]


class ComputeOptimalOptions(StrategyOptions):
    """Options of compute-optimal scaling; the table's own probe settings are the defaults."""

    policy_table: str | None = Field(
        None, description="the policy table (JSON) built by `ttscale optimal`; required")
    probe_k: OptInt | None = Field(
        None, ge=1, description="difficulty probe size k (default: the table's probe.k)")
    reuse_probe: StrictBool | None = Field(
        None, description="reuse the probe's samples in majority/best-of-N (default: the "
        "table's probe.reuse)")
    probe_within_budget: StrictBool = Field(
        False, description="pay the probe out of the budget N instead of on top of it")

    def table(self) -> PolicyTable:
        if not self.policy_table:
            raise ValueError("compute-optimal needs a policy table: --set "
                             "options.policy_table=TABLE.json (build one with `ttscale optimal "
                             "--sweep DIR --out TABLE.json`)")
        return load_policy_table(self.policy_table)

    def probe(self, table: PolicyTable) -> tuple[int, bool]:
        """``(k, reuse)``: this run's probe size and reuse, the table's unless set."""
        k = table.probe.k if self.probe_k is None else self.probe_k
        reuse = table.probe.reuse if self.reuse_probe is None else self.reuse_probe
        return k, reuse

    def check_budget(self, budget: int) -> None:
        super().check_budget(budget)
        table = self.table()
        k, reuse = self.probe(table)
        if self.probe_within_budget and budget < k:
            raise ValueError(f"budget N={budget} is smaller than the difficulty probe (k={k} "
                             f"samples); use --budget >= {k} or a smaller options.probe_k")
        if not self.probe_within_budget:
            table.lookup(1, budget, k, reuse)  # a budget below the table's fails before sampling


class _ReuseGenerator:
    """The delegate's generator: its first full-solution call on the problem prompt gets the
    probe's completions back (``min(n, k)`` of them) and only the rest is sampled."""

    def __init__(self, inner: Any, probe: Probe, prompt: str, seed: int) -> None:
        self.inner, self.probe, self.prompt, self.seed = inner, probe, prompt, seed
        self.num_parameters = inner.num_parameters
        self.reused: list[Completion] = []

    def _matches(self, prompts: list[str], params: SamplingParams) -> bool:
        p = self.probe.params
        return (not self.reused and prompts == [self.prompt] and params.stop == p.stop
                and params.max_tokens == p.max_tokens and params.temperature == p.temperature
                and params.top_p == p.top_p)

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        if not self._matches(prompts, params):
            return self.inner.generate(prompts, params)
        self.reused = list(self.probe.completions[: params.n])
        comps = list(self.reused)
        if params.n > len(comps):
            rest = dataclasses.replace(params, n=params.n - len(comps), seed=self.seed)
            fresh = self.inner.generate(prompts, rest)
            if len(fresh) != 1:
                raise RuntimeError(f"generator returned {len(fresh)} completion lists for 1 "
                                   "prompt")
            comps += fresh[0]
        return [comps]


class _ReuseScorer:
    """The delegate's verifier: solutions the probe already scored are answered from the probe
    (no tokens counted), the rest go to the real verifier in one call."""

    def __init__(self, inner: Any, probe: Probe, prompt: str) -> None:
        self.inner = inner
        self.num_parameters = inner.num_parameters
        self.known = {(prompt, tuple(c.steps)): list(c.scores)
                      for c in probe.candidates if c.steps}

    def score(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> StepScores:
        out: list[list[float] | None] = []
        todo: list[int] = []
        for i, (p, s) in enumerate(zip(prompts, solutions, strict=True)):
            hit = self.known.get((p, tuple(s)))
            out.append(None if hit is None else list(hit))
            if hit is None:
                todo.append(i)
        tokens = cached = 0
        if todo:
            res = self.inner.score([prompts[i] for i in todo], [solutions[i] for i in todo])
            for i, s in zip(todo, res.scores, strict=True):
                out[i] = list(s)
            tokens, cached = res.tokens, res.tokens_cached
        return StepScores([s if s is not None else [] for s in out], tokens, cached)


def _reused_cost(comps: Sequence[Completion], num_parameters: int) -> Cost:
    """What the delegate's meters counted for completions it got back from the probe."""
    c = Cost(generations=len(comps))
    for x in comps:
        c.prompt_tokens += x.prompt_tokens
        c.prompt_tokens_cached += x.prompt_tokens_cached
        c.generated_tokens += x.generated_tokens
    c.policy_flops = Cost.flops(num_parameters, c.prompt_tokens - c.prompt_tokens_cached
                                + c.generated_tokens)
    return c


def compute_optimal(problem: Problem, budget: int, ctx: SearchContext) -> Result:
    # the registry lists this strategy and this strategy dispatches through the registry
    from ttscale.strategies.registry import get_spec

    t0 = time.perf_counter()
    opts: ComputeOptimalOptions = checked_options(ctx, budget, "compute-optimal")
    table = opts.table()
    k, reuse = opts.probe(table)
    within = opts.probe_within_budget
    require_scorer(ctx, "compute-optimal")

    probe_ctx = ctx.fresh()
    probe = run_probe(probe_ctx, problem, k, derive_seed(ctx, problem, "difficulty"))
    bin_ = table.bin_of(probe.score)
    b, entry = table.lookup(bin_, budget, k, reuse, within_budget=within)
    strategy = get_spec(entry.strategy)

    reusing = reuse and strategy.reuses_probe
    gen: Any = ctx.generator
    scorer: Any = ctx.scorer
    if reusing:
        gen = _ReuseGenerator(ctx.generator, probe, problem.prompt,
                              derive_seed(ctx, problem, "compute-optimal", "rest"))
        scorer = _ReuseScorer(ctx.scorer, probe, problem.prompt)
    sub = SearchContext.from_settings(ctx.task, gen, ctx.settings, scorer=scorer,
                                      reviser=ctx.reviser, options=dict(entry.options))
    result = strategy(problem, b, sub)

    reused = gen.reused if reusing else []
    expected = reused_samples(entry.strategy, b, k, reuse)
    if reusing and len(reused) != expected:
        raise RuntimeError(f"compute-optimal: {entry.strategy} did not draw its samples the "
                           f"way the probe reuse expects ({len(reused)} reused, expected "
                           f"{expected})")
    cost = Cost().add(probe.cost).add(result.cost)
    cost.subtract(_reused_cost(reused, ctx.generator.num_parameters))  # not spent twice
    cost.wall_s = time.perf_counter() - t0
    # ctx meters stay in step with the returned cost (the runner reads result.cost)
    ctx.cost = cost.copy()
    ctx.engine_s += probe_ctx.engine_s + sub.engine_s
    ctx.scorer_s += probe_ctx.scorer_s + sub.scorer_s

    choice = {
        "bin": bin_, "probe_score": probe.score, "probe_k": k, "budget": budget,
        "table_budget": b, "strategy": entry.strategy, "options": dict(entry.options),
        "label": entry.label, "reused_samples": len(reused),
        "difficulty_flops": probe.cost.difficulty_flops, "bins_kind": table.bins.kind,
        "table_version": table.schema_version,
    }
    probe_view = [{"answer": c.answer, "score": c.scores[-1] if c.scores else None,
                   "finished": c.finished} for c in probe.candidates]
    result.cost = cost
    result.meta = {**result.meta, "strategy": "compute-optimal",
                   "delegate_strategy": result.meta.get("strategy", entry.strategy),
                   "compute_optimal": choice}
    result.trace = [{"compute_optimal": {**choice, "probe": probe_view}, "nodes": []},
                    *result.trace]
    return result
