// Rotary position embedding, in place, on (ntok, heads, head_dim) f32 vectors.
//
// For pair i (0 <= i < n_rot/2) at position p: theta_i = (p * s^i) * f with s = base^(-2 / n_rot)
// and f the linear RoPE scaling factor (freq_scale, 1 without scaling),
// computed in f32 by repeated multiplication exactly as llama.cpp (and the CPU backend) do (the
// host passes s, so both sides use the same f32 value), and
// the pair (a, b) becomes (a cos - b sin, a sin + b cos). NORM style (llama GGUF, whose q/k
// weights the converter permuted) pairs elements (2i, 2i+1); NEOX style (qwen2, gemma3) pairs
// (i, i + n_rot/2). Elements at and past n_rot are left alone. cos/sin are taken in double.
// Scaling beyond the linear factor: see RopeScale.
// x: (ntok, heads, head_dim);  pos: (ntok) i32.  Grid: (ntok, heads); block: ROPE_THREADS.
// pdl: every kernel of this module begins with pdl_prologue()

#define ROPE_THREADS 64

// RoPE scaling beyond the linear factor, as ggml's rope_yarn / ggml_rope_cache_init: per-pair
// frequency factors ff (null: none; llama3's rope_freqs, phi3's long/short factors), YaRN's
// extrapolation mix (ext_factor != 0, with its correction range corr0..corr1) and the magnitude
// attn_factor on cos and sin. The angle is ggml's: theta_extrap = p * s^i / ff[i],
// theta_interp = f * theta_extrap, blended by the YaRN ramp; without factors, YaRN and linear
// scaling (f = 1) that is p * s^i bit for bit as before scaling was added.
struct RopeScale {
    const float* ff;
    float ext_factor;
    float attn_factor;
    float corr0;
    float corr1;
};

// Rotate one head x (n_rot leading dims) for position p; threads of the block take pairs in turn.
__device__ __forceinline__ void rope_head(float* x, int p, int n_rot, float theta_scale,
                                          float freq_scale, int neox, RopeScale rs) {
    for (int i = threadIdx.x; i < n_rot / 2; i += blockDim.x) {
        float extrap = (float)p;
        for (int j = 0; j < i; ++j) extrap = __fmul_rn(extrap, theta_scale);
        if (rs.ff != nullptr) extrap = __fdiv_rn(extrap, rs.ff[i]);
        const float interp = __fmul_rn(freq_scale, extrap);
        float theta = interp;
        float mscale = rs.attn_factor;
        if (rs.ext_factor != 0.0f) {
            const float y = ((float)i - rs.corr0) / fmaxf(0.001f, rs.corr1 - rs.corr0);
            const float mix = (1.0f - fminf(1.0f, fmaxf(0.0f, y))) * rs.ext_factor;
            theta = __fadd_rn(__fmul_rn(interp, 1.0f - mix), __fmul_rn(extrap, mix));
            mscale *= 1.0f + 0.1f * logf(1.0f / freq_scale);
        }
        double s, c;
        sincos((double)theta, &s, &c);
        const int ia = neox ? i : 2 * i;
        const int ib = neox ? i + n_rot / 2 : 2 * i + 1;
        const float a = x[ia], b = x[ib];
        float cf = (float)c, sf = (float)s;
        if (mscale != 1.0f) {
            cf = __fmul_rn(cf, mscale);
            sf = __fmul_rn(sf, mscale);
        }
        // Unfused, as the CPU computes it.
        x[ia] = __fsub_rn(__fmul_rn(a, cf), __fmul_rn(b, sf));
        x[ib] = __fadd_rn(__fmul_rn(a, sf), __fmul_rn(b, cf));
    }
}

extern "C" __global__ void rope_f32(float* x, const i32* __restrict__ pos, int heads, int head_dim,
                                    int n_rot, float theta_scale, float freq_scale, int neox,
                                    const float* __restrict__ ff, float ext_factor,
                                    float attn_factor, float corr0, float corr1) {
    pdl_prologue();
    const int t = blockIdx.x;
    const int h = blockIdx.y;
    const RopeScale rs = {ff, ext_factor, attn_factor, corr0, corr1};
    rope_head(x + ((u64)t * heads + h) * head_dim, pos[t], n_rot, theta_scale, freq_scale, neox,
              rs);
}

