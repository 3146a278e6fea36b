"""Helpers shared by the verifier-guided search strategies (Snell et al. 2024).

Why these live in one place: every strategy must sample, split, score, vote and account the same
way, or their accuracy-vs-compute curves are not comparable.

Conventions used by every strategy in this package:

* **Seeds.** Every engine call gets ``derive_seed(ctx, problem, purpose, round, ...)``: the CRC-32
  of the ``repr`` of those values. It is stable across processes and Python versions (unlike
  ``hash``), equal for equal inputs (identical seeds give identical results) and different for
  different problems and rounds. Purposes are shared on purpose: majority and best-of-N draw the
  *same* solutions for the same seed (common random numbers), and lookahead with ``k=0`` draws
  exactly what beam search draws.
* **Identical prompts are sent once.** Many engines (vLLM and the OpenAI-compatible servers) seed
  each prompt of a batch separately, so two copies of one prompt in one call come back with the
  same samples. When several nodes share a prefix, the prefix is sent once with ``n`` multiplied
  by its multiplicity and the samples are handed out without overlap (:func:`sample_steps`); an
  identical solution is scored once (:func:`score_sequences`).
* **Trace.** ``Result.trace`` is a list with one dict per round: ``{"round": r, "nodes": [...]}``.
  Each node dict has ``id``, ``parent`` (``0`` is the problem prompt itself, which has no node),
  ``step`` (the text this node added, steps joined by the task's delimiter), ``score`` (the value
  the search ranked it by, ``None`` when unscored), ``kept`` (whether the search carried it on or
  selected it), ``finished`` and ``answer``; strategies add ``subtree`` (DVTS) or ``rollout``
  (lookahead). Following ``parent`` links gives every node's steps so far.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from ttscale.engines.base import SamplingParams
from ttscale.strategies import voting
from ttscale.strategies.base import OptInt, SearchContext, StrategyOptions
from ttscale.tasks.base import Task
from ttscale.types import Candidate, Completion, Cost, Problem, Result
from ttscale.verifiers.base import AGGREGATIONS, aggregate

ROOT_ID = 0


# ---------------------------------------------------------------------------------------------
# seeds, options, budget


def derive_seed(ctx: SearchContext, problem: Problem, *parts: object) -> int:
    """A 31-bit seed for one engine call, stable across runs and machines."""
    key = repr((ctx.seed, problem.id, *parts)).encode()
    return zlib.crc32(key) & 0x7FFFFFFF


def check_budget(budget: int) -> int:
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be an integer >= 1, got {budget!r}")
    return budget


def _aggregation(value: str) -> str:
    if value not in AGGREGATIONS:
        raise ValueError(f"choose one of {', '.join(AGGREGATIONS)}")
    return value


class AggregationOptions(StrategyOptions):
    """Options of every strategy that ranks solutions by their aggregated PRM step scores."""

    aggregation: Annotated[str, AfterValidator(_aggregation)] = Field(
        "last", description=f"how a solution's step scores become one score: "
        f"{', '.join(AGGREGATIONS)} (last is the paper's best)")


class BeamWidthOptions(AggregationOptions):
    """Options of the tree searches: beam width M, which must divide the budget N."""

    beam_width: OptInt = Field(4, ge=1, description="beam width M: candidates kept per beam "
                               "(tree searches keep N/M beams); N must be a multiple of M")

    def check_budget(self, budget: int) -> None:
        super().check_budget(budget)
        if budget < self.beam_width or budget % self.beam_width:
            raise ValueError(f"budget N={budget} must be a multiple of beam_width "
                             f"M={self.beam_width} and at least M")


def checked_options(ctx: SearchContext, budget: int, strategy: str) -> Any:
    """``ctx.options`` (parsed by the strategy's spec) after the budget checks of the options
    model; errors name the strategy."""
    check_budget(budget)
    opts = ctx.options
    try:
        opts.check_budget(budget)
    except ValueError as e:
        raise ValueError(str(e) if str(e).startswith(strategy) else f"{strategy}: {e}") from None
    return opts


def require_scorer(ctx: SearchContext, strategy: str) -> None:
    """Fail before spending anything when a verifier strategy has no verifier."""
    if ctx.scorer is None:
        raise ValueError(f"strategy {strategy!r} needs a verifier (PRM); none is configured "
                         f"(use 'majority' or configure a scorer)")


# ---------------------------------------------------------------------------------------------
# text


def split_steps(text: str, delimiter: str) -> list[str]:
    """Steps of a solution text; empty (whitespace-only) pieces are dropped."""
    return [piece for piece in text.split(delimiter) if piece.strip()]


def completion_steps(ctx: SearchContext, comp: Completion) -> tuple[list[str], bool]:
    """The steps a sampled continuation adds, and whether the solution ends with them.

    It ends when a step is final (later text is cut off: an engine that ignored the stop string
    may write past the answer), the model stopped (``eos``), the model's context is full
    (``context``: the beam stops before it would overflow), it produced no step at all
    (nothing left to expand), or the step was cut at the token limit (``length``): a step cut
    mid-way is not a finished step to build on, so the solution ends there (as search-and-learn
    ends a beam whose step hit ``max_tokens``) and its node keeps ``finish_reason="length"``.
    """
    task = ctx.task
    new = split_steps(comp.text, task.step_delimiter)
    for i, step in enumerate(new):
        if task.is_final_step(step):
            return new[: i + 1], True
    return new, comp.finish_reason in ("eos", "context", "length") or not new


def continuation_prompt(ctx: SearchContext, problem: Problem, steps: Sequence[str]) -> str:
    return problem.prompt + ctx.task.solution_text(list(steps))


# ---------------------------------------------------------------------------------------------
# search nodes


@dataclass(slots=True)
class Node:
    """A partial or finished solution inside a search (converted to a Candidate at the end)."""

    id: int
    parent: int
    steps: list[str]
    scores: list[float]
    n_new: int
    finished: bool
    finish_reason: str
    round: int
    answer: str | None = None
    #: what the search ranks this node by (newest step's score, or the lookahead value)
    value: float | None = None
    subtree: int | None = None
    rollout: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def new_text(self, delimiter: str) -> str:
        return delimiter.join(self.steps[len(self.steps) - self.n_new:])

    def to_candidate(self) -> Candidate:
        meta: dict[str, Any] = {"node": self.id, "round": self.round,
                                "finish_reason": self.finish_reason, **self.meta}
        if self.subtree is not None:
            meta["subtree"] = self.subtree
        return Candidate(list(self.steps), list(self.scores), self.finished, self.answer, meta)

    def trace_entry(self, delimiter: str, kept: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": self.id, "parent": self.parent,
                                 "step": self.new_text(delimiter), "score": self.value,
                                 "kept": kept, "finished": self.finished, "answer": self.answer}
        if self.subtree is not None:
            entry["subtree"] = self.subtree
        if self.rollout is not None:
            entry["rollout"] = list(self.rollout)
        return entry


def root_node() -> Node:
    return Node(ROOT_ID, -1, [], [], 0, False, "", -1)


def rank_key(node: Node) -> float:
    """Sort key for 'best first' with ``sorted(..., key=..., reverse=False)``: unscored last."""
    return -node.value if node.value is not None else float("inf")


def best_index(nodes: Sequence[Node]) -> int:
    """Index of the highest-valued node; the first one wins ties (deterministic)."""
    return min(range(len(nodes)), key=lambda i: (rank_key(nodes[i]), i))


def top_indices(nodes: Sequence[Node], k: int) -> list[int]:
    """Indices of the ``k`` highest-valued nodes, best first; earlier nodes win ties."""
    return sorted(range(len(nodes)), key=lambda i: (rank_key(nodes[i]), i))[:k]


class Run:
    """Bookkeeping of one strategy run: wall time, node ids, trace, the final Result."""

    def __init__(self, strategy: str, problem: Problem, ctx: SearchContext) -> None:
        self.strategy, self.problem, self.ctx = strategy, problem, ctx
        self.t0 = time.perf_counter()
        self.engine_s0, self.scorer_s0 = ctx.engine_s, ctx.scorer_s
        self.next_id = ROOT_ID + 1
        self.trace: list[dict[str, Any]] = []

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def child(self, parent: Node, comp: Completion, rnd: int) -> Node:
        """The node that ``comp`` (a sampled next step) makes of ``parent``.

        If an engine ignored the stop string and wrote several steps, all are kept (scored
        together); see :func:`completion_steps` for when the node is finished.
        """
        task = self.ctx.task
        new, finished = completion_steps(self.ctx, comp)
        steps = parent.steps + new
        node = Node(self.new_id(), parent.id, steps, list(parent.scores), len(new), finished,
                    comp.finish_reason, rnd)
        if finished:
            node.answer = task.extract_answer(task.solution_text(steps))
            if not new:
                # nothing new to score: "stop here" is worth what the prefix was worth, and a
                # stop without an answer is worth nothing to the search
                node.value = parent.scores[-1] if parent.scores and node.answer else None
        return node

    def add_round(self, rnd: int, nodes: Sequence[Node], kept: Sequence[bool],
                  **extra: Any) -> None:
        delim = self.ctx.task.step_delimiter
        entries = [n.trace_entry(delim, k) for n, k in zip(nodes, kept, strict=True)]
        self.trace.append({"round": rnd, **extra, "nodes": entries})

    def result(self, answer: str | None, candidates: list[Candidate],
               **meta: Any) -> Result:
        """Stop the clock, add this run's wall time to ``ctx.cost`` and build the Result."""
        ctx = self.ctx
        ctx.cost.wall_s += time.perf_counter() - self.t0
        meta = {"strategy": self.strategy, "engine_s": ctx.engine_s - self.engine_s0,
                "scorer_s": ctx.scorer_s - self.scorer_s0, **meta}
        return Result(self.problem.id, answer, candidates, Cost.from_dict(ctx.cost.to_dict()),
                      self.trace, meta=meta)


# ---------------------------------------------------------------------------------------------
# engine and verifier calls


def _check_counts(out: list[list[Completion]], n_prompts: int, n: int) -> None:
    if len(out) != n_prompts:
        raise RuntimeError(f"generator returned {len(out)} completion lists for {n_prompts} "
                           f"prompts")
    for i, comps in enumerate(out):
        if len(comps) != n:
            raise RuntimeError(f"generator returned {len(comps)} completions for prompt {i}, "
                               f"expected n={n}")


def sample_solutions(ctx: SearchContext, problem: Problem, n: int, seed: int) -> list[Candidate]:
    """``n`` full solutions in one call, each counted as one generation."""
    params = SamplingParams(n=n, temperature=ctx.temperature, top_p=ctx.top_p,
                            max_tokens=ctx.max_solution_tokens, seed=seed)
    out = ctx.sample([problem.prompt], params)
    _check_counts(out, 1, n)
    return [solution_candidate(ctx.task, comp) for comp in out[0]]


def solution_candidate(task: Task, comp: Completion) -> Candidate:
    """The Candidate a sampled full solution makes (steps, finished, answer; no scores)."""
    steps = split_steps(comp.text, task.step_delimiter)
    finished = (comp.finish_reason in ("eos", "length", "context")
                or (bool(steps) and task.is_final_step(steps[-1])))
    return Candidate(steps, [], finished, task.extract_answer(comp.text),
                     {"finish_reason": comp.finish_reason,
                      "generated_tokens": comp.generated_tokens})


def sample_steps(ctx: SearchContext, problem: Problem, prefixes: Sequence[Sequence[str]],
                 width: int, seed: int, *, temperature: float | None = None,
                 logprobs: int | None = None) -> list[list[Completion]]:
    """``width`` next steps for every prefix, in ONE engine call (not counted as generations).

    Identical prefixes are sent once. When sampling, such a prompt is asked for
    ``n = width x multiplicity`` samples, dealt out without overlap, so seeded engines cannot
    return the same sample twice; when multiplicities differ, the other prompts get surplus
    samples that are dropped, their tokens staying in the cost (they were spent). Greedy
    decoding (temperature 0) gives every copy the same ``width`` samples: they would be equal.
    """
    if not prefixes:
        return []
    temp = ctx.temperature if temperature is None else temperature
    prompts = [continuation_prompt(ctx, problem, p) for p in prefixes]
    mult: dict[str, int] = {}
    for p in prompts:
        mult[p] = mult.get(p, 0) + 1
    unique = list(mult)
    greedy = temp == 0
    n = width if greedy else width * max(mult.values())
    params = SamplingParams(n=n, temperature=temp, top_p=ctx.top_p,
                            max_tokens=ctx.max_step_tokens, stop=(ctx.task.step_delimiter,),
                            seed=seed, logprobs=logprobs)
    out = ctx.sample(unique, params, count_generations=False)
    _check_counts(out, len(unique), n)
    pools = dict(zip(unique, out, strict=True))
    used = dict.fromkeys(unique, 0)
    dealt = []
    for p in prompts:
        i = used[p]
        dealt.append(pools[p][i: i + width])
        if not greedy:
            used[p] = i + width
    return dealt


def sample_next_steps(ctx: SearchContext, problem: Problem, prefixes: Sequence[Sequence[str]],
                      seed: int, *, logprobs: int | None = None) -> list[Completion]:
    """One next step for every prefix, with no surplus samples (not counted as generations).

    For populations whose copies of one prefix vary in number (resampled particles, DeepConf
    traces): :func:`sample_steps` asks every prompt for the largest multiplicity, which would
    waste samples here. Prompts are grouped by multiplicity instead, one engine call per
    distinct multiplicity (``n`` = that multiplicity, seeds derived from ``seed`` and it), and
    the samples dealt out without overlap. At temperature 0 each distinct prompt is sampled
    once and every copy gets that step.
    """
    prompts = [continuation_prompt(ctx, problem, p) for p in prefixes]

    def sample(group: list[str], m: int) -> list[list[Completion]]:
        params = SamplingParams(n=m, temperature=ctx.temperature, top_p=ctx.top_p,
                                max_tokens=ctx.max_step_tokens,
                                stop=(ctx.task.step_delimiter,),
                                seed=zlib.crc32(repr((seed, m)).encode()) & 0x7FFFFFFF,
                                logprobs=logprobs)
        return ctx.sample(group, params, count_generations=False)

    return deal_by_multiplicity(prompts, ctx.temperature == 0, sample)


def deal_by_multiplicity(prompts: Sequence[str], greedy: bool,
                         sample: Callable[[list[str], int], list[list[Completion]]]
                         ) -> list[Completion]:
    """One completion per prompt with no surplus sample: identical prompts are asked once with
    ``n`` = their multiplicity, prompts of equal multiplicity share one ``sample(group, n)``
    call, and the samples are dealt out without overlap. ``greedy``: each distinct prompt is
    sampled once and every copy gets that sample (they would be equal anyway)."""
    mult: dict[str, int] = {}
    for p in prompts:
        mult[p] = mult.get(p, 0) + 1
    groups: dict[int, list[str]] = {}
    for p, m in mult.items():
        groups.setdefault(1 if greedy else m, []).append(p)
    pools: dict[str, list[Completion]] = {}
    for m, group in sorted(groups.items()):
        out = sample(group, m)
        _check_counts(out, len(group), m)
        pools.update(zip(group, out, strict=True))
    used = dict.fromkeys(mult, 0)
    dealt = []
    for p in prompts:
        dealt.append(pools[p][used[p]])
        if not greedy:
            used[p] += 1
    return dealt


def score_sequences(ctx: SearchContext, problem: Problem,
                    sequences: Sequence[Sequence[str]]) -> list[list[float]]:
    """Per-step PRM scores of each step sequence, in ONE verifier call; duplicates scored once."""
    index: dict[tuple[str, ...], int] = {}
    unique: list[list[str]] = []
    slots = []
    for seq in sequences:
        key = tuple(seq)
        if key not in index:
            index[key] = len(unique)
            unique.append(list(seq))
        slots.append(index[key])
    if not unique:
        return []
    scores = ctx.score([problem.prompt] * len(unique), unique)
    if len(scores) != len(unique):
        raise RuntimeError(f"verifier returned {len(scores)} score lists for {len(unique)} "
                           f"solutions")
    for seq, s in zip(unique, scores, strict=True):
        if len(s) != len(seq):
            raise RuntimeError(f"verifier returned {len(s)} scores for a {len(seq)}-step "
                               f"solution")
    return [list(scores[i]) for i in slots]


def score_new_nodes(ctx: SearchContext, problem: Problem, nodes: Sequence[Node]) -> None:
    """Score the nodes that added steps (one call); set their new steps' scores and value."""
    todo = [n for n in nodes if n.n_new]
    for node, s in zip(todo, score_sequences(ctx, problem, [n.steps for n in todo]), strict=True):
        node.scores = node.scores + s[len(node.steps) - node.n_new:]
        node.value = node.scores[-1]


# ---------------------------------------------------------------------------------------------
# choosing the answer


def majority_vote(candidates: Sequence[Candidate]) -> tuple[str | None, dict[str, int]]:
    """Most frequent answer; a tie goes to the answer that reached that count first
    (``voting.majority``)."""
    return voting.majority(c.answer for c in candidates)


def weighted_vote(candidates: Sequence[Candidate],
                  how: str = "last") -> tuple[str | None, dict[str, float]]:
    """Answer with the largest sum of aggregated scores; a tie goes to the first answer seen
    (``voting.weighted``)."""
    return voting.weighted((c.answer, aggregate(c.scores, how)) for c in candidates
                           if c.answer is not None)


def best_candidate(candidates: Sequence[Candidate], how: str = "last") -> int | None:
    """Index of the best-scored candidate that states an answer (first wins ties), or None
    (``voting.best``). A solution without an answer can never be graded right, so it is never
    selected."""
    return voting.best((c.answer, aggregate(c.scores, how) if c.answer is not None else 0.0)
                       for c in candidates)


def cut_pool(pool: Sequence[Candidate], size: int, how: str) -> list[Candidate]:
    """The ``size`` best-scored candidates of ``pool`` (aggregated score, best first; earlier
    candidates win ties): beam search's finished pool is cut to N before the vote, as in
    search-and-learn, so a search that finished more than N solutions votes with N of them."""
    order = sorted(range(len(pool)),
                   key=lambda i: (-aggregate(pool[i].scores, how) if pool[i].scores
                                  else float("inf"), i))
    return [pool[i] for i in order[:size]]


def pool_answer(finished: Sequence[Candidate], unfinished: Sequence[Candidate],
                how: str) -> tuple[str | None, dict[str, float]]:
    """Weighted best-of-N over finished solutions; unfinished ones vote only if none can."""
    answer, totals = weighted_vote(finished, how)
    if answer is None:
        answer, totals = weighted_vote(unfinished, how)
    return answer, totals
