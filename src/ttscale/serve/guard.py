"""A request's hard limits, enforced where compute is spent: around every engine and PRM call.

Why here and not in the request checks only: a request's options reach the strategy, and a
strategy may turn one knob into any amount of work (a difficulty probe size, a lookahead depth, a
chain length). Validating every knob is necessary but not sufficient; this guard bounds what a
request can spend *whatever the strategy does*. The proxy hands the strategy a ``GuardedGenerator``
and a ``GuardedScorer`` that, for every call:

1. check the cancel token (client gone, deadline passed) before the call, and make it the
   current token so an HTTP call in flight is aborted when it fires (``ttscale.net.cancel``);
2. refuse the call if its samples would pass the request's sample allowance (``n`` x prompts is
   known before the call, so the sample cap is never exceeded);
3. after the call, add its generated tokens and raise once the token allowance is passed (at
   most one call's worth over it).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ttscale.net.cancel import CancelToken, scope

__all__ = ["ComputeLimitExceeded", "GuardedGenerator", "GuardedScorer", "RequestGuard"]


class ComputeLimitExceeded(RuntimeError):
    """The request asked for more compute than this server allows one request."""


@dataclass
class RequestGuard:
    """What one request may still spend, and what it has spent (engine samples, tokens)."""

    max_samples: int
    max_tokens: int
    token: CancelToken = field(default_factory=CancelToken)
    samples: int = 0
    generated_tokens: int = 0
    engine_calls: int = 0
    prm_calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def before_generate(self, n_samples: int) -> None:
        self.token.check()
        with self._lock:
            if self.samples + n_samples > self.max_samples:
                raise ComputeLimitExceeded(
                    f"this request would need more than {self.max_samples} engine samples, "
                    "this server's limit for one request; lower the budget or the options")
            self.samples += n_samples
            self.engine_calls += 1

    def after_generate(self, tokens: int) -> None:
        with self._lock:
            self.generated_tokens += tokens
            over = self.generated_tokens > self.max_tokens
        if over:
            raise ComputeLimitExceeded(
                f"this request generated more than {self.max_tokens} tokens, this server's "
                "limit for one request; lower the budget, max_tokens or the options")
        self.token.check()

    def before_score(self) -> None:
        self.token.check()
        with self._lock:
            self.prm_calls += 1


class GuardedGenerator:
    """A policy engine whose every call is checked against a ``RequestGuard``."""

    def __init__(self, inner: Any, guard: RequestGuard) -> None:
        self.inner, self.guard = inner, guard

    @property
    def num_parameters(self) -> int:
        return int(self.inner.num_parameters)

    def generate(self, prompts: list[str], params: Any) -> Any:
        self.guard.before_generate(len(prompts) * max(1, int(params.n)))
        with scope(self.guard.token):
            out = self.inner.generate(prompts, params)
        self.guard.after_generate(sum(c.generated_tokens for comps in out for c in comps))
        return out

    def __getattr__(self, name: str) -> Any:  # anything else a strategy reads (e.g. max_len)
        return getattr(self.inner, name)


class GuardedScorer:
    """A verifier whose every call first checks the request's cancel token."""

    def __init__(self, inner: Any, guard: RequestGuard) -> None:
        self.inner, self.guard = inner, guard

    @property
    def num_parameters(self) -> int:
        return int(self.inner.num_parameters)

    def score(self, prompts: Any, solutions: Any) -> Any:
        self.guard.before_score()
        with scope(self.guard.token):
            out = self.inner.score(prompts, solutions)
        self.guard.token.check()
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