// The attention prologue of one layer in one launch: for every new token, the optional per-head
// RMS norm (gemma3's q/k norms; pass null weights to skip), RoPE of its query heads and key
// heads, and the store of its (rotated) keys and values into the paged KV cache (layout in
// attention.cu; one kernel per cache type, rope_qk_store_{f32,f16,q8_0}).
// q: (ntok, n_heads, head_dim), k, v: (ntok, n_kv_heads, head_dim) f32;
// q_norm, k_norm: (head_dim) f32 or null.  Grid: (ntok, n_heads + n_kv_heads);
// block: ROPE_THREADS.
template <int T>
__device__ __forceinline__ void rope_qk_store(float* q, float* k, const float* __restrict__ v,
                                             u8* kc, u8* vc, const i32* __restrict__ page_table,
                                             const i32* __restrict__ slot, const i32* __restrict__ pos,
                                             const float* __restrict__ q_norm,
                                             const float* __restrict__ k_norm, float eps,
                                             int n_heads, int n_kv_heads, int head_dim, int n_rot,
                                             float theta_scale, float freq_scale, int neox,
                                             int pages_per_slot, int page_tokens,
                                             const float* __restrict__ ff, float ext_factor,
                                             float attn_factor, float corr0, float corr1) {
    __shared__ float scratch[32];
    const int t = blockIdx.x;
    const int h = blockIdx.y;
    const bool is_q = h < n_heads;
    const int kvh = h - n_heads;
    float* x = is_q ? q + ((u64)t * n_heads + h) * head_dim
                    : k + ((u64)t * n_kv_heads + kvh) * head_dim;
    const float* nw = is_q ? q_norm : k_norm;
    if (nw != nullptr) {  // uniform over the block
        float ss = 0.0f;
        for (int i = threadIdx.x; i < head_dim; i += blockDim.x) ss += x[i] * x[i];
        ss = block_sum(ss, scratch);
        const float inv = 1.0f / sqrtf(ss / (float)head_dim + eps);
        for (int i = threadIdx.x; i < head_dim; i += blockDim.x) x[i] = x[i] * inv * nw[i];
        __syncthreads();
    }
    const RopeScale rs = {ff, ext_factor, attn_factor, corr0, corr1};
    rope_head(x, pos[t], n_rot, theta_scale, freq_scale, neox, rs);
    if (!is_q) {
        __syncthreads();
        const int kv_dim = n_kv_heads * head_dim;
        const u64 row = kv_row(page_table, pages_per_slot, page_tokens, slot[t], pos[t]);
        const float* vh = v + ((u64)t * n_kv_heads + kvh) * head_dim;
        kv_store_span<T>(kc, row, kv_dim, kvh * head_dim, head_dim, x);
        kv_store_span<T>(vc, row, kv_dim, kvh * head_dim, head_dim, vh);
    }
}
#define ROPE_QK_STORE_KERNEL(name, T)                                                             \
    extern "C" __global__ void name(float* q, float* k, const float* __restrict__ v, u8* kc,      \
                                    u8* vc, const i32* __restrict__ page_table,                    \
                                    const i32* __restrict__ slot, const i32* __restrict__ pos,     \
                                    const float* __restrict__ q_norm,                              \
                                    const float* __restrict__ k_norm, float eps, int n_heads,      \
                                    int n_kv_heads, int head_dim, int n_rot, float theta_scale,    \
                                    float freq_scale, int neox, int pages_per_slot,                \
                                    int page_tokens, const float* __restrict__ ff,                 \
                                    float ext_factor, float attn_factor, float corr0,              \
                                    float corr1) {                                                 \
        pdl_prologue();                                                                           \
        rope_qk_store<T>(q, k, v, kc, vc, page_table, slot, pos, q_norm, k_norm, eps, n_heads,    \
                         n_kv_heads, head_dim, n_rot, theta_scale, freq_scale, neox,               \
                         pages_per_slot, page_tokens, ff, ext_factor, attn_factor, corr0, corr1);  \
    }
ROPE_QK_STORE_KERNEL(rope_qk_store_f32, KV_F32)
ROPE_QK_STORE_KERNEL(rope_qk_store_f16, KV_F16)
ROPE_QK_STORE_KERNEL(rope_qk_store_q8_0, KV_Q8_0)
