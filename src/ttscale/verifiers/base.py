"""The verifier interface (a process reward model scores every step) and score aggregations."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass
class StepScores:
    """Per-step scores in [0, 1] for each scored solution, and what scoring cost."""

    scores: list[list[float]]
    tokens: int
    tokens_cached: int = 0


@runtime_checkable
class StepScorer(Protocol):
    """Scores every step of a batch of (partial) solutions to problems."""

    num_parameters: int

    def score(self, prompts: Sequence[str], solutions: Sequence[Sequence[str]]) -> StepScores:
        """``prompts[i]`` is the problem prompt, ``solutions[i]`` its steps (without delimiters).

        Returns one score per step for each solution (an ORM gives the same whole-solution
        score to every step, so every aggregation returns it).
        """
        ...


AGGREGATIONS = ("last", "min", "prod", "mean")


def aggregate(scores: Sequence[float], how: str = "last") -> float:
    """Collapse per-step scores into one solution score (the paper found ``last`` best)."""
    if not scores:
        return 0.0
    if how == "last":
        return float(scores[-1])
    if how == "min":
        return float(min(scores))
    if how == "prod":
        return float(math.prod(scores))
    if how == "mean":
        return float(sum(scores) / len(scores))
    raise ValueError(f"unknown aggregation {how!r}; choose one of {', '.join(AGGREGATIONS)}")
