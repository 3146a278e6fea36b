"""What every strategy shares: the search context, metered engine/verifier calls, the registry.

A strategy is a function ``(problem, budget, ctx) -> Result``. It talks to the policy and the
verifier only through ``ctx.sample`` / ``ctx.score``, which count every token, FLOP and second
spent, so costs are right for tree search too (prefix reuse is reported as cached tokens).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ttscale.engines.base import Generator, SamplingParams
from ttscale.tasks.base import Task
from ttscale.types import Completion, Cost, Problem, Result
from ttscale.verifiers.base import StepScorer


@dataclass
class SearchContext:
    """Everything a strategy may use. ``options`` holds strategy hyper-parameters
    (e.g. ``beam_width``, ``lookahead``, ``aggregation``), validated by each strategy."""

    task: Task
    generator: Generator
    scorer: StepScorer | None = None
    seed: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    max_step_tokens: int = 64
    max_solution_tokens: int = 256
    max_rounds: int = 40
    options: dict[str, Any] = field(default_factory=dict)
    cost: Cost = field(default_factory=Cost)
    #: seconds spent inside engine and verifier calls (for the overhead bench)
    engine_s: float = 0.0
    scorer_s: float = 0.0
    #: the revision model (Snell et al. 2024, section 6), used through ``revise``; None means
    #: the policy ``generator`` revises its own attempts
    reviser: Generator | None = None

    def fresh(self) -> SearchContext:
        """A copy with zeroed meters, for one problem."""
        return SearchContext(self.task, self.generator, self.scorer, self.seed, self.temperature,
                             self.top_p, self.max_step_tokens, self.max_solution_tokens,
                             self.max_rounds, dict(self.options), reviser=self.reviser)

    def sample(self, prompts: list[str], params: SamplingParams,
               count_generations: bool = True) -> list[list[Completion]]:
        """Metered ``generator.generate``. ``count_generations`` is False for partial steps and
        rollouts that the strategy accounts for in its own ``generations`` budget."""
        return self._metered(self.generator, prompts, params, count_generations)

    def revise(self, prompts: list[str], params: SamplingParams,
               count_generations: bool = True) -> list[list[Completion]]:
        """Metered generation by the revision model (``reviser``, else the policy).

        Its tokens and FLOPs are counted like the policy's (``prompt_tokens``,
        ``generated_tokens``, ``policy_flops`` with the reviser's own parameter count): the
        revision model is a fine-tuned policy, and a budget comparison must include it.
        """
        model = self.generator if self.reviser is None else self.reviser
        return self._metered(model, prompts, params, count_generations)

    def _metered(self, generator: Generator, prompts: list[str], params: SamplingParams,
                 count_generations: bool) -> list[list[Completion]]:
        t0 = time.perf_counter()
        out = generator.generate(prompts, params)
        self.engine_s += time.perf_counter() - t0
        gen_tokens = prompt_tokens = cached = 0
        for comps in out:
            for c in comps:
                gen_tokens += c.generated_tokens
                prompt_tokens += c.prompt_tokens
                cached += c.prompt_tokens_cached
        self.cost.generated_tokens += gen_tokens
        self.cost.prompt_tokens += prompt_tokens
        self.cost.prompt_tokens_cached += cached
        self.cost.policy_flops += 2.0 * generator.num_parameters * (
            prompt_tokens - cached + gen_tokens)
        if count_generations:
            self.cost.generations += sum(len(c) for c in out)
        return out

    def score(self, prompts: Sequence[str],
              solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        """Metered ``scorer.score``; raises if the strategy needs a verifier and has none."""
        if self.scorer is None:
            raise ValueError("this strategy needs a verifier (PRM); none is configured")
        if not solutions:
            return []
        t0 = time.perf_counter()
        res = self.scorer.score(prompts, solutions)
        self.scorer_s += time.perf_counter() - t0
        self.cost.prm_tokens += res.tokens
        self.cost.prm_tokens_cached += res.tokens_cached
        self.cost.prm_flops += 2.0 * self.scorer.num_parameters * (res.tokens - res.tokens_cached)
        return res.scores


StrategyFn = Callable[[Problem, int, SearchContext], Result]
STRATEGIES: dict[str, StrategyFn] = {}


def register(name: str) -> Callable[[StrategyFn], StrategyFn]:
    def deco(fn: StrategyFn) -> StrategyFn:
        STRATEGIES[name] = fn
        return fn
    return deco


def get_strategy(name: str) -> StrategyFn:
    import ttscale.strategies  # noqa: F401  (registers the built-in strategies)

    if name not in STRATEGIES:
        known = ", ".join(sorted(STRATEGIES))
        raise ValueError(f"unknown strategy {name!r}; choose one of {known}")
    return STRATEGIES[name]
