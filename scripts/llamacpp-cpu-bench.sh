#!/usr/bin/env bash
# llama.cpp's CPU figures for a GGUF model, measured the way `worker-orcd bench` measures ours:
# pp512 (one forward of 512 seeded random prompt tokens) and tg128 (128 greedy decode steps at
# batch 1 after a warm-up, median over repeats), through `llama-cpp-python` built from source.
#
#   scripts/llamacpp-cpu-bench.sh [MODEL] [THREADS] [REPEATS] [PP TG]
#   scripts/llamacpp-cpu-bench.sh --install-only
#
# The first run installs llama-cpp-python from PyPI into the git-ignored venv
# `.cache/llamacpp-venv` (it compiles llama.cpp: several minutes on 2 cores). CPU only.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.cache/llamacpp-venv"
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.16}"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import llama_cpp' 2>/dev/null; then
    echo "installing llama-cpp-python $version into $venv (builds llama.cpp from source)" >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip numpy >&2
    # CPU only, tuned for this CPU, no extra tools or tests: the fastest build that is a fair yardstick.
    CMAKE_ARGS="-DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_BLAS=OFF -DGGML_NATIVE=ON \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
        "$venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check \
        "llama-cpp-python==$version" >&2
fi
[ "${1:-}" = "--install-only" ] && exit 0

model="${1:-$root/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
threads="${2:-2}"
repeats="${3:-3}"
echo "load: $(uptime | sed 's/.*load average/load average/')" >&2
exec "$venv/bin/python" "$root/scripts/llamacpp_cpu_bench.py" "$model" "$threads" "$repeats" ${4:+"$4"} ${5:+"$5"}
