// Paged KV cache and causal attention with grouped-query heads and optional sliding windows.
//
// KV cache, per layer: (n_pages, page_tokens, kv_dim) f32 for K and the same for V, where
// kv_dim = n_kv_heads * head_dim. A sequence's slot owns pages listed in its page-table row:
// page_table: (n_slots, pages_per_slot) i32, so token position p of slot s lives in page
// page_table[s * pages_per_slot + p / page_tokens] at row p % page_tokens.
// Per-token metadata (one entry per new token of the step): slot (i32), pos (i32).

#define KV_THREADS 128
#define ATT_WARPS 8
#define ATT_MAX_HEAD_DIM 256

// Append the step's keys and values to the cache.
// k, v: (ntok, kv_dim) f32.  Grid: (ntok); block: KV_THREADS.
extern "C" __global__ void kv_write_f32(const float* __restrict__ k, const float* __restrict__ v,
                                        float* kc, float* vc, const i32* __restrict__ page_table,
                                        const i32* __restrict__ slot, const i32* __restrict__ pos,
                                        int pages_per_slot, int page_tokens, int kv_dim) {
    const int t = blockIdx.x;
    const u64 dst = kv_row(page_table, pages_per_slot, page_tokens, slot[t], pos[t]) * kv_dim;
    for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) {
        kc[dst + i] = k[(u64)t * kv_dim + i];
        vc[dst + i] = v[(u64)t * kv_dim + i];
    }
}

// out[t][h] = softmax_j(q[t][h] . K[j][h/group] * scale) V[j][h/group] over the cached positions
// j of token t's slot with lo <= j <= pos[t], lo = window ? max(0, pos - window + 1) : 0.
// q, out: (ntok, n_heads, head_dim) f32.  Grid: (ntok, n_heads); block: ATT_WARPS warps.
// Each warp walks every ATT_WARPS-th key with an online softmax (running max m, sum l and the
// weighted value sum o, each lane holding head_dim/32 elements); the warps' partial results
// are merged in warp order, so the result does not depend on scheduling.
// head_dim must be a multiple of 32 and at most ATT_MAX_HEAD_DIM.
extern "C" __global__ void __launch_bounds__(ATT_WARPS * WARP_SIZE)
attention_f32(const float* __restrict__ q, const float* __restrict__ kc, const float* __restrict__ vc,
              const i32* __restrict__ page_table, const i32* __restrict__ slot,
              const i32* __restrict__ pos, float* __restrict__ out, int n_heads, int n_kv_heads,
              int head_dim, int pages_per_slot, int page_tokens, int window, float scale) {
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
        const u64 base = kv_row(page_table, pages_per_slot, page_tokens, s, j) * kv_dim +
                         (u64)kvh * head_dim;
        float dot = 0.0f;
        #pragma unroll
        for (int i = 0; i < PER_LANE; ++i)
            if (i < per) dot += qv[i] * kc[base + lane + 32 * i];
        dot = warp_sum(dot);
        const float m_new = fmaxf(m, dot);
        const float corr = expf(m - m_new);
        const float e = expf(dot - m_new);
        l = l * corr + e;
        #pragma unroll
        for (int i = 0; i < PER_LANE; ++i)
            if (i < per) o[i] = o[i] * corr + e * vc[base + lane + 32 * i];
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
    float gl = 0.0f;
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
