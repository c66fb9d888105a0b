#!/usr/bin/env bash
# Build the CUDA backend's test binaries here (no CUDA toolkit needed: cudarc loads the driver
# and NVRTC at run time) and pack everything a GPU run needs into .gpu/ (ignored by git through
# .git/info/exclude), then print the device calls to make.
#
#   scripts/gpu-test.sh            # binaries + SmolLM2 in two parts
#   scripts/gpu-test.sh --gemma    # also Gemma 3 in five parts
#   scripts/gpu-test.sh --worker   # also the worker binary (builds wasmtime: slow the first time)
#
# Layout (each folder is one `carry` entry; a device call carries at most 64 MiB):
#   .gpu/bin/      run.sh, the gzipped stripped test binaries, llama.cpp's golden files
#   .gpu/worker/   the gzipped stripped worker (--worker; ~11 MB), carried with a model part
#   .gpu/smolN/    part N of SmolLM2-135M-Instruct.Q4_1.gguf (< 60 MB each)
#   .gpu/gemmaN/   part N of gemma-3-270m-q4_k_m.gguf
# On the GPU machine each call copies its parts to /tmp/models; .gpu/bin/run.sh joins them,
# checks their sha256, runs every GPU test, compute-sanitizer on one model test, and prints a
# table. /tmp there survives only while the machine stays warm (~30 s idle): chain the calls.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
gemma=0
worker=0
for a in "$@"; do
    case "$a" in
        --gemma) gemma=1 ;;
        --worker) worker=1 ;;
        *) echo "usage: $0 [--gemma] [--worker]" >&2; exit 2 ;;
    esac
done

grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu
mkdir -p .gpu/bin/reference

echo "building the orcd-cuda test binaries..." >&2
cargo test --release -p orcd-cuda --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        name = m["target"]["name"]
        print(("lib" if name == "orcd_cuda" else name) + " " + m["executable"])
' > .gpu/bin.list
[ -s .gpu/bin.list ] || { echo "no test binaries were built" >&2; exit 1; }

pack() { # name path
    strip -o ".gpu/$1" "$2"
    gzip -9 -c ".gpu/$1" > ".gpu/bin/$1.gz"
    rm -f ".gpu/$1"
}
while read -r name exe; do pack "$name" "$exe"; done < .gpu/bin.list
rm -f .gpu/bin.list

if [ "$worker" = 1 ]; then
    echo "building worker-orcd..." >&2
    if cargo build --release -p worker-orcd >/dev/null 2>&1 && [ -x target/release/worker-orcd ]; then
        mkdir -p .gpu/worker
        strip -o .gpu/worker-orcd target/release/worker-orcd
        gzip -9 -c .gpu/worker-orcd > .gpu/worker/worker-orcd.gz
        rm -f .gpu/worker-orcd
    else
        echo "worker-orcd did not build; packing the tests only" >&2
    fi
fi

