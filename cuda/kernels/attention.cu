// Paged KV cache and causal attention with grouped-query heads and optional sliding windows.
//
// KV cache, per layer: (n_pages, page_tokens) rows of kv_dim values for K and the same for V,
// where kv_dim = n_kv_heads * head_dim, each row in the cache's type (f32, f16 or q8_0; the row
// layouts are kv_row_bytes / kv_load4 / kv_store_span in common.cuh). Every kernel that touches
// the cache is instantiated per type, its name ending in the type (kv_write_f16,
// attention_decode_q8_0, ...); the values a row reads back are exact, so the attention below
// computes over them the same way whatever the type. A sequence's slot owns pages listed in its page-table row:
// page_table: (n_slots, pages_per_slot) i32, so token position p of slot s lives in page
// page_table[s * pages_per_slot + p / page_tokens] at row p % page_tokens.
// Per-token metadata (one entry per new token of the step): slot (i32), pos (i32).
//
// Kernels (each _{f32,f16,q8_0}): kv_write appends a step's keys and values; attention_ref is
// the reference attention; attention_decode (flash-decoding, steps of few tokens) and
// attention_prefill{1,2,3,4} (query tiles, long steps) are the fast paths, which give a
// token the same bits whichever of them runs (see "The fast kernels" below). Ops::attention
// (src/ops/attention.rs) picks one by the step's token count.
// Attention sinks (GPT-OSS): every attention kernel takes `sinks`, (n_heads) f32 or null; with
// it, head h's learned logit sinks[h] joins each of its rows' softmax denominator and its share
// goes to no value (ggml's soft_max_ext with sinks): out = sum_j e^(s_j - m) v_j /
// (sum_j e^(s_j - m) + e^(sinks[h] - m)), m the largest of the s_j and sinks[h].
// pdl: every kernel of this module begins with pdl_prologue()

#define KV_THREADS 128
#define ATT_WARPS 8
#define ATT_MAX_HEAD_DIM 256

// Append the step's keys and values to the cache.
// k, v: (ntok, kv_dim) f32.  Grid: (ntok); block: KV_THREADS.
template <int T>
__device__ __forceinline__ void kv_write(const float* __restrict__ k, const float* __restrict__ v,
                                         u8* kc, u8* vc, const i32* __restrict__ page_table,
                                         const i32* __restrict__ slot, const i32* __restrict__ pos,
                                         int pages_per_slot, int page_tokens, int kv_dim) {
    const int t = blockIdx.x;
    const u64 row = kv_row(page_table, pages_per_slot, page_tokens, slot[t], pos[t]);
    kv_store_span<T>(kc, row, kv_dim, 0, kv_dim, k + (u64)t * kv_dim);
    kv_store_span<T>(vc, row, kv_dim, 0, kv_dim, v + (u64)t * kv_dim);
}
#define KV_WRITE_KERNEL(name, T)                                                                  \
    extern "C" __global__ void name(const float* __restrict__ k, const float* __restrict__ v,     \
                                    u8* kc, u8* vc, const i32* __restrict__ page_table,           \
                                    const i32* __restrict__ slot, const i32* __restrict__ pos,    \
                                    int pages_per_slot, int page_tokens, int kv_dim) {            \
        pdl_prologue();                                                                           \
        kv_write<T>(k, v, kc, vc, page_table, slot, pos, pages_per_slot, page_tokens, kv_dim);    \
    }
KV_WRITE_KERNEL(kv_write_f32, KV_F32)
KV_WRITE_KERNEL(kv_write_f16, KV_F16)
KV_WRITE_KERNEL(kv_write_q8_0, KV_Q8_0)

// Copy positions 0..n of slot `from` into slot `to` on every layer (prefix caching: a new
// sequence takes the keys and values of the prompt start another slot holds). The copy is of
// the rows as stored, whatever the KV type: kv is n_regions regions back to back (K of layer
// 0, V of layer 0, K of layer 1, ...), each region_bytes long, rows of row_words 32-bit words
// (kv_row_bytes / 4: every type's row is a multiple of 4 bytes) addressed through the page
// table. The slots own distinct pages, so source and destination never overlap.
// Grid: (n, n_regions); block: KV_THREADS.
extern "C" __global__ void kv_copy_prefix(u8* kv, const i32* __restrict__ page_table, int from,
                                          int to, int pages_per_slot, int page_tokens,
                                          int row_words, u64 region_bytes) {
    pdl_prologue();
    const int p = blockIdx.x;
    u32* region = (u32*)(kv + (u64)blockIdx.y * region_bytes);
    const u64 src = kv_row(page_table, pages_per_slot, page_tokens, from, p) * (u64)row_words;
    const u64 dst = kv_row(page_table, pages_per_slot, page_tokens, to, p) * (u64)row_words;
    for (int i = threadIdx.x; i < row_words; i += blockDim.x) region[dst + i] = region[src + i];
}

// Copy positions 0..n of slot `from` into slot `to` on every layer (prefix caching: a new
// sequence takes the keys and values of the prompt start another slot holds). kv: n_regions
// regions back to back (K of layer 0, V of layer 0, K of layer 1, ...), each (region_rows,
// kv_dim) f32 rows addressed through the page table. The two slots own distinct pages, so
// source and destination rows never overlap. Grid: (n, n_regions); block: KV_THREADS.
extern "C" __global__ void kv_copy_prefix_f32(float* kv, const i32* __restrict__ page_table,
                                              int from, int to, int pages_per_slot,
                                              int page_tokens, int kv_dim, int region_rows) {
    pdl_prologue();
    const int p = blockIdx.x;
    const u64 region = (u64)blockIdx.y * region_rows;
    const u64 src = (region + kv_row(page_table, pages_per_slot, page_tokens, from, p)) * kv_dim;
    const u64 dst = (region + kv_row(page_table, pages_per_slot, page_tokens, to, p)) * kv_dim;
    for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) {
        kv[dst + i] = kv[src + i];
    }
}

