"""A killable, resource-limited worker process for math-verify checks.

Why a process and not a thread or ``signal.alarm``: sympy can spin in C code (a big integer
power, a factorial) where no Python-level timeout fires, can exhaust memory, or blow the C stack
on deep nesting. Only a separate process can be bounded on all three: it runs under ``RLIMIT_AS``
and ``RLIMIT_CPU`` (see ``_worker.py``) and the parent kills it when a check passes its wall-clock
limit. One worker is reused across checks (importing math-verify costs about a second), checks
are sent in batches, and a killed or crashed worker is restarted lazily on the next check.
``SandboxPool`` runs several such workers (one per CPU by default) and splits a batch across them.

POSIX only (``select`` on a pipe, ``resource``).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

__all__ = ["CHECK_TIMEOUT_S", "EXTRACT_TIMEOUT_S", "Sandbox", "SandboxPool", "Verdict",
           "default_pool_size", "default_sandbox"]

#: default wall-clock bounds of one equivalence check and of one math-verify extraction: a whole
#: response graded from scratch (extraction, then the check) stays under 5 s even when both run
#: out their limit
CHECK_TIMEOUT_S = 3.5
EXTRACT_TIMEOUT_S = 1.5

_WORKER_FILE = str(Path(__file__).with_name("_worker.py"))
# Drop "" / "." from sys.path so a file in the current directory cannot shadow a module the
# worker imports, then run the worker by path (it imports nothing from ttscale).
_BOOTSTRAP = (
    "import runpy, sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
    f"runpy.run_path({_WORKER_FILE!r}, run_name='__main__')"
)
#: requests sent per round trip are capped in bytes so that, while the worker is busy on the first,
#: the rest fit in the pipe buffer (64 KiB on Linux) and the write can never block
_CHUNK_BYTES = 48 * 1024


class Verdict(NamedTuple):
    equal: bool
    reason: str  # "math-verify", "timeout" or "worker-error: ..."
    seconds: float


class _WorkerDied(Exception):
    pass


class _Timeout(Exception):
    pass


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "worker did not exit"
    if code < 0:
        try:
            return f"worker killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"worker killed by signal {-code}"
    return f"worker exited with code {code}"


class Sandbox:
    """One math-verify worker process; ``check_many`` is thread-safe (calls are serialised)."""

    def __init__(self, memory_mb: int = 1024, startup_timeout_s: float = 60.0) -> None:
        if memory_mb < 128:
            raise ValueError(f"memory_mb must be >= 128, got {memory_mb}")
        self.memory_bytes = memory_mb * 1024 * 1024
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen | None = None
        self._owner_pid = 0
        self._buf = bytearray()
        self._lock = threading.Lock()
        #: workers started so far (a restart after a timeout or crash counts)
        self.starts = 0

    @property
    def pid(self) -> int | None:
        """Process id of the running worker, if any."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    # -- process management ------------------------------------------------------------------

    def _start(self) -> None:
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, str(self.memory_bytes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, start_new_session=True, bufsize=0,
        )
        self._owner_pid = os.getpid()
        self._buf = bytearray()
        self.starts += 1
        try:
            line = self._read_line(time.monotonic() + self.startup_timeout_s)
        except _Timeout:
            self._stop()
            raise _WorkerDied(f"no ready message within {self.startup_timeout_s:g} s") from None
        if line is None:
            raise _WorkerDied("startup: " + _describe_exit(self._stop()))
        try:
            msg = json.loads(line)
        except ValueError:
            self._stop()
            raise _WorkerDied("startup: bad reply") from None
        if not isinstance(msg, dict) or not msg.get("ready"):
            self._stop()
            why = msg.get("fatal", "bad reply") if isinstance(msg, dict) else "bad reply"
            raise _WorkerDied(f"startup: {why}")

    def _ensure_started(self) -> None:
        if self._proc is not None and self._owner_pid != os.getpid():
            self._proc = None  # forked child: the worker belongs to the parent, leave it alone
        if self._proc is None or self._proc.poll() is not None:
            self._stop()
            self._start()

    def _stop(self) -> int | None:
        """Kill and reap the worker; returns its exit status."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        return code

    def close(self) -> None:
        """Stop the worker (a later check starts a new one)."""
        with self._lock:
            if self._proc is not None and self._owner_pid == os.getpid():
                self._stop()
            self._proc = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- protocol ----------------------------------------------------------------------------

    def _read_line(self, deadline: float) -> bytes | None:
        """One line from the worker; None at EOF; ``_Timeout`` once ``deadline`` passes."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, _, rest = bytes(self._buf).partition(b"\n")
        self._buf = bytearray(rest)
        return line

    def check(self, pred: str, gold: str, timeout_s: float = CHECK_TIMEOUT_S) -> Verdict:
        return self.check_many([(pred, gold)], timeout_s)[0]

    def check_many(self, pairs: list[tuple[str, str]],
                   timeout_s: float = CHECK_TIMEOUT_S) -> list[Verdict]:
        """math-verify ``verify(parse(gold), parse(pred))`` for each ``(pred, gold)`` pair.

        Each check gets at most ``timeout_s`` seconds of wall clock, counted from when the worker
        could start it; worker start-up (bounded by ``startup_timeout_s``) is not counted.
        """
        requests = [{"g": gold, "p": pred} for pred, gold in pairs]
        out: list[Verdict] = []
        for msg, reason, seconds in self._exchange(requests, timeout_s, "equal"):
            if msg is None:
                out.append(Verdict(False, reason, seconds))
            elif "error" in msg:
                out.append(Verdict(False, f"worker-error: {msg['error']}", seconds))
            else:
                out.append(Verdict(bool(msg["equal"]), "math-verify", seconds))
        return out

    def extract_many(self, texts: list[str],
                     timeout_s: float = EXTRACT_TIMEOUT_S) -> list[str | None]:
        """math-verify's own answer extraction from each text (None: nothing, error or timeout).

        The texts should already be capped (``grading.extract`` sends only a response's tail).
        """
        out: list[str | None] = []
        for msg, _, _ in self._exchange([{"x": t} for t in texts], timeout_s, "answer"):
            answer = msg.get("answer") if msg is not None else None
            out.append(answer if isinstance(answer, str) and answer.strip() else None)
        return out

    def _exchange(self, bodies: list[dict], timeout_s: float,
                  key: str) -> list[tuple[dict | None, str, float]]:
        """Send requests, return ``(reply or None, failure reason, seconds)`` for each."""
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        requests = [(json.dumps(dict(b, t=timeout_s)) + "\n").encode() for b in bodies]
        results: list[tuple[dict | None, str, float] | None] = [None] * len(requests)
        with self._lock:
            i = 0
            while i < len(requests):
                j, size = i, 0
                while j < len(requests) and (j == i or size + len(requests[j]) <= _CHUNK_BYTES):
                    size += len(requests[j])
                    j += 1
                try:
                    self._ensure_started()
                except _WorkerDied as e:
                    for k in range(i, len(requests)):
                        results[k] = (None, f"worker-error: {e}", 0.0)
                    break
                try:
                    i = self._run_chunk(requests, i, j, timeout_s, results, key)
                except BaseException:
                    # e.g. KeyboardInterrupt mid-check: the worker's pending answers would be
                    # read as answers to the next requests, so it cannot be kept
                    self._stop()
                    raise
        return [r for r in results if r is not None]

    def _run_chunk(self, requests: list[bytes], i: int, j: int, timeout_s: float,
                   results: list[tuple[dict | None, str, float] | None], key: str) -> int:
        """Send requests[i:j], collect answers; returns the index of the first one not answered."""
        assert self._proc is not None and self._proc.stdin is not None
        start = time.monotonic()
        try:
            data = memoryview(b"".join(requests[i:j]))
            while data:  # a raw pipe write may be partial
                data = data[self._proc.stdin.write(data) or 0:]
        except OSError:  # BrokenPipeError: the worker is gone
            code = self._stop()
            results[i] = (None, f"worker-error: {_describe_exit(code)}", time.monotonic() - start)
            return i + 1
        for k in range(i, j):
            try:
                line = self._read_line(start + timeout_s)
            except _Timeout:
                self._stop()
                results[k] = (None, "timeout", time.monotonic() - start)
                return k + 1
            now = time.monotonic()
            if line is None:
                code = self._stop()
                results[k] = (None, f"worker-error: {_describe_exit(code)}", now - start)
                return k + 1
            try:
                msg = json.loads(line)
                if not isinstance(msg, dict) or not ("error" in msg or key in msg):
                    raise ValueError
            except ValueError:
                self._stop()
                results[k] = (None, "worker-error: bad reply", now - start)
                return k + 1
            results[k] = (msg, "", now - start)
            start = now
        return j


