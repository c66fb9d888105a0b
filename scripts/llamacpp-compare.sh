#!/usr/bin/env bash
# Teacher-forced agreement with llama.cpp on the same GGUF files, on the GPU machine (or here).
# For each shape: `worker-orcd synth` writes a few-layer random-weight GGUF of the real shape,
# both engines score the same token sequence (ours: `worker-orcd score`, llama.cpp:
# scripts/llamacpp-logits.cpp built against a llama.cpp build tree), and
# scripts/compare_logits.py applies the rule: argmax equal and top-10 logits within 1.0 at
# every position where llama.cpp's top-2 margin is at least 0.3.
#
#   scripts/llamacpp-compare.sh WORKER LCPP_TREE VOCAB_DIR OUT_DIR [BACKEND] [NGL]
#
# LCPP_TREE: llama.cpp sources with build/bin holding libllama (shared/tools/llamacpp-gpu.sh
# builds one in /tmp/lcpp). VOCAB_DIR: the ggml-vocab-*.gguf files. BACKEND: cuda (default) or
# cpu. NGL: llama.cpp's GPU layers (99 default; 0 for its CPU path). Prints one line per shape.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
worker=$1 lcpp=$2 vocab=$3 out=$4 backend=${5:-cuda} ngl=${6:-99}
mkdir -p "$out"
tool="$out/llamacpp-logits"
if [ ! -x "$tool" ]; then
    libdir=$(dirname "$(find "$lcpp/build" -name 'libllama.so*' | head -n1)")
    g++ -O2 -std=c++17 "$here/llamacpp-logits.cpp" -I"$lcpp/include" -I"$lcpp/ggml/include" \
        -L"$libdir" -lllama -lggml -lggml-base -Wl,-rpath,"$libdir" -o "$tool" || exit 1
fi
# shape  type  vocab  layers
cases="
llama3.2-1b q8_0 llama-bpe 4
llama3-8b q4_0 llama-bpe 2
mistral-7b q4_0 llama-spm 2
qwen3-0.6b q8_0 qwen2 4
qwen3-0.6b-yarn q8_0 qwen2 4
qwen3-8b q4_0 qwen2 2
phi3.5-mini q4_0 phi-3 2
gpt2 q8_0 gpt-2 4
smollm2-135m q4_1 gpt-2 4
gemma3-270m q8_0 llama-spm 4
"
# A fixed sequence of ordinary token ids (below every vocabulary's size).
ids=$(python3 -c 'print(",".join(str(100 + (i * 7919) % 20000) for i in range(48)))')
status=0
echo "$cases" | while read -r shape ty voc layers; do
    [ -n "$shape" ] || continue
    m="$out/$shape.gguf"
    "$worker" synth --shape "$shape" --type "$ty" --embed-type q8_0 --vocab-from "$vocab/ggml-vocab-$voc.gguf" \
        --layers "$layers" --out "$m" > "$out/$shape.synth.log" 2>&1 || { echo "$shape: synth failed"; continue; }
    "$worker" score --backend "$backend" --model "$m" --ids "$ids" --top 40 --json > "$out/$shape.ours.json" 2> "$out/$shape.ours.log" ||
        { echo "$shape: ours failed: $(tail -n1 "$out/$shape.ours.log")"; continue; }
    "$tool" "$m" "$ids" 40 "$ngl" > "$out/$shape.llamacpp.json" 2> "$out/$shape.llamacpp.log" ||
        { echo "$shape: llama.cpp failed: $(tail -n1 "$out/$shape.llamacpp.log")"; continue; }
    echo "$shape ($ty, $layers layers, ours $backend, llama.cpp ngl $ngl): $(python3 "$here/compare_logits.py" "$out/$shape.ours.json" "$out/$shape.llamacpp.json" 2>/dev/null)"
done