// The reference attention (selected with ORCD_ATTN=ref; the fast kernels below are compared
// against it in tests/attention.rs).
// out[t][h] = softmax_j(q[t][h] . K[j][h/group] * scale) V[j][h/group] over the cached positions
// j of token t's slot with lo <= j <= pos[t], lo = window ? max(0, pos - window + 1) : 0.
// q, out: (ntok, n_heads, head_dim) f32.  Grid: (ntok, n_heads); block: ATT_WARPS warps.
// Each warp walks every ATT_WARPS-th key with an online softmax (running max m, sum l and the
// weighted value sum o, each lane holding head_dim/32 elements); the warps' partial results
// are merged in warp order, so the result does not depend on scheduling; then the head's sink
// logit, if any, joins the merged softmax.
// head_dim must be a multiple of 32 and at most ATT_MAX_HEAD_DIM.
template <int T>
__device__ __forceinline__ void attention_ref(const float* __restrict__ q, const u8* __restrict__ kc,
              const u8* __restrict__ vc, const i32* __restrict__ page_table, const i32* __restrict__ slot,
              const i32* __restrict__ pos, float* __restrict__ out, int n_heads, int n_kv_heads,
              int head_dim, int pages_per_slot, int page_tokens, int window, float scale,
              const float* __restrict__ sinks) {
    constexpr int PER_LANE = ATT_MAX_HEAD_DIM / WARP_SIZE;
    __shared__ float s_m[ATT_WARPS], s_l[ATT_WARPS];
    __shared__ float s_o[ATT_WARPS][ATT_MAX_HEAD_DIM];
    const int t = blockIdx.x;
    const int h = blockIdx.y;
    const int lane = threadIdx.x % WARP_SIZE;
    const int warp = threadIdx.x / WARP_SIZE;
    const int kvh = h / (n_heads / n_kv_heads);
    const int kv_dim = n_kv_heads * head_dim;
    const int per = head_dim / WARP_SIZE;
    const int s = slot[t];
    const int p = pos[t];
    const int lo = window > 0 ? max(0, p - window + 1) : 0;

    float qv[PER_LANE], o[PER_LANE];
    const float* qh = q + ((u64)t * n_heads + h) * head_dim;
    #pragma unroll
    for (int i = 0; i < PER_LANE; ++i) {
        qv[i] = i < per ? qh[lane + 32 * i] * scale : 0.0f;
        o[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int j = lo + warp; j <= p; j += ATT_WARPS) {
        const u64 row = kv_row(page_table, pages_per_slot, page_tokens, s, j);
        const int e0 = kvh * head_dim + lane;
        float dot = 0.0f;
        #pragma unroll
        for (int i = 0; i < PER_LANE; ++i)
            if (i < per) dot += qv[i] * kv_load1<T>(kc, row, kv_dim, e0 + 32 * i);
        dot = warp_sum(dot);
        const float m_new = fmaxf(m, dot);
        const float corr = expf(m - m_new);
        const float e = expf(dot - m_new);
        l = l * corr + e;
        #pragma unroll
        for (int i = 0; i < PER_LANE; ++i)
            if (i < per) o[i] = o[i] * corr + e * kv_load1<T>(vc, row, kv_dim, e0 + 32 * i);
        m = m_new;
    }
    if (lane == 0) {
        s_m[warp] = m;
        s_l[warp] = l;
    }
    #pragma unroll
    for (int i = 0; i < PER_LANE; ++i)
        if (i < per) s_o[warp][lane + 32 * i] = o[i];
    __syncthreads();
    // Merge the warps' partial softmaxes in warp order.
    float gm = -INFINITY;
    #pragma unroll
    for (int w = 0; w < ATT_WARPS; ++w) gm = fmaxf(gm, s_m[w]);
    // the sink: one more logit in the denominator, with no value
    float gl = 0.0f;
    if (sinks) {
        gm = fmaxf(gm, sinks[h]);
        gl = expf(sinks[h] - gm);
    }
    float fac[ATT_WARPS];
    #pragma unroll
    for (int w = 0; w < ATT_WARPS; ++w) {
        fac[w] = s_m[w] == -INFINITY ? 0.0f : expf(s_m[w] - gm);
        gl += s_l[w] * fac[w];
    }
    float* oh = out + ((u64)t * n_heads + h) * head_dim;
    for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
        float acc = 0.0f;
        #pragma unroll
        for (int w = 0; w < ATT_WARPS; ++w) acc += s_o[w][i] * fac[w];
        oh[i] = acc / gl;
    }
}
#define ATT_REF_KERNEL(name, T)                                                                   \
    extern "C" __global__ void __launch_bounds__(ATT_WARPS * WARP_SIZE)                           \
    name(const float* __restrict__ q, const u8* __restrict__ kc, const u8* __restrict__ vc,       \
         const i32* __restrict__ page_table, const i32* __restrict__ slot,                         \
         const i32* __restrict__ pos, float* __restrict__ out, int n_heads, int n_kv_heads,        \
         int head_dim, int pages_per_slot, int page_tokens, int window, float scale,               \
         const float* __restrict__ sinks) {                                                        \
        pdl_prologue();                                                                           \
        attention_ref<T>(q, kc, vc, page_table, slot, pos, out, n_heads, n_kv_heads, head_dim,    \
                         pages_per_slot, page_tokens, window, scale, sinks);                       \
    }
ATT_REF_KERNEL(attention_ref_f32, KV_F32)
ATT_REF_KERNEL(attention_ref_f16, KV_F16)
ATT_REF_KERNEL(attention_ref_q8_0, KV_Q8_0)

