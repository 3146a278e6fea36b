"""What every strategy shares: the search context, metered engine/verifier calls, and the
types a strategy declares itself with (``StrategyOptions``, ``StrategySpec``).

A strategy is a function ``(problem, budget, ctx) -> Result``. It talks to the policy and the
verifier only through ``ctx.sample`` / ``ctx.score``, which count every token, FLOP and second
spent, so costs are right for tree search too (prefix reuse is reported as cached tokens).

Each strategy module also defines a typed options model (a ``StrategyOptions`` subclass); the
registry (``ttscale.strategies.registry``) lists every built-in as a ``StrategySpec`` that ties
the function to its options and its facts (needs a verifier, uses a reviser, ...). Options are
parsed and checked once, before anything is spent, so a typo such as ``beam_widht`` is an error
and not a silently ignored key.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from ttscale.engines.base import Generator, SamplingParams
from ttscale.tasks.base import Task
from ttscale.types import Completion, Cost, Problem, Result
from ttscale.verifiers.base import StepScorer


def _no_bool(value: Any) -> Any:
    # pydantic would read True as 1: a YAML `yes` is never a beam width
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    return value


#: an integer option that refuses booleans (digit strings from a command line are accepted)
OptInt = Annotated[int, BeforeValidator(_no_bool)]


class StrategyOptions(BaseModel):
    """Base of every strategy's typed options: unknown keys are errors, instances are frozen.

    A subclass declares its options as fields (with defaults and a ``description``, which
    ``ttscale strategies`` prints) and may override :meth:`check_budget` for rules that tie an
    option to the budget (beam width divides N, ...). Parsing needs no context and no model, so
    a bad option fails before anything loads.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    def check_budget(self, budget: int) -> None:
        """Raise a one-line ValueError when this strategy cannot run at ``budget``."""
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"budget must be an integer >= 1, got {budget!r}")


StrategyFn = Callable[[Problem, int, "SearchContext"], Result]


@dataclass(frozen=True)
class StrategySpec:
    """A strategy and the facts other parts need about it, declared once.

    ``needs_verifier``: a PRM is loaded (and named in the run key) for it; ``uses_reviser``: a
    configured revision model is loaded for it; ``reuses_probe``: compute-optimal may hand it the
    difficulty probe's samples (it draws independent full solutions in one call);
    ``file_options``: options that name a file whose content goes into the run key.

    Calling a spec runs the strategy; a plain mapping in ``ctx.options`` is parsed into the
    options model first (the context then holds the parsed instance).
    """

    name: str
    fn: StrategyFn
    options: type[StrategyOptions] = StrategyOptions
    needs_verifier: bool = True
    uses_reviser: bool = False
    reuses_probe: bool = False
    file_options: tuple[str, ...] = ()
    description: str = ""

    def parse(self, raw: Mapping[str, Any] | StrategyOptions | None = None,
              budget: int | None = None) -> StrategyOptions:
        """The typed options of ``raw`` (defaults filled), checked against ``budget`` if given;
        a one-line ValueError naming the key otherwise."""
        if isinstance(raw, self.options):
            opts = raw
        elif isinstance(raw, StrategyOptions):
            raise ValueError(f"strategy {self.name!r} got the options of another strategy "
                             f"({type(raw).__name__})")
        else:
            opts = _validate(self, dict(raw or {}))
        if budget is not None:
            try:
                opts.check_budget(budget)
            except ValueError as e:
                msg = str(e)
                raise ValueError(msg if msg.startswith(self.name) else
                                 f"{self.name}: {msg}") from None
        return opts

    def __call__(self, problem: Problem, budget: int, ctx: SearchContext) -> Result:
        ctx.options = self.parse(ctx.options)
        return self.fn(problem, budget, ctx)


def _validate(spec: StrategySpec, raw: dict[str, Any]) -> StrategyOptions:
    try:
        return spec.options.model_validate(raw)
    except ValidationError as e:
        raise ValueError(_options_message(spec, e)) from None


