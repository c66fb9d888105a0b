#!/usr/bin/env bash
# Teacher-forced agreement with llama.cpp on the same GGUF files, on the GPU machine (or here).
# For each shape: `worker-orcd synth` writes a few-layer random-weight GGUF of the real shape,
# both engines score the same token sequence (ours: `worker-orcd score`, llama.cpp:
# scripts/llamacpp-logits.cpp built against a llama.cpp build tree), and
# scripts/compare_logits.py applies the rule: argmax equal and top-10 logits within 1.0 at
# every position where llama.cpp's top-2 margin is at least 0.3.
#
#   scripts/llamacpp-compare.sh WORKER LCPP_TREE OUT_DIR [BACKEND] [NGL]
#   ONLY=REGEX scripts/llamacpp-compare.sh ...   # only the shapes whose "shape type" matches
#
# LCPP_TREE: llama.cpp sources with build/bin holding libllama (shared/tools/llamacpp-gpu.sh
# builds one in /tmp/lcpp). The files use the 1,024-token vocabulary of the CPU golden test
# (tests/fixtures/llamacpp-golden), spread logits (--output-std 0.1) and seed 14. BACKEND: cuda (default) or
# cpu. NGL: llama.cpp's GPU layers (99 default; 0 for its CPU path). Prints one line per shape.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
worker=$1 lcpp=$2 out=$3 backend=${4:-cuda} ngl=${5:-99}
vocab="$here/../tests/fixtures/llamacpp-golden/vocab-1024.gguf"
mkdir -p "$out"
tool="$out/llamacpp-logits"
if [ ! -x "$tool" ]; then
    libdir=$(dirname "$(find "$lcpp/build" -name 'libllama.so*' | head -n1)")
    g++ -O2 -std=c++17 "$here/llamacpp-logits.cpp" -I"$lcpp/include" -I"$lcpp/ggml/include" \
        -L"$libdir" -lllama -lggml -lggml-base -Wl,-rpath,"$libdir" -o "$tool" || exit 1
fi
# shape  type  layers  llama.cpp n_ctx (phi3.5: past the original context, so both take the
# long RoPE factors)
cases="
llama3.2-1b q4_0 2 512
llama3.2-1b q8_0 2 512
mistral-7b q4_0 1 512
qwen3-0.6b q4_0 2 512
qwen3-0.6b-yarn q4_0 2 512
qwen3-8b q4_0 1 512
phi3.5-mini q4_0 2 8192
gpt2 q4_0 2 512
gpt2 q8_0 2 512
smollm2-135m q4_1 4 512
gemma3-270m q8_0 2 512
"
# The golden test's token sequence.
ids=$(python3 -c 'print(",".join(str((7 + 389 * i) % 1024) for i in range(24)))')
status=0
echo "$cases" | while read -r shape ty layers nctx; do
    [ -n "$shape" ] || continue
    [ -z "${ONLY:-}" ] || [[ "$shape $ty" =~ $ONLY ]] || continue
    m="$out/$shape-$ty.gguf"; tag="$shape $ty"
    "$worker" synth --shape "$shape" --type "$ty" --embed-type q8_0 --vocab-from "$vocab" \
        --layers "$layers" --seed 14 --output-std 0.1 --out "$m" > "$m.synth.log" 2>&1 || { echo "$tag: synth failed"; continue; }
    "$worker" score --backend "$backend" --model "$m" --ids "$ids" --top 40 --json > "$m.ours.json" 2> "$m.ours.log" ||
        { echo "$tag: ours failed: $(tail -n1 "$m.ours.log")"; continue; }
    "$tool" "$m" "$ids" 40 "$ngl" "$nctx" > "$m.llamacpp.json" 2> "$m.llamacpp.log" ||
        { echo "$tag: llama.cpp failed: $(tail -n1 "$m.llamacpp.log")"; continue; }
    echo "$tag ($layers layers, ours $backend, llama.cpp ngl $ngl): $(python3 "$here/compare_logits.py" "$m.ours.json" "$m.llamacpp.json" 2>/dev/null)"
done