// ---------------------------------------------------------------------------------------------
// The fast kernels: flash-decoding (attention_decode_f32) and query tiles (attention_prefill*).
//
// One canonical reduction per query row (token t, head h), followed exactly by both kernels,
// whatever else shares the launch, so a row's output is bit-identical alone, in a prefill tile,
// in a batch, split or not (the batch invariance of tests/model.rs; tests/attention.rs):
//  - qs[d] = q[d] * scale, rounded.
//  - The keys are cut into chunks of ATT_CHUNK absolute positions: chunk c = [c C, c C + C).
//    The chunks meeting [lo, pos] take part, in increasing c.
//  - In a chunk, for each valid position j (lo <= j <= pos): s_j = fma chain over d ascending
//    from 0 (s = fma(qs[d], k_j[d], s)); m_c = max s_j; p_j = expf(s_j - m_c), 0 elsewhere;
//    l_c = warp butterfly sum over lanes i of (p_i + p_{i+32}) (chunk_softmax);
//    o_c[d] = fma chain over the valid j ascending from 0 (o = fma(p_j, v_j[d], o)).
//  - The chunks merge into the running (m, l, o) = (-inf, 0, 0) in increasing c:
//    m' = max(m, m_c), a = expf(m - m'), b = expf(m_c - m'), l = l a + l_c b, o = o a + o_c b.
//  - With a sink logit z for the row's head (GPT-OSS), it merges last as a chunk of its own,
//    (m_c, l_c, o_c) = (z, 1, 0): m' = max(m, z), a = expf(m - m'), b = expf(z - m'),
//    l = l a + b, and o becomes o a (att_sink).
//  - out[d] = o[d] / l (with a sink: (o[d] a) / l).
// Every rounding is explicit (__fmaf_rn, __fmul_rn, __fadd_rn, __fsub_rn, __fdiv_rn) so that no
// kernel contracts or reorders differently.

#define ATT_CHUNK 64
#define ATT_THREADS 256
#define ATT_DEC_ROWS 8
#define ATT_PRE_ROWS 64
#define ATT_PRE_SP 68
#define ATT_PART_FLOATS 4194304
#define ATT_COUNTERS 16384

// Split decoding's per-chunk results: o_c at [(row * chunk_cap + c - c_lo) * head_dim + d]
// and (m_c, l_c) at [(row * chunk_cap + c - c_lo) * 2], row = t * n_heads + h; the launcher
// passes chunk_cap = ATT_PART_FLOATS / (ntok * n_heads * head_dim). One arrival counter per
// (token, block row); the last block to arrive merges and sets it back to 0.
__device__ float att_part_o[ATT_PART_FLOATS];
__device__ float att_part_ml[ATT_PART_FLOATS / 16];
__device__ unsigned int att_counters[ATT_COUNTERS];

// s + a . b over 4 elements, one rounding per element, in order.
__device__ __forceinline__ float att_dot4(float s, float4 a, float4 b) {
    s = __fmaf_rn(a.x, b.x, s);
    s = __fmaf_rn(a.y, b.y, s);
    s = __fmaf_rn(a.z, b.z, s);
    return __fmaf_rn(a.w, b.w, s);
}

// o + p v, per element.
__device__ __forceinline__ float4 att_axpy4(float p, float4 v, float4 o) {
    return make_float4(__fmaf_rn(p, v.x, o.x), __fmaf_rn(p, v.y, o.y), __fmaf_rn(p, v.z, o.z),
                       __fmaf_rn(p, v.w, o.w));
}

// x a + y b.
__device__ __forceinline__ float att_merge(float x, float a, float y, float b) {
    return __fadd_rn(__fmul_rn(x, a), __fmul_rn(y, b));
}
__device__ __forceinline__ float4 att_merge4(float4 x, float a, float4 y, float b) {
    return make_float4(att_merge(x.x, a, y.x, b), att_merge(x.y, a, y.y, b),
                       att_merge(x.z, a, y.z, b), att_merge(x.w, a, y.w, b));
}

// Merge factors of a chunk with max mc into the running max m (which becomes the new max).
__device__ __forceinline__ void att_factors(float& m, float mc, float& a, float& b) {
    const float mn = fmaxf(m, mc);
    a = expf(__fsub_rn(m, mn));
    b = expf(__fsub_rn(mc, mn));
    m = mn;
}

// The row's sink logit z merged after its last chunk, as the chunk (z, 1, 0): l becomes the
// denominator; returns the factor a of the row's o (see the canonical reduction above).
__device__ __forceinline__ float att_sink(float m, float& l, float z) {
    float a, b;
    att_factors(m, z, a, b);
    l = att_merge(l, a, 1.0f, b);
    return a;
}

// (o a) per element, one rounding each (the output of a row with a sink).
__device__ __forceinline__ float4 att_scale4(float4 o, float a) {
    return make_float4(__fmul_rn(o.x, a), __fmul_rn(o.y, a), __fmul_rn(o.z, a),
                       __fmul_rn(o.w, a));
}

// One warp, one row: the softmax of the chunk's scores s[0..ATT_CHUNK) over the valid
// chunk-local positions jlo..=jhi (jlo <= jhi). s becomes p (0 outside); every lane gets m_c and
// l_c. ATT_CHUNK is 2 * WARP_SIZE.
__device__ __forceinline__ void chunk_softmax(float* s, int jlo, int jhi, int lane, float& m,
                                              float& l) {
    const int j0 = lane, j1 = lane + WARP_SIZE;
    const bool v0 = j0 >= jlo && j0 <= jhi;
    const bool v1 = j1 >= jlo && j1 <= jhi;
    const float s0 = v0 ? s[j0] : -INFINITY;
    const float s1 = v1 ? s[j1] : -INFINITY;
    m = warp_max(fmaxf(s0, s1));
    const float p0 = v0 ? expf(__fsub_rn(s0, m)) : 0.0f;
    const float p1 = v1 ? expf(__fsub_rn(s1, m)) : 0.0f;
    l = warp_sum(__fadd_rn(p0, p1));
    s[j0] = p0;
    s[j1] = p1;
}

