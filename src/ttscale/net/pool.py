"""Replicas of an HTTP model server: load balancing, bounded concurrency, retries, one event loop.

Why one module for this: the OpenAI-compatible policy engine and the PRM-over-HTTP verifier talk
to servers the same way, and they must fail the same way. A search strategy calls them from plain
(synchronous) code many thousands of times, often from several threads at once (the proxy runs one
strategy per request in a worker thread), so:

* each pool owns **one background event loop thread** with one ``httpx.AsyncClient`` (connection
  reuse across calls and threads); synchronous callers submit coroutines to it and wait;
* every request goes to the replica with the fewest requests in flight (ties: round robin), and
  each replica admits at most ``max_concurrency`` requests at once (the others queue here, not on
  the server, so a slow replica does not collect a backlog);
* a request that fails with a connection error, a timeout, a dropped connection or a 5xx / 408 /
  429 answer is retried with exponential backoff and jitter (tenacity), on another replica when
  there is one; a 4xx is the caller's mistake and fails at once with the server's message. After
  the last try, ``ServerError`` names the URL, the number of attempts and the last failure.

Retrying only whole requests keeps what was already generated: a strategy's engine call fans out
into independent requests, finished ones are kept, and only the failed one is sent again (with the
same seed, so a deterministic server gives the same answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from ttscale.errors import ProblemError

__all__ = ["PROBLEM_STATUS", "RETRY_STATUS", "ClientError", "PoolStats", "ReplicaPool",
           "RequestRefused", "ServerError", "normalize_urls"]

T = TypeVar("T")

#: answers worth another try: the server (or a proxy in front of it) was busy or broken
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: refusals of one request's content (a prompt that overflows the context, a bad value): the
#: problem that sent it fails, other problems go on. 401/403/404 are about the whole engine.
PROBLEM_STATUS = frozenset({400, 413, 422})


class ServerError(RuntimeError):
    """A request that failed for good: after every retry, or with an answer that is unusable."""


class ClientError(ValueError):
    """The server refused the request as malformed (4xx): retrying cannot help.

    ``status`` and ``detail`` (the server's own message) let a proxy pass the refusal on without
    revealing which upstream URL refused it."""

    def __init__(self, message: str, status: int = 400, detail: str = "") -> None:
        super().__init__(message)
        self.status, self.detail = status, detail or message


class RequestRefused(ClientError, ProblemError):
    """A 400/413/422: the server refused this request's content (e.g. a prompt longer than the
    model's context). A ``ProblemError``: the run stores it as one problem's failure."""


class _Retryable(Exception):
    """A 5xx/408/429 answer, raised inside the retry loop so tenacity tries again."""

    def __init__(self, url: str, status: int, body: str) -> None:
        super().__init__(f"HTTP {status} from {url}: {body[:300]}")
        self.status = status


def _is_retryable(e: BaseException) -> bool:
    return isinstance(e, (_Retryable, httpx.TransportError))


def normalize_urls(base_url: str | Sequence[str]) -> list[str]:
    """One or several base URLs (``http://host:port/v1``) without trailing slashes; checked."""
    urls = [base_url] if isinstance(base_url, str) else list(base_url)
    if not urls:
        raise ValueError("base_url: give at least one server URL")
    out = []
    for u in urls:
        if not isinstance(u, str) or not u.startswith(("http://", "https://")):
            raise ValueError(f"base_url {u!r} must start with http:// or https://")
        out.append(u.rstrip("/"))
    return out


@dataclass
class PoolStats:
    """What the pool did (for benches, tests and the proxy's health answer)."""

    requests: int = 0
    attempts: int = 0
    retries: int = 0
    failures: int = 0
    per_replica: dict[str, int] = field(default_factory=dict)


class _Replica:
    def __init__(self, url: str, max_concurrency: int) -> None:
        self.url = url
        self.in_flight = 0
        self.max_concurrency = max_concurrency
        self.sem: asyncio.Semaphore | None = None  # created on the pool's loop


class ReplicaPool:
    """A set of equivalent servers behind base URLs, used from sync or async code.

    ``max_concurrency``: requests in flight per replica. ``retries``: extra attempts after the
    first. ``backoff_s``/``backoff_max_s``: first and longest wait between attempts.
    ``headers``: sent with every request (e.g. ``Authorization``).
    """

    def __init__(self, base_url: str | Sequence[str], *, max_concurrency: int = 16,
                 timeout_s: float = 300.0, connect_timeout_s: float = 10.0, retries: int = 5,
                 backoff_s: float = 0.25, backoff_max_s: float = 8.0,
                 headers: dict[str, str] | None = None) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if timeout_s <= 0 or connect_timeout_s <= 0:
            raise ValueError("timeouts must be > 0 seconds")
        self.urls = normalize_urls(base_url)
        self.replicas = [_Replica(u, max_concurrency) for u in self.urls]
        self.retries = retries
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self.headers = dict(headers or {})
        self.stats = PoolStats(per_replica=dict.fromkeys(self.urls, 0))
        self._rr = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    # -- the event loop thread ------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._closed:
                raise RuntimeError("this HTTP pool is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def main() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=main, name="ttscale-http", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the pool's loop and wait for it (from any thread but that loop's)."""
        loop = self._ensure_loop()
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a synchronous call was made from the HTTP pool's own loop; "
                               "await the async method instead")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the pool's loop from any event loop (the client is bound to it)."""
        loop = self._ensure_loop()
        try:
            if asyncio.get_running_loop() is loop:
                return await coro
        except RuntimeError:
            pass
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def close(self) -> None:
        """Close connections and stop the loop thread (idempotent)."""
        with self._start_lock:
            loop, self._loop, self._closed = self._loop, None, True
        if loop is None:
            return

        async def shutdown() -> None:
            if self._client is not None:
                await self._client.aclose()

        # closing must not raise: connections die with the loop anyway
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ReplicaPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests (coroutines on the pool's loop) -----------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(max_connections=sum(r.max_concurrency for r in self.replicas)
                                  + 8, max_keepalive_connections=64)
            self._client = httpx.AsyncClient(timeout=self.timeout, limits=limits,
                                             headers=self.headers)
            for r in self.replicas:
                r.sem = asyncio.Semaphore(r.max_concurrency)
        return self._client

    def _pick(self, avoid: str | None) -> _Replica:
        pool = [r for r in self.replicas if r.url != avoid] or self.replicas
        low = min(r.in_flight for r in pool)
        best = [r for r in pool if r.in_flight == low]
        return best[next(self._rr) % len(best)]

    async def request_json(self, method: str, path: str, payload: Any = None,
                           *, root: bool = False) -> Any:
        """Send one JSON request to some replica with retries; the decoded JSON answer.

        ``path`` is appended to the base URL (``/completions``), or with ``root=True`` to the
        server root, i.e. the base URL without a trailing ``/v1`` (vLLM serves ``/pooling``
        there).
        """
        client = self._http()
        self.stats.requests += 1
        last: dict[str, str | None] = {"url": None}

        async def attempt() -> Any:
            replica = self._pick(last["url"] if len(self.replicas) > 1 else None)
            url = _join(replica.url, path, root)
            last["url"] = replica.url
            replica.in_flight += 1
            self.stats.attempts += 1
            self.stats.per_replica[replica.url] += 1
            try:
                assert replica.sem is not None
                async with replica.sem:
                    resp = await client.request(method, url, json=payload)
                    # read inside the semaphore: a dropped body is a retryable transport error
                    body = await resp.aread()
            finally:
                replica.in_flight -= 1
            if resp.status_code in RETRY_STATUS:
                raise _Retryable(url, resp.status_code, _error_text(body))
            if resp.status_code >= 400:
                detail = _error_text(body)
                kind = RequestRefused if resp.status_code in PROBLEM_STATUS else ClientError
                raise kind(f"{method} {url} was refused with HTTP {resp.status_code}: "
                                  f"{detail}", resp.status_code, detail)
            try:
                return json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ServerError(f"{method} {url}: the answer is not JSON ({e}): "
                                  f"{body[:200]!r}") from None

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential(multiplier=self.backoff_s, max=self.backoff_max_s)
            + wait_random(0, self.backoff_s),
            retry=retry_if_exception(_is_retryable), reraise=True)
        try:
            async for state in retrying:
                with state:
                    if state.retry_state.attempt_number > 1:
                        self.stats.retries += 1
                    return await attempt()
        except (_Retryable, httpx.TransportError) as e:
            self.stats.failures += 1
            where = _join(last["url"] or self.urls[0], path, root)
            raise ServerError(f"{method} {where} failed after {self.retries + 1} attempt(s): "
                              f"{_describe(e)}") from e
        raise AssertionError("unreachable")  # pragma: no cover


def _join(base: str, path: str, root: bool) -> str:
    if root:
        base = base[:-3] if base.endswith("/v1") else base
    return base + path


def _error_text(body: bytes) -> str:
    """The server's own error message when it sent an OpenAI-style error object."""
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return " ".join(text.split())[:300]
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data))
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])[:300]
        return str(err)[:300]
    return text[:300]


def _describe(e: BaseException) -> str:
    if isinstance(e, httpx.TimeoutException):
        return f"timed out ({type(e).__name__})"
    if isinstance(e, httpx.TransportError):
        return f"connection failed ({type(e).__name__}: {e or 'no details'})"
    return str(e)
