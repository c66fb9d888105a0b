#!/usr/bin/env bash
# The README's test command, and what .ci/run runs: the pinned toolchain and its wasm32-wasip2
# target (installed when missing: rustup 1.28+ no longer installs a toolchain file's toolchain
# on first use of `cargo`), then the whole suite in release. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-toolchain.sh
cargo test --release "$@"