// chunk_softmax for N rows at once (rows s + rr * stride, ranges jlo[rr]..=jhi[rr]): the same
// operations per row, interleaved. A row with an empty range gets garbage m, l (unused).
template <int N>
__device__ __forceinline__ void chunk_softmax_rows(float* s, int stride, const int* jlo,
                                                   const int* jhi, int lane, float* m, float* l) {
    const int j0 = lane, j1 = lane + WARP_SIZE;
    float s0[N], s1[N];
    bool v0[N], v1[N];
    #pragma unroll
    for (int rr = 0; rr < N; ++rr) {
        v0[rr] = j0 >= jlo[rr] && j0 <= jhi[rr];
        v1[rr] = j1 >= jlo[rr] && j1 <= jhi[rr];
        s0[rr] = v0[rr] ? s[rr * stride + j0] : -INFINITY;
        s1[rr] = v1[rr] ? s[rr * stride + j1] : -INFINITY;
        m[rr] = fmaxf(s0[rr], s1[rr]);
    }
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        #pragma unroll
        for (int rr = 0; rr < N; ++rr) m[rr] = fmaxf(m[rr], __shfl_xor_sync(FULL_MASK, m[rr], o));
    #pragma unroll
    for (int rr = 0; rr < N; ++rr) {
        const float p0 = v0[rr] ? expf(__fsub_rn(s0[rr], m[rr])) : 0.0f;
        const float p1 = v1[rr] ? expf(__fsub_rn(s1[rr], m[rr])) : 0.0f;
        l[rr] = __fadd_rn(p0, p1);
        s[rr * stride + j0] = p0;
        s[rr * stride + j1] = p1;
    }
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        #pragma unroll
        for (int rr = 0; rr < N; ++rr) l[rr] += __shfl_xor_sync(FULL_MASK, l[rr], o);
}

// Stage the K and V rows of positions j0 + jlo ..= j0 + jhi of slot sl, KV head kvh, into
// sk: (ATT_CHUNK, head_dim + 4) and sv: (ATT_CHUNK, head_dim) f32 (chunk-local rows), read as
// the cache's type T stores them, 4 values a load, 2 BATCH in flight per thread; rows:
// (ATT_CHUNK) u64 shared scratch for the rows' cache indices (one page-table lookup per key).
// The whole block calls it (one barrier inside).
template <int T, int BATCH>
__device__ __forceinline__ void stage_kv(const u8* __restrict__ kc, const u8* __restrict__ vc,
                                         const i32* __restrict__ page_table, int pages_per_slot,
                                         int page_tokens, int sl, int j0, int jlo, int jhi,
                                         int kv_dim, int kvh, int hd, float* sk, float* sv,
                                         u64* rows) {
    const int tid = threadIdx.x;
    if (tid >= jlo && tid <= jhi)  // ATT_CHUNK <= ATT_THREADS
        rows[tid] = kv_row(page_table, pages_per_slot, page_tokens, sl, j0 + tid);
    __syncthreads();
    // Thread (jr, e): keys jlo + jr + k kp, float4 column e.
    const int hd4 = hd / 4;
    const int kp = ATT_THREADS / hd4;
    const int jr = tid / hd4, e = tid - jr * hd4;
    if (jr >= kp) return;
    for (int j = jlo + jr; j <= jhi; j += BATCH * kp) {
        float4 kr[BATCH], vr[BATCH];
        #pragma unroll
        for (int u = 0; u < BATCH; ++u) {
            const int jj = j + u * kp;
            if (jj <= jhi) {
                kr[u] = kv_load4<T>(kc, rows[jj], kv_dim, kvh * hd + 4 * e);
                vr[u] = kv_load4<T>(vc, rows[jj], kv_dim, kvh * hd + 4 * e);
            }
        }
        #pragma unroll
        for (int u = 0; u < BATCH; ++u) {
            const int jj = j + u * kp;
            if (jj <= jhi) {
                *(float4*)(sk + jj * (hd + 4) + 4 * e) = kr[u];
                *(float4*)(sv + jj * hd + 4 * e) = vr[u];
            }
        }
    }
}

// out[i] = o[i] / l[row of i] for the block's n4 float4 columns (row i / hd4); with the rows'
// sink factors a (null: no sinks), (o[i] a[row]) / l[row].
__device__ __forceinline__ void att_write_out(float* out, const float4* o, const float* l,
                                              const float* a, int n4, int hd4) {
    for (int i = threadIdx.x; i < n4; i += ATT_THREADS) {
        const float4 v = a ? att_scale4(o[i], a[i / hd4]) : o[i];
        const float d = l[i / hd4];
        *(float4*)(out + 4 * i) =
            make_float4(__fdiv_rn(v.x, d), __fdiv_rn(v.y, d), __fdiv_rn(v.z, d), __fdiv_rn(v.w, d));
    }
}

