"""``serve.launch.server_process``: real child processes on loopback."""

from __future__ import annotations

import sys

import httpx
import pytest

from ttscale.serve.common import free_port
from ttscale.serve.launch import server_process


def test_waits_until_ready_then_stops_the_child():
    port = free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with server_process(cmd, f"http://127.0.0.1:{port}/", "http.server") as proc:
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    assert proc.poll() is not None


def test_a_child_that_exits_is_an_error_with_its_output():
    cmd = [sys.executable, "-c", "import sys; print('no model file'); sys.exit(3)"]
    with (pytest.raises(RuntimeError, match=r"toy exited with 3: no model file"),
          server_process(cmd, f"http://127.0.0.1:{free_port()}/", "toy")):
        pass


def test_a_child_that_never_answers_times_out_and_is_stopped():
    cmd = [sys.executable, "-c", "import time; print('loading', flush=True); time.sleep(60)"]
    with (pytest.raises(RuntimeError, match=r"toy did not start in 1.0 s: loading"),
          server_process(cmd, f"http://127.0.0.1:{free_port()}/", "toy", timeout_s=1.0)):
        pass


def test_a_chatty_child_does_not_block():
    """200 kB of output before it serves: a pipe would have filled up and blocked it."""
    port = free_port()
    code = ("import sys, http.server, socketserver\n"
            "sys.stdout.write('x' * 200_000); sys.stdout.flush()\n"
            f"socketserver.TCPServer(('127.0.0.1', {port}), "
            "http.server.SimpleHTTPRequestHandler).serve_forever()\n")
    with server_process([sys.executable, "-c", code], f"http://127.0.0.1:{port}/", "chatty",
                        timeout_s=30):
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