def _options_message(spec: StrategySpec, e: ValidationError) -> str:
    """One line naming the first bad key (and how many more there are)."""
    err = e.errors()[0]
    key = ".".join(str(x) for x in err["loc"]) or "options"
    known = list(spec.options.model_fields)
    more = f"; and {len(e.errors()) - 1} more error(s)" if len(e.errors()) > 1 else ""
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(key, known, n=1)
        hint = (f"; did you mean {close[0]!r}?" if close else
                f"; its options: {', '.join(known)}" if known else "; it takes no options")
        return f"strategy {spec.name!r} has no option {key!r}{hint}{more}"
    if err["type"] == "missing":
        return f"strategy {spec.name!r} needs option {key!r} (--set options.{key}=...){more}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{spec.name}: option {key}={err.get('input')!r}: {msg}{more}"


@dataclass(frozen=True)
class SearchSettings:
    """How a search samples, decided once per run (or per proxy request): the seed every engine
    call derives its own from, the sampling temperature and top-p, the token limits of a step
    and of a full solution, and the most rounds a step-wise search takes. ``RunConfig`` and the
    proxy's config both produce one (``search_settings()``); ``SearchContext.from_settings``
    holds it."""

    seed: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    max_step_tokens: int = 64
    max_solution_tokens: int = 256
    max_rounds: int = 40


@dataclass
class SearchContext:
    """Everything a strategy may use. ``options`` holds the strategy's parsed options (a
    ``StrategyOptions`` instance; a plain mapping is parsed when the strategy is called through
    its ``StrategySpec``)."""

    task: Task
    generator: Generator
    scorer: StepScorer | None = None
    seed: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    max_step_tokens: int = 64
    max_solution_tokens: int = 256
    max_rounds: int = 40
    #: the strategy's hyper-parameters, read with attribute access inside a strategy
    options: Any = field(default_factory=dict)
    cost: Cost = field(default_factory=Cost)
    #: seconds spent inside engine and verifier calls (for the overhead bench)
    engine_s: float = 0.0
    scorer_s: float = 0.0
    #: the revision model (Snell et al. 2024, section 6), used through ``revise``; None means
    #: the policy ``generator`` revises its own attempts
    reviser: Generator | None = None

    @classmethod
    def from_settings(cls, task: Task, generator: Generator, settings: SearchSettings, *,
                      scorer: StepScorer | None = None, reviser: Generator | None = None,
                      options: Any = None) -> SearchContext:
        """The context of one run: its models, its settings and its parsed options."""
        return cls(task=task, generator=generator, scorer=scorer, seed=settings.seed,
                   temperature=settings.temperature, top_p=settings.top_p,
                   max_step_tokens=settings.max_step_tokens,
                   max_solution_tokens=settings.max_solution_tokens,
                   max_rounds=settings.max_rounds,
                   options={} if options is None else options, reviser=reviser)

    @property
    def settings(self) -> SearchSettings:
        return SearchSettings(self.seed, self.temperature, self.top_p, self.max_step_tokens,
                              self.max_solution_tokens, self.max_rounds)

    def fresh(self) -> SearchContext:
        """A copy with zeroed meters, for one problem."""
        return SearchContext(self.task, self.generator, self.scorer, self.seed, self.temperature,
                             self.top_p, self.max_step_tokens, self.max_solution_tokens,
                             self.max_rounds, _copy_options(self.options), reviser=self.reviser)

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
        self.cost.policy_flops += Cost.flops(generator.num_parameters,
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
        self.cost.prm_flops += Cost.flops(self.scorer.num_parameters,
                                          res.tokens - res.tokens_cached)
        return res.scores


def _copy_options(options: Any) -> Any:
    """Parsed options are frozen and shared; a raw mapping is copied."""
    return dict(options) if isinstance(options, Mapping) else options
