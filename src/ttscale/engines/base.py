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
    """How to sample. ``stop``: strings that end a completion (excluded from its text).

    Every parameter that changes the sampled distribution is explicit (``top_k=0``, ``min_p=0``
    and ``repetition_penalty=1`` are neutral), so one recipe samples the same distribution on
    every engine instead of each server's own defaults. ``logprobs=k`` asks for the top-k
    log-probabilities of every generated token (``Completion.top_logprobs``); None asks for none.
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    logprobs: int | None = None


def check_params(params: SamplingParams) -> None:
    """Reject sampling parameters before any work is done, naming the field (every engine)."""
    if params.n < 1:
        raise ValueError(f"SamplingParams.n must be >= 1, got {params.n}")
    if params.max_tokens < 1:
        raise ValueError(f"SamplingParams.max_tokens must be >= 1, got {params.max_tokens}")
    if params.temperature < 0:
        raise ValueError(f"SamplingParams.temperature must be >= 0, got {params.temperature}")
    if not 0 < params.top_p <= 1:
        raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {params.top_p}")
    if params.top_k < 0:
        raise ValueError(f"SamplingParams.top_k must be >= 0 (0 = off), got {params.top_k}")
    if not 0 <= params.min_p < 1:
        raise ValueError(f"SamplingParams.min_p must be in [0, 1), got {params.min_p}")
    if params.repetition_penalty <= 0:
        raise ValueError("SamplingParams.repetition_penalty must be > 0 (1 = off), got "
                         f"{params.repetition_penalty}")
    if params.logprobs is not None and not 1 <= params.logprobs <= 20:
        raise ValueError(f"SamplingParams.logprobs must be in 1..20 or None, got {params.logprobs}")
    if isinstance(params.stop, str):
        raise ValueError("SamplingParams.stop must be a tuple of strings, not a string")
    for s in params.stop:
        if not isinstance(s, str) or not s:
            raise ValueError(f"SamplingParams.stop entries must be non-empty strings, got {s!r}")


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
