"""Plain data types shared by every layer: tasks, engines, verifiers, strategies, store.

They are dataclasses (not pydantic models) because strategies create many thousands of them in
hot loops; validation of untrusted input happens at the edges (config, dataset loaders, CLI).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One question. ``prompt`` is the exact text the policy sees before its first step."""

    id: str
    question: str
    answer: str
    prompt: str
    difficulty: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Completion:
    """One sampled continuation from a Generator.

    ``text`` excludes the stop string that ended it; ``finish_reason`` is ``"stop"`` (a stop string
    was produced), ``"eos"`` (the model ended the sequence), ``"length"`` (max_tokens reached) or
    ``"context"`` (the model's context is full: nothing more can follow, the solution ends here).

    When log-probabilities were asked for (``SamplingParams.logprobs=k``): ``token_logprobs``
    holds the log-probability of each generated token, ``top_logprobs`` the k largest
    log-probabilities at each generated position, in descending order (DeepConf-style
    confidence is read from these). Both stay None otherwise.
    """

    text: str
    finish_reason: str
    prompt_tokens: int
    generated_tokens: int
    prompt_tokens_cached: int = 0
    token_logprobs: list[float] | None = None
    top_logprobs: list[list[float]] | None = None


@dataclass
class Candidate:
    """A (partial or finished) solution: its steps, one verifier score per step, its answer."""

    steps: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    finished: bool = False
    answer: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def copy(self) -> Candidate:
        return Candidate(list(self.steps), list(self.scores), self.finished, self.answer,
                         dict(self.meta))


COST_KEYS = (
    "generations",
    "prompt_tokens",
    "prompt_tokens_cached",
    "generated_tokens",
    "prm_tokens",
    "prm_tokens_cached",
    "policy_flops",
    "prm_flops",
    "difficulty_flops",
    "wall_s",
)


@dataclass
class Cost:
    """Everything a strategy spent (contract keys: the README's "Cost accounting").

    FLOPs are 2 x parameters x tokens actually processed; prompt tokens served from a cache are
    reported in ``*_cached`` and excluded from FLOPs.
    """

    generations: int = 0
    prompt_tokens: int = 0
    prompt_tokens_cached: int = 0
    generated_tokens: int = 0
    prm_tokens: int = 0
    prm_tokens_cached: int = 0
    policy_flops: float = 0.0
    prm_flops: float = 0.0
    difficulty_flops: float = 0.0
    wall_s: float = 0.0

    @property
    def total_flops(self) -> float:
        return self.policy_flops + self.prm_flops + self.difficulty_flops

    def add(self, other: Cost) -> Cost:
        """Add ``other`` into this cost (in place); returns self."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def subtract(self, other: Cost, *, wall: bool = False) -> Cost:
        """Take ``other`` out of this cost (in place; e.g. samples reused, not spent twice);
        the wall time stays unless ``wall``. Returns self."""
        for f in fields(self):
            if wall or f.name != "wall_s":
                setattr(self, f.name, getattr(self, f.name) - getattr(other, f.name))
        return self

    def scaled(self, factor: float) -> Cost:
        """A new cost with every counter times ``factor`` (a share of a pool's cost)."""
        return Cost(**{f.name: getattr(self, f.name) * factor for f in fields(self)})

    def copy(self) -> Cost:
        return Cost(**{f.name: getattr(self, f.name) for f in fields(self)})

    @staticmethod
    def flops(params: float, tokens: float) -> float:
        """FLOPs of ``tokens`` processed by a ``params``-parameter model: 2 x params x tokens
        (the convention of Snell et al. and Kaplan et al.; cached prompt tokens are excluded by
        the caller)."""
        return 2.0 * params * tokens

    def to_dict(self) -> dict[str, float]:
        d = asdict(self)
        d["total_flops"] = self.total_flops
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cost:
        return cls(**{k: d[k] for k in COST_KEYS if k in d})


@dataclass
class Result:
    """The outcome of one strategy on one problem."""

    problem_id: str
    answer: str | None
    candidates: list[Candidate]
    cost: Cost
    trace: list[dict[str, Any]] = field(default_factory=list)
    correct: bool | None = None
    meta: dict[str, Any] = field(default_factory=dict)