// Flash-decoding attention, the path for few tokens (and any step).
// q, out: (ntok, n_heads, head_dim) f32; slot, pos: (ntok) i32; K/V cache and page table as at
// the top of the file; chunk_cap: the chunks per row the split buffer holds (see att_part_o).
// Grid: (ntok, n_kv_heads * ceil(group / ATT_DEC_ROWS), n_split); block: ATT_THREADS; dynamic
// shared memory: (2 ATT_DEC_ROWS hd + ATT_CHUNK (2 hd + 4) + ATT_DEC_ROWS ATT_CHUNK) floats.
// A block takes one token and up to ATT_DEC_ROWS query heads of one KV head (they share every
// K/V load) and the chunks c_lo + z, c_lo + z + n_split, ... of the token's range
// (z = blockIdx.z). n_split == 1: the block merges its chunks in order and writes out.
// Otherwise each chunk's (m_c, l_c, o_c) goes to att_part_*, and the last block of the
// (token, heads) to arrive merges all of them in chunk order. A token with more than chunk_cap
// chunks is done by its z = 0 block alone, unsplit (the same bits either way).
template <int T>
__device__ __forceinline__ void attention_decode(const float* __restrict__ q, const u8* __restrict__ kc,
                     const u8* __restrict__ vc, const i32* __restrict__ page_table,
                     const i32* __restrict__ slot, const i32* __restrict__ pos,
                     float* __restrict__ out, int n_heads, int n_kv_heads, int head_dim,
                     int pages_per_slot, int page_tokens, int window, float scale, int chunk_cap,
                     const float* __restrict__ sinks) {
    extern __shared__ float4 att_smem[];
    __shared__ float s_m[ATT_DEC_ROWS], s_l[ATT_DEC_ROWS], s_a[ATT_DEC_ROWS], s_b[ATT_DEC_ROWS];
    __shared__ float s_fa[ATT_DEC_ROWS][WARP_SIZE], s_fb[ATT_DEC_ROWS][WARP_SIZE];
    __shared__ u64 s_rows[ATT_CHUNK];
    __shared__ int s_last;
    const int hd = head_dim, hd4 = hd / 4, ks = hd + 4;
    float* sq = (float*)att_smem;        // (ATT_DEC_ROWS, hd): scaled queries
    float* so = sq + ATT_DEC_ROWS * hd;  // (ATT_DEC_ROWS, hd): the running o
    float* sk = so + ATT_DEC_ROWS * hd;  // (ATT_CHUNK, hd + 4)
    float* sv = sk + ATT_CHUNK * ks;     // (ATT_CHUNK, hd)
    float* sp = sv + ATT_CHUNK * hd;     // (ATT_DEC_ROWS, ATT_CHUNK): scores, then p
    const int tid = threadIdx.x, lane = tid % WARP_SIZE, warp = tid / WARP_SIZE;
    const int t = blockIdx.x;
    const int group = n_heads / n_kv_heads;
    const int ngrp = (group + ATT_DEC_ROWS - 1) / ATT_DEC_ROWS;
    const int kvh = blockIdx.y / ngrp;
    const int h0 = kvh * group + (blockIdx.y % ngrp) * ATT_DEC_ROWS;
    const int rows = min(ATT_DEC_ROWS, kvh * group + group - h0);
    const int kv_dim = n_kv_heads * hd;
    const int n_out = rows * hd;              // outputs (row i / hd, element i % hd)
    const int n_out4 = rows * hd4;            // their float4 columns
    const u64 row0 = (u64)t * n_heads + h0;  // first query row of the block
    float4* so4 = (float4*)so;
    // The queries first: their loads overlap the position's.
    for (int i = tid; i < n_out; i += ATT_THREADS) {
        sq[i] = __fmul_rn(q[row0 * hd + i], scale);
        so[i] = 0.0f;
    }
    const int sl = slot[t], p = pos[t];
    const int lo = window > 0 ? max(0, p - window + 1) : 0;
    const int c_lo = lo / ATT_CHUNK, c_hi = p / ATT_CHUNK;
    int n_split = gridDim.z;
    if (n_split > 1 && c_hi - c_lo + 1 > chunk_cap) {
        if (blockIdx.z != 0) return;
        n_split = 1;
    }
    if (tid < ATT_DEC_ROWS) {
        s_m[tid] = -INFINITY;
        s_l[tid] = 0.0f;
    }
    const int c_first = c_lo + (int)blockIdx.z;

    for (int c = c_first; c <= c_hi; c += n_split) {
        const int j0 = c * ATT_CHUNK;
        const int jlo = max(lo, j0) - j0, jhi = min(p, j0 + ATT_CHUNK - 1) - j0;
        __syncthreads();  // sq written; the previous chunk's readers done
        stage_kv<T, 4>(kc, vc, page_table, pages_per_slot, page_tokens, sl, j0, jlo, jhi, kv_dim, kvh,
                    hd, sk, sv, s_rows);
        __syncthreads();
        // scores: row i / ATT_CHUNK, key i % ATT_CHUNK
        for (int i = tid; i < rows * ATT_CHUNK; i += ATT_THREADS) {
            const int r = i / ATT_CHUNK, j = i % ATT_CHUNK;
            if (j < jlo || j > jhi) continue;
            const float4* q4 = (const float4*)(sq + r * hd);
            const float4* k4 = (const float4*)(sk + j * ks);
            float s = 0.0f;
            #pragma unroll 8
            for (int e = 0; e < hd4; ++e) s = att_dot4(s, q4[e], k4[e]);
            sp[r * ATT_CHUNK + j] = s;
        }
        __syncthreads();
        if (warp < rows) {
            float mc, lc;
            chunk_softmax(sp + warp * ATT_CHUNK, jlo, jhi, lane, mc, lc);
            if (lane == 0) {
                if (n_split == 1) {
                    float m = s_m[warp], a, b;
                    att_factors(m, mc, a, b);
                    s_m[warp] = m;
                    s_l[warp] = att_merge(s_l[warp], a, lc, b);
                    s_a[warp] = a;
                    s_b[warp] = b;
                } else {
                    float* ml = att_part_ml + ((row0 + warp) * chunk_cap + c - c_lo) * 2;
                    ml[0] = mc;
                    ml[1] = lc;
                }
            }
        }
        __syncthreads();
        // o_c, 4 elements (one float4 column d4 of row r) per thread
        for (int i = tid; i < n_out4; i += ATT_THREADS) {
            const int r = i / hd4, d4 = i - r * hd4;
            const float* pr = sp + r * ATT_CHUNK;
            const float4* v4 = (const float4*)sv + d4;
            float4 oc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            #pragma unroll 8
            for (int j = jlo; j <= jhi; ++j) oc = att_axpy4(pr[j], v4[j * hd4], oc);
            if (n_split == 1)
                so4[i] = att_merge4(so4[i], s_a[r], oc, s_b[r]);
            else
                *(float4*)(att_part_o + ((row0 + r) * chunk_cap + c - c_lo) * hd + 4 * d4) = oc;
        }
    }

    if (n_split == 1) {
        if (sinks) {
            __syncthreads();  // the last chunk's readers of s_a are done
            if (tid < rows) s_a[tid] = att_sink(s_m[tid], s_l[tid], sinks[h0 + tid]);
            __syncthreads();
        }
        att_write_out(out + row0 * hd, so4, s_l, sinks ? s_a : nullptr, n_out4, hd4);
        return;
    }

    // Split: the last block of this (token, heads) to arrive merges the chunks in order.
    __threadfence();
    __syncthreads();
    if (tid == 0) {
        unsigned int* cnt = att_counters + (u64)t * gridDim.y + blockIdx.y;
        const unsigned int arrived = atomicAdd(cnt, 1u);
        s_last = arrived == (unsigned int)(n_split - 1);
        if (s_last) *cnt = 0;
    }
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    // Windows of WARP_SIZE chunks: warp r finds row r's factors (the running max is a prefix
    // max, exact in any order) and its l chain; then every output merges the window's o_c.
    float m_carry = -INFINITY, l_run = 0.0f;
    for (int cb = c_lo; cb <= c_hi; cb += WARP_SIZE) {
        const int nc = min(WARP_SIZE, c_hi - cb + 1);
        if (warp < rows) {
            const u64 pr = (row0 + warp) * chunk_cap + cb - c_lo + lane;
            const float mc = lane < nc ? __ldcg(att_part_ml + pr * 2) : -INFINITY;
            const float lc = lane < nc ? __ldcg(att_part_ml + pr * 2 + 1) : 0.0f;
            float pm = mc;
            #pragma unroll
            for (int o = 1; o < WARP_SIZE; o <<= 1) {
                const float x = __shfl_up_sync(FULL_MASK, pm, o);
                if (lane >= o) pm = fmaxf(pm, x);
            }
            pm = fmaxf(pm, m_carry);
            float prev = __shfl_up_sync(FULL_MASK, pm, 1);
            if (lane == 0) prev = m_carry;
            const float fa = expf(__fsub_rn(prev, pm));
            const float fb = expf(__fsub_rn(mc, pm));
            s_fa[warp][lane] = fa;
            s_fb[warp][lane] = fb;
            m_carry = __shfl_sync(FULL_MASK, pm, nc - 1);
            for (int i = 0; i < nc; ++i)
                l_run = att_merge(l_run, __shfl_sync(FULL_MASK, fa, i),
                                  __shfl_sync(FULL_MASK, lc, i), __shfl_sync(FULL_MASK, fb, i));
        }
        __syncthreads();
        for (int i = tid; i < n_out4; i += ATT_THREADS) {
            const int r = i / hd4, d4 = i - r * hd4;
            const float4* src =
                (const float4*)(att_part_o + ((row0 + r) * chunk_cap + cb - c_lo) * hd) + d4;
            float4 o = so4[i];
            #pragma unroll 8
            for (int ci = 0; ci < nc; ++ci)
                o = att_merge4(o, s_fa[r][ci], __ldcg(src + (u64)ci * hd4), s_fb[r][ci]);
            so4[i] = o;
        }
        __syncthreads();
    }
    if (warp < rows && lane == 0) {
        // m_carry is the max over every chunk, as the unsplit running max
        s_l[warp] = l_run;
        if (sinks) s_a[warp] = att_sink(m_carry, s_l[warp], sinks[h0 + warp]);
    }
    __syncthreads();
    att_write_out(out + row0 * hd, so4, s_l, sinks ? s_a : nullptr, n_out4, hd4);
}
#define ATT_DECODE_KERNEL(name, T)                                                                \
    extern "C" __global__ void __launch_bounds__(ATT_THREADS, 3)                                  \
    name(const float* __restrict__ q, const u8* __restrict__ kc, const u8* __restrict__ vc,       \
         const i32* __restrict__ page_table, const i32* __restrict__ slot,                         \
         const i32* __restrict__ pos, float* __restrict__ out, int n_heads, int n_kv_heads,        \
         int head_dim, int pages_per_slot, int page_tokens, int window, float scale,               \
         int chunk_cap, const float* __restrict__ sinks) {                                        \
        pdl_prologue();                                                                           \
        attention_decode<T>(q, kc, vc, page_table, slot, pos, out, n_heads, n_kv_heads, head_dim, \
                            pages_per_slot, page_tokens, window, scale, chunk_cap, sinks);         \
    }