ref="${ORCD_REFERENCE_DIR:-/work/shared/reference}"
cp "$ref"/*.greedy.json .gpu/bin/reference/

split_model() { # prefix file part-bytes
    local i=0 f
    split -b "$3" -d -a 1 "$2" ".gpu/$1."
    for f in .gpu/"$1".?; do
        mkdir -p ".gpu/$1$i"
        mv "$f" ".gpu/$1$i/part"
        i=$((i + 1))
    done
}
smol="$(scripts/fetch-models.sh smollm2)"
split_model smol "$smol" 58M
if [ "$gemma" = 1 ]; then
    split_model gemma "$(scripts/fetch-models.sh gemma3)" 55M
fi

cat > .gpu/bin/run.sh <<'RUN'
#!/usr/bin/env bash
# Runs on the GPU machine from the repository root: join the model parts, run every GPU test,
# compute-sanitizer on one model test, print a table. Logs go to $OUT.
set -uo pipefail
root="$(pwd)"
OUT="${OUT:-/tmp/orcd-out}"
mkdir -p "$OUT" /tmp/models /tmp/orcd-bin
for d in .gpu/smol? .gpu/gemma?; do
    [ -f "$d/part" ] && cp "$d/part" "/tmp/models/$(basename "$d").part"
done
join() { # prefix file sha nparts
    local f="/tmp/models/$2" i parts=()
    [ -f "$f" ] && return 0
    for ((i = 0; i < $4; i++)); do
        [ -f "/tmp/models/$1$i.part" ] || { echo "$2: part $i missing" >&2; return 1; }
        parts+=("/tmp/models/$1$i.part")
    done
    cat "${parts[@]}" > "$f.tmp"
    if [ "$(sha256sum "$f.tmp" | cut -d' ' -f1)" = "$3" ]; then mv "$f.tmp" "$f"; else
        echo "$2: sha256 mismatch" >&2; rm -f "$f.tmp"; return 1; fi
}
join smol SmolLM2-135M-Instruct.Q4_1.gguf b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 2
have_gemma=0
join gemma gemma-3-270m-q4_k_m.gguf a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 5 2>/dev/null && have_gemma=1
# The test binaries find scripts/fetch-models.sh under the path they were built in.
[ -e /work/main ] || { mkdir -p /work && ln -s "$root" /work/main; }
export ORCD_MODEL_CACHE=/tmp/models ORCD_REFERENCE_DIR="$root/.gpu/bin/reference" RUST_BACKTRACE=1
export PATH="/usr/local/cuda/bin:$PATH" LD_LIBRARY_PATH="/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
[ -f .gpu/worker/worker-orcd.gz ] && cp .gpu/worker/worker-orcd.gz /tmp/models/
for f in .gpu/bin/*.gz /tmp/models/worker-orcd.gz; do
    [ -f "$f" ] || continue
    b="/tmp/orcd-bin/$(basename "$f" .gz)"
    gunzip -c "$f" > "$b" && chmod +x "$b"
done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
skip=()
[ "$have_gemma" = 1 ] || skip=(--skip gemma3)
declare -A rc
t0=$(date +%s)
# Every test binary of orcd-cuda (cuda/tests/*.rs and the library's own tests).
TESTS="lib nvrtc kernels packed attention gemm arch_kernels kv_types moe model arch_models"
for t in $TESTS; do
    [ -x "/tmp/orcd-bin/$t" ] || continue
    args=(--include-ignored --test-threads=1 --nocapture)
    case "$t" in model|arch_models) args+=("${skip[@]}") ;; esac
    "/tmp/orcd-bin/$t" "${args[@]}" > "$OUT/$t.log" 2>&1
    rc[$t]=$?
done
t1=$(date +%s)
compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 \
    /tmp/orcd-bin/model --ignored --exact kv_exhaustion_is_typed_and_the_device_keeps_serving \
    > "$OUT/memcheck.log" 2>&1
rc[memcheck]=$?
t2=$(date +%s)
if [ "${PROFILE:-1}" = 1 ] && command -v ncu >/dev/null; then
    # Per-kernel GPU time of about one steady-state decode token (fused kernels, CUDA graphs).
    timeout 240 ncu --metrics gpu__time_duration.sum --csv --launch-skip 3000 --launch-count 260 \
        /tmp/orcd-bin/model --ignored --exact decode_speed_smollm2_batch1 > "$OUT/ncu.csv" 2> "$OUT/ncu.err"
    python3 - "$OUT/ncu.csv" > "$OUT/profile.txt" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head, rows = rows[0], rows[1:]
name, val = head.index("Kernel Name"), head.index("Metric Value")
tot, cnt = collections.Counter(), collections.Counter()
for r in rows:
    k = r[name].split("(")[0]
    tot[k] += float(r[val].replace(",", "")); cnt[k] += 1
all_ns = sum(tot.values())
print(f"ncu: {len(rows)} kernels, {all_ns/1e3:.1f} us of GPU time")
for k, t in tot.most_common(12):
    print(f"  {k:28s} {cnt[k]:4d} x {t/cnt[k]/1e3:7.2f} us = {t/1e3:8.1f} us ({100*t/all_ns:4.1f} %)")
PY
fi
if [ -x /tmp/orcd-bin/worker-orcd ]; then
    # The CLI on the GPU: greedy SmolLM2 tokens for the first golden prompt, and its timings.
    ids=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["cases"][0]; print(",".join(map(str,c["prompt_tokens"])))' \
        .gpu/bin/reference/smollm2-135m-instruct-q4_1.greedy.json)
    /tmp/orcd-bin/worker-orcd generate --model /tmp/models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --prompt-ids "$ids" --max-tokens 48 --backend cuda --json --timings > "$OUT/cli.log" 2>&1
    rc[cli]=$?
fi
echo "================ summary ($(cat "$OUT/gpu.txt"); tests $((t1 - t0)) s, memcheck $((t2 - t1)) s)"
for t in $TESTS memcheck cli; do
    [ -n "${rc[$t]:-}" ] || continue
    printf '%-9s rc=%-3s %s\n' "$t" "${rc[$t]}" "$(grep -h 'test result' "$OUT/$t.log" 2>/dev/null | tail -1)"
done
grep -h 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -1
[ -f "$OUT/cli.log" ] && tail -3 "$OUT/cli.log"
[ -f "$OUT/profile.txt" ] && cat "$OUT/profile.txt"
grep -hE 'FAILED|panicked' "$OUT"/*.log | head -20
grep -hE 'rel err|tok/s|max \|diff\||largest|max \|gpu' "$OUT"/kernels.log "$OUT"/model.log | head -80
RUN
chmod +x .gpu/bin/run.sh

du -sh .gpu/* >&2
# Every part but the last of each model goes in a call of its own; the last call carries the
# last parts (together under 64 MiB) and the binaries, and runs the tests.
parts=$(ls -d .gpu/gemma? .gpu/smol? 2>/dev/null || true)
last_smol=$(ls -d .gpu/smol? | tail -1)
last_gemma=$(ls -d .gpu/gemma? 2>/dev/null | tail -1 || true)
echo
echo "Device calls, back to back (the machine keeps /tmp only while warm):"
for p in $parts; do
    [ "$p" = "$last_smol" ] || [ "$p" = "$last_gemma" ] && continue
    echo "  run carry=[\"$p\"] command: mkdir -p /tmp/models && cp $p/part /tmp/models/$(basename "$p").part && ls -l /tmp/models"
done
if [ -n "$last_gemma" ] || [ -d .gpu/worker ]; then
    extra=$(for d in $last_gemma .gpu/worker; do [ -e "$d" ] && printf '"%s", ' "$d"; done)
    echo "  run carry=[${extra%, }] command: mkdir -p /tmp/models && for d in $last_gemma .gpu/worker; do cp \$d/* /tmp/models/ 2>/dev/null; done; [ -f /tmp/models/part ] && mv /tmp/models/part /tmp/models/$(basename "${last_gemma:-x}").part; ls -l /tmp/models"
fi
final="\"$last_smol\", \".gpu/bin\""
echo "  run carry=[$final] command: bash .gpu/bin/run.sh"
