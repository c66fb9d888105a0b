#!/usr/bin/env bash
# Make sure the pinned toolchain (rust-toolchain.toml) has the wasm32-wasip2 target the built-in
# plugins compile for. rustup installs a toolchain file's `targets` only when it installs that
# toolchain, so a machine that already had the toolchain lacks the target. Idempotent: with the
# target present this only checks (well under a second). host/plugin-host/build.rs does the same
# check and install itself; this script makes the README's commands say so up front.
set -euo pipefail
cd "$(dirname "$0")/.."
target=wasm32-wasip2
if ! command -v rustup >/dev/null 2>&1; then
    if rustc --print target-list >/dev/null 2>&1 \
        && [ -d "$(rustc --print target-libdir --target "$target" 2>/dev/null)" ]; then
        exit 0
    fi
    echo "error: the Rust target $target is not installed and rustup is not available;" \
         "install the $target standard library for your Rust (e.g. \`rustup target add $target\`)" >&2
    exit 1
fi
# Run inside the repository so rust-toolchain.toml picks the toolchain. Recent rustup installs a
# missing toolchain on first use of `cargo`/`rustc` only, not for `rustup target`: install it
# here (with the file's components and targets) when it is missing.
channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
if ! rustup run "$channel" rustc --version >/dev/null 2>&1; then
    echo "installing the Rust toolchain $channel (rust-toolchain.toml)" >&2
    rustup toolchain install "$channel" --profile minimal --component rustfmt,clippy \
        --target "$target"
fi
if ! rustup target list --installed | grep -qx "$target"; then
    echo "installing the Rust target $target (rustup target add $target)" >&2
    rustup target add "$target"
fi