ATT_DECODE_KERNEL(attention_decode_f32, KV_F32)
ATT_DECODE_KERNEL(attention_decode_f16, KV_F16)
ATT_DECODE_KERNEL(attention_decode_q8_0, KV_Q8_0)

// Query-tiled attention, the path for long steps (prefill). KP: float4 columns per lane in the
// P V product (head_dim <= 64 KP).
// q, out: (ntok, n_heads, head_dim) f32; slot, pos: (ntok) i32. With gb = min(group,
// ATT_PRE_ROWS) heads and tq = ATT_PRE_ROWS / gb tokens per block: grid (ceil(ntok / tq),
// n_kv_heads * ceil(group / gb)); block: ATT_THREADS; dynamic shared memory: (ATT_PRE_ROWS
// (hd + 4) + ATT_CHUNK (2 hd + 4) + ATT_PRE_ROWS ATT_PRE_SP) floats.
// Blocks take the tiles from the last (the longest key ranges) in launch order. Block row r (0..ATT_PRE_ROWS) is token t0 + r / gb, head hb + r % gb. The block's tokens are
// taken in runs of one slot (a prefill tile is one run; a batch of decodes is runs of one);
// each chunk of a run's key range is staged once in shared memory for all the run's rows.
// Warp w owns rows 8w..8w+8 in every phase: lane (rh, sub) = (lane / 16, lane % 16) computes
// the scores of rows 8w + 4 rh + a (a < 4) with keys sub + 16 b (b < 4) and holds the outputs of
// the same rows at float4 columns sub + 16 k (k < KP).
template <int T, int KP>
__device__ __forceinline__ void attention_prefill(
    const float* __restrict__ q, const u8* __restrict__ kc, const u8* __restrict__ vc,
    const i32* __restrict__ page_table, const i32* __restrict__ slot, const i32* __restrict__ pos,
    float* __restrict__ out, int ntok, int n_heads, int n_kv_heads, int head_dim,
    int pages_per_slot, int page_tokens, int window, float scale, const float* __restrict__ sinks) {
    extern __shared__ float4 att_smem[];
    __shared__ float s_m[ATT_PRE_ROWS], s_l[ATT_PRE_ROWS], s_a[ATT_PRE_ROWS], s_b[ATT_PRE_ROWS];
    __shared__ int s_act[ATT_PRE_ROWS];
    __shared__ int s_slot[ATT_PRE_ROWS], s_pos[ATT_PRE_ROWS], s_lo[ATT_PRE_ROWS];
    __shared__ u64 s_rows[ATT_CHUNK];
    const int hd = head_dim, hd4 = hd / 4, ks = hd + 4;
    float* sq = (float*)att_smem;        // (ATT_PRE_ROWS, hd + 4)
    float* sk = sq + ATT_PRE_ROWS * ks;  // (ATT_CHUNK, hd + 4)
    float* sv = sk + ATT_CHUNK * ks;     // (ATT_CHUNK, hd)
    float* sp = sv + ATT_CHUNK * hd;     // (ATT_PRE_ROWS, ATT_PRE_SP)
    const int tid = threadIdx.x, lane = tid % WARP_SIZE, warp = tid / WARP_SIZE;
    const int rh = lane / 16, sub = lane % 16;
    const int group = n_heads / n_kv_heads;
    const int gb = min(group, ATT_PRE_ROWS);
    const int ngrp = (group + gb - 1) / gb;
    const int tq = ATT_PRE_ROWS / gb;
    // Launch order (x fastest) walks the tiles from the last, every head group of a tile
    // together: the longest key ranges start first.
    const int lin = blockIdx.y * gridDim.x + blockIdx.x;
    const int yb = lin % gridDim.y;
    const int kvh = yb / ngrp;
    const int hb = kvh * group + (yb % ngrp) * gb;  // the block's first head
    const int nh = min(gb, kvh * group + group - hb);
    const int t0 = (gridDim.x - 1 - lin / gridDim.y) * tq;
    const int nt = min(tq, ntok - t0);
    const int kv_dim = n_kv_heads * hd;

    if (tid < nt) {
        const int p = pos[t0 + tid];
        s_slot[tid] = slot[t0 + tid];
        s_pos[tid] = p;
        s_lo[tid] = window > 0 ? max(0, p - window + 1) : 0;
    }
    for (int i = tid; i < ATT_PRE_ROWS * hd; i += ATT_THREADS) {
        const int r = i / hd, d = i % hd;
        const int tr = r / gb, hr = r % gb;
        sq[r * ks + d] =
            tr < nt && hr < nh
                ? __fmul_rn(q[((u64)(t0 + tr) * n_heads + hb + hr) * hd + d], scale)
                : 0.0f;
    }
    if (tid < ATT_PRE_ROWS) {
        s_m[tid] = -INFINITY;
        s_l[tid] = 0.0f;
    }
    const int rb = warp * 8 + rh * 4;  // this lane's first row
    float4 o_run[4][KP];
    #pragma unroll
    for (int a = 0; a < 4; ++a)
        #pragma unroll
        for (int k = 0; k < KP; ++k) o_run[a][k] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    __syncthreads();

    for (int ta = 0; ta < nt;) {
        const int sl = s_slot[ta];
        int tb = ta + 1;
        while (tb < nt && s_slot[tb] == sl) ++tb;
        int lo_min = s_lo[ta], p_max = s_pos[ta];
        for (int tt = ta + 1; tt < tb; ++tt) {
            lo_min = min(lo_min, s_lo[tt]);
            p_max = max(p_max, s_pos[tt]);
        }
        const int r_lo = ta * gb, r_hi = tb * gb;  // the run's rows
        for (int c = lo_min / ATT_CHUNK; c <= p_max / ATT_CHUNK; ++c) {
            const int j0 = c * ATT_CHUNK;
            __syncthreads();  // the previous chunk's readers are done
            stage_kv<T, 8>(kc, vc, page_table, pages_per_slot, page_tokens, sl, j0, max(lo_min, j0) - j0,
                        min(p_max, j0 + ATT_CHUNK - 1) - j0, kv_dim, kvh, hd, sk, sv, s_rows);
            __syncthreads();
            // Row w8 + (lane % 8)'s range in this chunk; skip the warp when none of its rows has one.
            int jlo_r, jhi_r;
            bool act_r;
            {
                const int r = warp * 8 + lane % 8;
                const int tr = r / gb;
                act_r = r >= r_lo && r < r_hi && r % gb < nh;
                jlo_r = act_r ? max(s_lo[tr], j0) - j0 : 0;
                jhi_r = act_r ? min(s_pos[tr], j0 + ATT_CHUNK - 1) - j0 : -1;
                act_r = act_r && jlo_r <= jhi_r;
            }
            if (!__any_sync(FULL_MASK, act_r)) continue;
            // scores
            {
                float acc[4][4];
                #pragma unroll
                for (int a = 0; a < 4; ++a)
                    #pragma unroll
                    for (int b = 0; b < 4; ++b) acc[a][b] = 0.0f;
                const float4* q4 = (const float4*)(sq + rb * ks);
                const float4* k4 = (const float4*)(sk + sub * ks);
                const int ks4 = ks / 4;
                #pragma unroll 2
                for (int e = 0; e < hd4; ++e) {
                    float4 qa[4], kb[4];
                    #pragma unroll
                    for (int a = 0; a < 4; ++a) qa[a] = q4[a * ks4 + e];
                    #pragma unroll
                    for (int b = 0; b < 4; ++b) kb[b] = k4[16 * b * ks4 + e];
                    #pragma unroll
                    for (int a = 0; a < 4; ++a)
                        #pragma unroll
                        for (int b = 0; b < 4; ++b) acc[a][b] = att_dot4(acc[a][b], qa[a], kb[b]);
                }
                #pragma unroll
                for (int a = 0; a < 4; ++a)
                    #pragma unroll
                    for (int b = 0; b < 4; ++b) sp[(rb + a) * ATT_PRE_SP + sub + 16 * b] = acc[a][b];
            }
            __syncwarp();
            // chunk softmax of the warp's 8 rows at once (each row as chunk_softmax does it),
            // then lane rr < 8 merges row 8w + rr's factors
            {
                int jlo[8], jhi[8];
                float mc[8], lc[8];
                #pragma unroll
                for (int rr = 0; rr < 8; ++rr) {
                    jlo[rr] = __shfl_sync(FULL_MASK, jlo_r, rr);
                    jhi[rr] = __shfl_sync(FULL_MASK, jhi_r, rr);
                }
                chunk_softmax_rows<8>(sp + warp * 8 * ATT_PRE_SP, ATT_PRE_SP, jlo, jhi, lane, mc,
                                      lc);
                float my_m = 0.0f, my_l = 0.0f;
                #pragma unroll
                for (int rr = 0; rr < 8; ++rr)
                    if (lane == rr) {
                        my_m = mc[rr];
                        my_l = lc[rr];
                    }
                if (lane < 8) {
                    const int r = warp * 8 + lane;
                    if (act_r) {
                        float m = s_m[r], fa, fb;
                        att_factors(m, my_m, fa, fb);
                        s_m[r] = m;
                        s_l[r] = att_merge(s_l[r], fa, my_l, fb);
                        s_a[r] = fa;
                        s_b[r] = fb;
                    }
                    s_act[r] = act_r;
                }
            }
            __syncwarp();
            // P V for this lane's 4 rows
            {
                int jlo[4], jhi[4];
                bool act[4];
                int jmin = ATT_CHUNK, jmax = -1;
                #pragma unroll
                for (int a = 0; a < 4; ++a) {
                    const int src = rh * 4 + a;
                    act[a] = s_act[rb + a];
                    jlo[a] = __shfl_sync(FULL_MASK, jlo_r, src);
                    jhi[a] = __shfl_sync(FULL_MASK, jhi_r, src);
                    if (act[a]) {
                        jmin = min(jmin, jlo[a]);
                        jmax = max(jmax, jhi[a]);
                    }
                }
                float4 oc[4][KP];
                #pragma unroll
                for (int a = 0; a < 4; ++a)
                    #pragma unroll
                    for (int k = 0; k < KP; ++k) oc[a][k] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                // The same chains either way; the first loop drops predicates that all hold.
                const bool same = act[0] && act[1] && act[2] && act[3] && jlo[1] == jlo[0] &&
                                  jlo[2] == jlo[0] && jlo[3] == jlo[0] && jhi[1] == jhi[0] &&
                                  jhi[2] == jhi[0] && jhi[3] == jhi[0];
                if (same) {
                    #pragma unroll 2
                    for (int j = jmin; j <= jmax; ++j) {
                        float pa[4];
                        #pragma unroll
                        for (int a = 0; a < 4; ++a) pa[a] = sp[(rb + a) * ATT_PRE_SP + j];
                        #pragma unroll
                        for (int k = 0; k < KP; ++k) {
                            const int col = sub + 16 * k;
                            if (col >= hd4) continue;
                            const float4 v = *(const float4*)(sv + j * hd + 4 * col);
                            #pragma unroll
                            for (int a = 0; a < 4; ++a) oc[a][k] = att_axpy4(pa[a], v, oc[a][k]);
                        }
                    }
                } else {
                    for (int j = jmin; j <= jmax; ++j) {
                        float pa[4];
                        #pragma unroll
                        for (int a = 0; a < 4; ++a) pa[a] = sp[(rb + a) * ATT_PRE_SP + j];
                        #pragma unroll
                        for (int k = 0; k < KP; ++k) {
                            const int col = sub + 16 * k;
                            if (col >= hd4) continue;
                            const float4 v = *(const float4*)(sv + j * hd + 4 * col);
                            #pragma unroll
                            for (int a = 0; a < 4; ++a)
                                if (act[a] && j >= jlo[a] && j <= jhi[a])
                                    oc[a][k] = att_axpy4(pa[a], v, oc[a][k]);
                        }
                    }
                }
                #pragma unroll
                for (int a = 0; a < 4; ++a) {
                    if (!act[a]) continue;
                    const float fa = s_a[rb + a], fb = s_b[rb + a];
                    #pragma unroll
                    for (int k = 0; k < KP; ++k) o_run[a][k] = att_merge4(o_run[a][k], fa, oc[a][k], fb);
                }
            }
        }
        ta = tb;
    }
    __syncthreads();
    #pragma unroll
    for (int a = 0; a < 4; ++a) {
        const int r = rb + a;
        const int tr = r / gb, hr = r % gb;
        if (tr >= nt || hr >= nh) continue;
        float l = s_l[r];
        // the sink: every lane of the row computes the same factor
        const float fs = sinks ? att_sink(s_m[r], l, sinks[hb + hr]) : 1.0f;
        float* orow = out + ((u64)(t0 + tr) * n_heads + hb + hr) * hd;
        #pragma unroll
        for (int k = 0; k < KP; ++k) {
            const int col = sub + 16 * k;
            if (col >= hd4) continue;
            const float4 o = sinks ? att_scale4(o_run[a][k], fs) : o_run[a][k];
            *(float4*)(orow + 4 * col) = make_float4(__fdiv_rn(o.x, l), __fdiv_rn(o.y, l),
                                                     __fdiv_rn(o.z, l), __fdiv_rn(o.w, l));
        }
    }
}

