// Operations on logits rows that stay on the GPU: argmax, top-k and repetition penalties.
// logits: (rows, vocab) f32. Each kernel works on one row (argmax with many blocks, the others
// with one), deterministically
// (ties go to the lower token id; NaN is never selected).
// pdl: every kernel of this module begins with pdl_prologue()

#define LOGITS_THREADS 1024

// Is (va, ia) better than (vb, ib)? Higher value first, then lower id; NaN loses to anything.
__device__ __forceinline__ bool better(float va, u32 ia, float vb, u32 ib) {
    if (isnan(va)) return false;
    if (isnan(vb)) return true;
    return va > vb || (va == vb && ia < ib);
}

// A float's bits mapped to an unsigned key with the same order (larger float, larger key).
__device__ __forceinline__ u32 order_key(float v) {
    const u32 b = __float_as_uint(v);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// The float whose order_key is `key`.
__device__ __forceinline__ float from_order_key(u32 key) {
    return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

// out[0] = best id, out[1] = its logit's bits (ties go to the lower id; NaN never wins; a row
// of only NaN gives id 0 and -inf, like the host's `host_logits::argmax`). Many blocks share the
// row: each folds its entries into one 64-bit key (order_key(value) high, ~id low: the larger
// key is the better entry, so the result does not depend on the order of the folds), takes the
// maximum into out[2..4) with atomicMax, and the last block to finish (counter out[4]) writes
// the answer. out[2..5) must be zero on entry (the launcher clears them).
// Grid: (any); block: ARGMAX_THREADS.  out: 8 u32 (result, key, counter).
#define ARGMAX_THREADS 256
extern "C" __global__ void __launch_bounds__(ARGMAX_THREADS)
argmax_f32(const float* __restrict__ logits, int row, int vocab, u32* out) {
    pdl_prologue();
    __shared__ unsigned long long s_best[ARGMAX_THREADS / WARP_SIZE];
    const float* x = logits + (u64)row * vocab;
    unsigned long long best = 0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < vocab; i += gridDim.x * blockDim.x) {
        const float v = x[i] + 0.0f; // -0 ranks as +0: equal values tie by id
        if (!isnan(v)) {
            const unsigned long long key = ((unsigned long long)order_key(v) << 32) | (u32)~(u32)i;
            best = key > best ? key : best;
        }
    }
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const unsigned long long other = __shfl_xor_sync(FULL_MASK, best, o);
        best = other > best ? other : best;
    }
    const int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    if (lane == 0) s_best[warp] = best;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < ARGMAX_THREADS / WARP_SIZE; ++w) best = s_best[w] > best ? s_best[w] : best;
        unsigned long long* acc = (unsigned long long*)(out + 2);
        atomicMax(acc, best);
        __threadfence();
        if (atomicAdd(out + 4, 1u) == gridDim.x - 1) {
            const unsigned long long k = atomicMax(acc, 0ull);
            out[0] = k == 0 ? 0u : ~(u32)k;
            out[1] = k == 0 ? __float_as_uint(-INFINITY) : __float_as_uint(from_order_key((u32)(k >> 32)));
        }
    }
}

