"""Cooperative cancellation of one search: a token that engine and verifier calls look at.

Why: a search is synchronous code in a worker thread (the proxy runs one per request). When its
client goes away or its deadline passes, nothing may keep spending compute for it. Threads cannot
be killed, so the search is stopped where it talks to the outside world:

* between calls: the proxy's guarded generator and scorer call ``token.check()`` before and after
  every engine/PRM call, which raises ``Cancelled`` (or ``DeadlineExceeded``);
* during an HTTP call: ``ReplicaPool.run`` waits through ``wait_future``, which cancels the
  request's task on the pool's event loop as soon as the token fires, so the HTTP request is
  aborted (the connection closed) instead of waited for.

The token travels in a context variable set by ``scope`` in the thread that runs the search; code
that never sets one (the CLI, sweeps) waits exactly as before.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TypeVar

__all__ = ["CancelToken", "Cancelled", "DeadlineExceeded", "current", "scope", "wait_future"]

T = TypeVar("T")

#: how often a waiting call looks at its token (seconds)
POLL_S = 0.05


class Cancelled(RuntimeError):
    """The search was cancelled (its client went away); nothing more is spent on it."""


class DeadlineExceeded(Cancelled):
    """The search ran past its deadline."""


class CancelToken:
    """Set once (``cancel``) or expiring at ``deadline`` (``time.monotonic()`` seconds)."""

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline
        self.reason = ""
        self._event = threading.Event()

    def cancel(self, reason: str = "cancelled") -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise if the work this token guards should stop now."""
        if self._event.is_set():
            raise Cancelled(self.reason)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DeadlineExceeded("the request's deadline passed")


_current: ContextVar[CancelToken | None] = ContextVar("ttscale_cancel_token", default=None)


def current() -> CancelToken | None:
    """The token of the search running in this context, if any."""
    return _current.get()


@contextlib.contextmanager
def scope(token: CancelToken) -> Iterator[CancelToken]:
    """Make ``token`` the current one for the calls made inside the block."""
    reset = _current.set(token)
    try:
        yield token
    finally:
        _current.reset(reset)


def wait_future(fut: concurrent.futures.Future[T]) -> T:
    """``fut.result()``, but cancel ``fut`` (aborting its HTTP request) and raise as soon as the
    current token fires."""
    token = _current.get()
    if token is None:
        return fut.result()
    while True:
        done, _ = concurrent.futures.wait([fut], timeout=POLL_S)
        if done:
            return fut.result()
        try:
            token.check()
        except Cancelled:
            fut.cancel()
            raise