// attention_prefill<T, KP> for head_dim <= 64 KP; same arguments as attention_prefill.
#define ATT_PREFILL_KERNEL(name, T, KP)                                                           \
    extern "C" __global__ void __launch_bounds__(ATT_THREADS)                                      \
    name(const float* __restrict__ q, const u8* __restrict__ kc, const u8* __restrict__ vc,         \
         const i32* __restrict__ page_table, const i32* __restrict__ slot,                         \
         const i32* __restrict__ pos, float* __restrict__ out, int ntok, int n_heads,              \
         int n_kv_heads, int head_dim, int pages_per_slot, int page_tokens, int window,            \
         float scale, const float* __restrict__ sinks) {                                           \
        pdl_prologue();                                                                             \
        attention_prefill<T, KP>(q, kc, vc, page_table, slot, pos, out, ntok, n_heads, n_kv_heads,    \
                              head_dim, pages_per_slot, page_tokens, window, scale, sinks);        \
    }
ATT_PREFILL_KERNEL(attention_prefill1_f32, KV_F32, 1)
ATT_PREFILL_KERNEL(attention_prefill2_f32, KV_F32, 2)
ATT_PREFILL_KERNEL(attention_prefill3_f32, KV_F32, 3)
ATT_PREFILL_KERNEL(attention_prefill4_f32, KV_F32, 4)
ATT_PREFILL_KERNEL(attention_prefill1_f16, KV_F16, 1)
ATT_PREFILL_KERNEL(attention_prefill2_f16, KV_F16, 2)
ATT_PREFILL_KERNEL(attention_prefill3_f16, KV_F16, 3)
ATT_PREFILL_KERNEL(attention_prefill4_f16, KV_F16, 4)
ATT_PREFILL_KERNEL(attention_prefill1_q8_0, KV_Q8_0, 1)
ATT_PREFILL_KERNEL(attention_prefill2_q8_0, KV_Q8_0, 2)
ATT_PREFILL_KERNEL(attention_prefill3_q8_0, KV_Q8_0, 3)
ATT_PREFILL_KERNEL(attention_prefill4_q8_0, KV_Q8_0, 4)