// The k best entries of a row (k >= 1): radix-select the k-th largest key (4 passes of 8 bits),
// then collect in id order every entry above it and the lowest-id entries equal to it.
// out_ids, out_vals: (k) - filled with `*out_count` entries (fewer than k only when the row has
// fewer non-NaN values), in id order; the host sorts them best first.
// Grid: (1); block: LOGITS_THREADS.
extern "C" __global__ void top_k_f32(const float* __restrict__ logits, int row, int vocab, int k,
                                     u32* out_ids, float* out_vals, u32* out_count) {
    pdl_prologue();
    __shared__ u32 hist[256];
    __shared__ u32 s_prefix, s_mask, s_want, s_total;
    __shared__ u32 s_warp_gt[LOGITS_THREADS / WARP_SIZE], s_warp_eq[LOGITS_THREADS / WARP_SIZE];
    __shared__ u32 s_gt_base, s_eq_base;
    const float* x = logits + (u64)row * vocab;
    const int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    const int nwarps = blockDim.x / WARP_SIZE;

    // Count the non-NaN entries; k is clamped to it.
    if (threadIdx.x == 0) s_total = 0;
    __syncthreads();
    u32 mine = 0;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) mine += isnan(x[i]) ? 0 : 1;
    atomicAdd(&s_total, mine);
    __syncthreads();
    const u32 want_total = min((u32)k, s_total);
    if (want_total == 0) {
        if (threadIdx.x == 0) *out_count = 0;
        return;
    }
    if (threadIdx.x == 0) { s_prefix = 0; s_mask = 0; s_want = want_total; }
    __syncthreads();
    // Radix select, most significant byte first: s_want is how many of the entries matching
    // the prefix so far must still be taken, counting from the largest.
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0;
        __syncthreads();
        const u32 prefix = s_prefix, mask = s_mask;
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            const float v = x[i];
            if (isnan(v)) continue;
            const u32 key = order_key(v);
            if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 0xff], 1u);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            u32 want = s_want;
            int b = 255;
            for (; b > 0; --b) {
                if (hist[b] >= want) break;
                want -= hist[b];
            }
            s_want = want;
            s_prefix = prefix | ((u32)b << shift);
            s_mask = mask | (0xffu << shift);
        }
        __syncthreads();
    }
    const u32 thr = s_prefix;   // key of the k-th largest entry
    const u32 eq_need = s_want; // how many entries equal to it to take (lowest ids first)
    const u32 gt_count = want_total - eq_need;
    if (threadIdx.x == 0) { s_gt_base = 0; s_eq_base = 0; }
    __syncthreads();
    // Ordered compaction, one chunk of blockDim.x entries at a time.
    for (int start = 0; start < vocab; start += blockDim.x) {
        const int i = start + threadIdx.x;
        float v = 0.0f;
        bool gt = false, eq = false;
        if (i < vocab) {
            v = x[i];
            if (!isnan(v)) {
                const u32 key = order_key(v);
                gt = key > thr;
                eq = key == thr;
            }
        }
        const u32 bgt = __ballot_sync(FULL_MASK, gt), beq = __ballot_sync(FULL_MASK, eq);
        const u32 lt_mask = (1u << lane) - 1u;
        if (lane == 0) { s_warp_gt[warp] = __popc(bgt); s_warp_eq[warp] = __popc(beq); }
        __syncthreads();
        if (threadIdx.x == 0) {
            u32 g = s_gt_base, e = s_eq_base;
            for (int w = 0; w < nwarps; ++w) {
                const u32 cg = s_warp_gt[w], ce = s_warp_eq[w];
                s_warp_gt[w] = g;
                s_warp_eq[w] = e;
                g += cg;
                e += ce;
            }
            s_gt_base = g;
            s_eq_base = e;
        }
        __syncthreads();
        if (gt) {
            const u32 at = s_warp_gt[warp] + __popc(bgt & lt_mask);
            out_ids[at] = i;
            out_vals[at] = v;
        }
        if (eq) {
            const u32 at = s_warp_eq[warp] + __popc(beq & lt_mask);
            if (at < eq_need) {
                out_ids[gt_count + at] = i;
                out_vals[gt_count + at] = v;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) *out_count = want_total;
}

// llama.cpp's penalties on one row: for each distinct token ids[j] seen counts[j] times, a
// positive logit is divided by `repeat` (a negative one multiplied; skipped when repeat is 1 or
// not positive), then counts[j] * frequency + presence is subtracted.
// ids, counts: (n) - distinct ids, each < vocab (checked on the host).
// Grid: ceil(n / LOGITS_THREADS); block: LOGITS_THREADS.
extern "C" __global__ void penalize_f32(float* logits, int row, int vocab, const u32* __restrict__ ids,
                                        const u32* __restrict__ counts, int n, float repeat,
                                        float frequency, float presence) {
    pdl_prologue();
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    float* v = logits + (u64)row * vocab + ids[j];
    float x = *v;
    if (repeat != 1.0f && repeat > 0.0f) x = x > 0.0f ? __fdiv_rn(x, repeat) : __fmul_rn(x, repeat);
    // Unfused, rounding as the host reference does.
    *v = __fsub_rn(x, __fadd_rn(__fmul_rn((float)counts[j], frequency), presence));
}

// The log-softmax's normaliser of one row: log(sum(exp(x))) over the non-NaN entries, as the
// maximum plus the log of the sum of exp(x - max) (f32 sums, the host reference sums in f64).
// out: 1 f32 (-inf when no entry is finite or above -inf; +inf when one is +inf).
// Grid: (1); block: LOGITS_THREADS.
extern "C" __global__ void __launch_bounds__(LOGITS_THREADS)
logsumexp_f32(const float* __restrict__ logits, int row, int vocab, float* out) {
    pdl_prologue();
    __shared__ float s_red[LOGITS_THREADS / WARP_SIZE];
    __shared__ float s_max;
    const float* x = logits + (u64)row * vocab;
    const int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    const int nwarps = blockDim.x / WARP_SIZE;
    float m = -INFINITY;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        const float v = x[i];
        if (!isnan(v)) m = fmaxf(m, v);
    }
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(FULL_MASK, m, o));
    if (lane == 0) s_red[warp] = m;
    __syncthreads();
    if (threadIdx.x == 0) {
        float b = s_red[0];
        for (int w = 1; w < nwarps; ++w) b = fmaxf(b, s_red[w]);
        s_max = b;
    }
    __syncthreads();
    const float mx = s_max;
    if (isinf(mx)) {
        if (threadIdx.x == 0) *out = mx;
        return;
    }
    float s = 0.0f;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        const float v = x[i];
        if (!isnan(v)) s += expf(v - mx);
    }
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(FULL_MASK, s, o);
    // Thread 0 read s_red before the barrier above; every warp writes it again only now.
    if (lane == 0) s_red[warp] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t = 0.0f;
        for (int w = 0; w < nwarps; ++w) t += s_red[w];
        *out = mx + logf(t);
    }
}

// out[j] = the row's logit of ids[j], for n ids (each < vocab, checked on the host).
// ids, out: (n). Grid: ceil(n / LOGITS_THREADS); block: LOGITS_THREADS.
extern "C" __global__ void gather_f32(const float* __restrict__ logits, int row, int vocab,
                                      const u32* __restrict__ ids, int n, float* out) {
    pdl_prologue();
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    out[j] = logits[(u64)row * vocab + ids[j]];
}