def default_pool_size() -> int:
    """Workers for the default pool: ``TTSCALE_GRADING_WORKERS``, else one per CPU (max 8).

    Each worker holds math-verify and sympy (~150 MB resident, capped at ``memory_mb``), so the
    cap keeps a big machine from spending gigabytes on graders it cannot keep busy.
    """
    raw = os.environ.get("TTSCALE_GRADING_WORKERS", "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            raise ValueError(f"TTSCALE_GRADING_WORKERS must be an integer, got {raw!r}") from None
        if n < 1:
            raise ValueError(f"TTSCALE_GRADING_WORKERS must be >= 1, got {n}")
        return n
    return max(1, min(os.cpu_count() or 1, 8))


class SandboxPool:
    """Several ``Sandbox`` workers; a batch is split across them and checked in parallel.

    Every worker keeps the guarantees of ``Sandbox`` (rlimits, kill on timeout, lazy restart).
    Workers start only when a batch is big enough to use them, so one-off checks cost one
    worker. Same interface as ``Sandbox`` (``check``, ``check_many``, ``extract_many``).
    """

    #: a worker is only worth starting (about a second) for at least this many checks
    MIN_PER_WORKER = 8

    def __init__(self, size: int | None = None, memory_mb: int = 1024,
                 startup_timeout_s: float = 60.0) -> None:
        size = default_pool_size() if size is None else size
        if size < 1:
            raise ValueError(f"pool size must be >= 1, got {size}")
        self.workers = [Sandbox(memory_mb, startup_timeout_s) for _ in range(size)]

    @property
    def size(self) -> int:
        return len(self.workers)

    @property
    def starts(self) -> int:
        return sum(w.starts for w in self.workers)

    @property
    def pid(self) -> int | None:
        return self.workers[0].pid

    def _split(self, n: int) -> list[tuple[int, int]]:
        k = max(1, min(self.size, n // self.MIN_PER_WORKER))
        bounds = [round(n * w / k) for w in range(k + 1)]
        return [(bounds[w], bounds[w + 1]) for w in range(k)]

    def _parallel(self, items: list, call) -> list:  # noqa: ANN001 - internal helper
        parts = self._split(len(items))
        if len(parts) == 1:
            return call(self.workers[0], items)
        out: list[list | None] = [None] * len(parts)
        errors: list[BaseException] = []

        def run(w: int, a: int, b: int) -> None:
            try:
                out[w] = call(self.workers[w], items[a:b])
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(e)

        threads = [threading.Thread(target=run, args=(w, a, b), daemon=True)
                   for w, (a, b) in enumerate(parts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return [x for part in out for x in (part or [])]

    def check(self, pred: str, gold: str, timeout_s: float = CHECK_TIMEOUT_S) -> Verdict:
        return self.check_many([(pred, gold)], timeout_s)[0]

    def check_many(self, pairs: list[tuple[str, str]],
                   timeout_s: float = CHECK_TIMEOUT_S) -> list[Verdict]:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        return self._parallel(pairs, lambda w, part: w.check_many(part, timeout_s))

    def extract_many(self, texts: list[str],
                     timeout_s: float = EXTRACT_TIMEOUT_S) -> list[str | None]:
        return self._parallel(texts, lambda w, part: w.extract_many(part, timeout_s))

    def close(self) -> None:
        for w in self.workers:
            w.close()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_default: SandboxPool | None = None
_default_lock = threading.Lock()


def default_sandbox() -> SandboxPool:
    """The process-wide worker pool used by ``grade``/``grade_many`` (closed at exit)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = SandboxPool()
            atexit.register(_default.close)
        return _default
