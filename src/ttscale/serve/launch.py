"""Start a server as a child process, wait until it answers, stop it afterwards.

One launcher for llama.cpp's server, the benches' ``ttscale serve*`` processes and the CLI tests.
The child's output goes to a temporary file, never to a pipe: a server logs while it loads and
on every request, and a pipe nobody reads fills up and blocks it (llama.cpp's server did, before
it ever answered). The tail of that file is in the error when the child exits or does not come
up.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO

import httpx

__all__ = ["server_process"]


@contextmanager
def server_process(cmd: Sequence[str], ready_url: str, name: str, *,
                   timeout_s: float = 120.0, poll_s: float = 0.2,
                   stop_timeout_s: float = 15.0) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` until the block ends; enter once a GET of ``ready_url`` answers 200.

    Raises ``RuntimeError`` naming ``name`` with the child's last output when it exits first or
    is not ready within ``timeout_s``. On leaving: terminate, and kill after ``stop_timeout_s``.
    """
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            _wait_until_ready(proc, log, ready_url, name, timeout_s, poll_s)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _tail(log: IO[str], chars: int = 2000) -> str:
    log.seek(0)
    return log.read()[-chars:]


def _wait_until_ready(proc: subprocess.Popen, log: IO[str], url: str, name: str,
                      timeout_s: float, poll_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}: {_tail(log)}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start in {timeout_s} s: {_tail(log)}")
        time.sleep(poll_s)
