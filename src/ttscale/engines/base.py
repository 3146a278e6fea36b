"""The policy-engine interface every strategy is written against.

A strategy never knows which engine or model is behind a Generator: the in-process transformers
engine, an OpenAI-compatible server, or a deterministic fake in unit tests all fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ttscale.types import Completion


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``stop``: strings that end a completion (excluded from its text)."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None


@runtime_checkable
class Generator(Protocol):
    """Samples continuations of raw text prompts (no chat template is applied here)."""

    #: number of model parameters, for FLOPs = 2 x params x tokens
    num_parameters: int

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        """Return ``params.n`` completions for each prompt, in prompt order.

        Identical prompts, params and seed give identical completions.
        """
        ...
