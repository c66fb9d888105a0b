#!/usr/bin/env bash
# The worker's acceptance scenarios over HTTP and `worker-orcd bench` on the GPU machine.
#
# Here (packs .gpu/, after scripts/gpu-test.sh has split SmolLM2 into .gpu/smol0 and .gpu/smol1):
#   scripts/gpu-bench.sh pack
# There (from the repository root, in one device call after .gpu/smol0 went in a call of its own
# and was copied to /tmp/models/smol0.part):
#   bash scripts/gpu-bench.sh run [accept] [kernels] [model] [smol] [qwen] [8b-q4] [8b-q8]
# (env: TEST_FILTER (a test-name filter), BENCH_ARGS, BENCH_TAG, BENCH_TIMEOUT, TEST_TIMEOUT, ORCD_MMV_FAST=0 for the reference
# matrix kernels, RESULTS=$OUT/results.tgz to pack $OUT after every step; OUT=/tmp/... then).
# Everything it writes goes under $OUT (SSE streams, /health, bench tables and JSON, test logs).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

pack() {
    set -e
    cargo build --release -p worker-orcd
    mkdir -p .gpu/worker .gpu/vocab
    strip -o .gpu/worker-orcd target/release/worker-orcd
    gzip -6 -c .gpu/worker-orcd > .gpu/worker/worker-orcd.gz
    rm -f .gpu/worker-orcd
    ref="${ORCD_REFERENCE_DIR:-/work/shared/reference}/tokenizer"
    cp "$ref/ggml-vocab-llama-bpe.gguf" "$ref/ggml-vocab-qwen2.gguf" .gpu/vocab/
    du -sh .gpu/*
}

number_word() { # 0..59 as English words
    local n=$((10#$1)) ones=(zero one two three four five six seven eight nine ten eleven twelve
        thirteen fourteen fifteen sixteen seventeen eighteen nineteen) tens=("" "" twenty thirty
        forty fifty)
    if ((n < 20)); then echo "${ones[n]}"; elif ((n % 10 == 0)); then echo "${tens[n / 10]}"; else
        echo "${tens[n / 10]}-${ones[n % 10]}"; fi
}

OUT="${OUT:-/tmp/orcd-out}"
W=/tmp/orcd-bin/worker-orcd
SMOL=/tmp/models/SmolLM2-135M-Instruct.Q4_1.gguf

setup() {
    mkdir -p "$OUT" /tmp/models /tmp/orcd-bin
    for d in .gpu/smol?; do [ -f "$d/part" ] && cp "$d/part" "/tmp/models/$(basename "$d").part"; done
    if [ ! -f "$SMOL" ] && [ -f /tmp/models/smol0.part ] && [ -f /tmp/models/smol1.part ]; then
        cat /tmp/models/smol0.part /tmp/models/smol1.part > "$SMOL.tmp"
        if [ "$(sha256sum "$SMOL.tmp" | cut -d' ' -f1)" = b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 ]; then
            mv "$SMOL.tmp" "$SMOL"
        else echo "SmolLM2: sha256 mismatch" >&2; rm -f "$SMOL.tmp"; fi
    fi
    [ -f .gpu/worker/worker-orcd.gz ] && gunzip -c .gpu/worker/worker-orcd.gz > "$W" && chmod +x "$W"
    for f in .gpu/bin/*.gz; do
        [ -f "$f" ] && gunzip -c "$f" > "/tmp/orcd-bin/$(basename "$f" .gz)" && chmod +x "/tmp/orcd-bin/$(basename "$f" .gz)"
    done
    export PATH="/usr/local/cuda/bin:$PATH" LD_LIBRARY_PATH="/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
}

serve() { # port log [extra args]
    local port=$1 log=$2
    shift 2
    "$W" --backend cuda --model "$SMOL" --port "$port" \
        --worker-id "$(cat /proc/sys/kernel/random/uuid)" "$@" > "$log" 2>&1 &
    SERVER=$!
    for _ in $(seq 1 120); do
        curl -sf "http://127.0.0.1:$port/health" > /dev/null 2>&1 && return 0
        sleep 0.25
    done
    echo "server on $port did not come up" >&2
    return 1
}

execute() { # port json out
    curl -sN -X POST "http://127.0.0.1:$1/execute" -H 'content-type: application/json' -d "$2" > "$3"
}

stop_server() {
    curl -s -X POST "http://127.0.0.1:$1/shutdown" -H 'content-type: application/json' > /dev/null
    wait "$SERVER" 2> /dev/null
}

accept() {
    local minute prompt body
    minute="$(number_word "$(date -u +%M)")"
    # SmolLM2-Instruct's chat format (the worker takes the prompt as it is).
    prompt="<|im_start|>user\\nWrite a haiku about GPU computing. It must name the current minute, ${minute}, as a word.<|im_end|>\\n<|im_start|>assistant\\n"
    echo "$prompt" > "$OUT/haiku-prompt.txt"
    serve 18080 "$OUT/serve-haiku.log" || return 1
    for n in 1 2; do
        body=$(printf '{"job_id":"haiku-%s","prompt":"%s","max_tokens":50,"temperature":0.7,"seed":42}' "$n" "$prompt")
        execute 18080 "$body" "$OUT/haiku$n.sse"
    done
    curl -s http://127.0.0.1:18080/health > "$OUT/health.json"
    curl -s http://127.0.0.1:18080/metrics > "$OUT/metrics.txt"
    grep '^data:' "$OUT/haiku1.sse" | grep -v started_at | grep -v decode_time > "$OUT/haiku1.tokens"
    grep '^data:' "$OUT/haiku2.sse" | grep -v started_at | grep -v decode_time > "$OUT/haiku2.tokens"
    if diff "$OUT/haiku1.tokens" "$OUT/haiku2.tokens" > "$OUT/haiku.diff"; then
        echo "haiku: identical token streams ($(grep -c '"t"' "$OUT/haiku1.tokens") tokens)"
    else echo "haiku: STREAMS DIFFER"; fi
    stop_server 18080

    # OOM: a KV budget of 4 MiB cannot hold a long prompt plus 2000 tokens; the next request fits.
    serve 18081 "$OUT/serve-oom.log" --kv-cache-size-mb 4 || return 1
    local long
    long=$(printf 'GPU kernels stream weights from memory. %.0s' $(seq 1 60))
    execute 18081 "{\"job_id\":\"oom-1\",\"prompt\":\"$long\",\"max_tokens\":2000,\"temperature\":0}" "$OUT/oom1.sse"
    execute 18081 '{"job_id":"oom-2","prompt":"Say hello.","max_tokens":16,"temperature":0,"seed":42}' "$OUT/oom2.sse"
    curl -s http://127.0.0.1:18081/health > "$OUT/health-after-oom.json"
    stop_server 18081
    echo "oom request:  $(grep -A1 '^event: error' "$OUT/oom1.sse" | tail -1)"
    echo "next request: $(grep -A1 '^event: end' "$OUT/oom2.sse" | tail -1)"
}

# BENCH_ARGS: extra `worker-orcd bench` flags; BENCH_TAG: suffix of the result files.
bench() { # name model
    local f="$OUT/bench-$1${BENCH_TAG:-}"
    # shellcheck disable=SC2086
    timeout "${BENCH_TIMEOUT:-240}" "$W" bench --model "$2" --backend cuda --json ${BENCH_ARGS:-} \
        > "$f.json" 2> "$f.txt"
    echo "bench $1${BENCH_TAG:-}: rc=$?"
    grep -E '^\|' "$f.txt" | tail -14
}

synth() { # shape type vocab out
    [ -f "$4" ] || "$W" synth --shape "$1" --type "$2" --embed-type q8_0 --vocab-from ".gpu/vocab/$3" --out "$4" > /dev/null
}

tests() { # [kernels] [model]
    local t
    for t in "${@:-kernels model}"; do
        [ -x "/tmp/orcd-bin/$t" ] || continue
        ORCD_MODEL_CACHE=/tmp/models ORCD_REFERENCE_DIR="$root/.gpu/bin/reference" \
            timeout "${TEST_TIMEOUT:-200}" "/tmp/orcd-bin/$t" --include-ignored --test-threads=1 --nocapture --skip gemma3 ${TEST_FILTER:-} \
            > "$OUT/$t.log" 2>&1
        printf '%-8s rc=%-3s %s\n' "$t" "$?" "$(grep -h 'test result' "$OUT/$t.log" | tail -1)"
        grep -hE 'FAILED|panicked' "$OUT/$t.log" | head -10
    done
}

case "${1:-}" in
    pack) pack ;;
    run)
        shift
        setup
        [ -e /work/main ] || { mkdir -p /work && ln -s "$root" /work/main; }
        for step in "$@"; do
            t0=$(date +%s)
            case "$step" in
                accept) accept ;;
                tests) tests kernels model ;;
                kernels | model) tests "$step" ;;
                smol) bench smollm2-q4_1 "$SMOL" ;;
                qwen) synth qwen2.5-0.5b q4_0 ggml-vocab-qwen2.gguf /tmp/models/qwen05-q4_0.gguf &&
                    bench qwen05-q4_0 /tmp/models/qwen05-q4_0.gguf ;;
                8b-q4) synth llama3-8b q4_0 ggml-vocab-llama-bpe.gguf /tmp/models/l8b-q4_0.gguf &&
                    bench l8b-q4_0 /tmp/models/l8b-q4_0.gguf ;;
                8b-q8) synth llama3-8b q8_0 ggml-vocab-llama-bpe.gguf /tmp/models/l8b-q8_0.gguf &&
                    bench l8b-q8_0 /tmp/models/l8b-q8_0.gguf ;;
                *) echo "unknown step $step" >&2 ;;
            esac
            echo "== $step: $(($(date +%s) - t0)) s"
            # With RESULTS set, everything so far is packed after each step (a call cut short
            # by its time limit still brings back the finished steps).
            [ -n "${RESULTS:-}" ] && tar czf "$RESULTS" -C "$OUT" .
        done
        ;;
    *) echo "usage: $0 pack | run [accept] [smol] [qwen] [8b-q4] [8b-q8] [tests]" >&2; exit 2 ;;
esac
