// Mixture of experts (GPT-OSS), on the device end to end: no readback, so a step stays one
// stream of launches (and can be captured into a graph). Per layer, with k = experts per token:
//   1. moe_route_f32: router logits (+ bias) -> each token's top k expert ids and their weights
//      (the softmax over the chosen logits).
//   2. moe_mmv_<type>_f32 for the gate and the up projections: one warp per output row of the
//      chosen expert, for every (token, choice) pair; only the chosen experts' rows are read.
//   3. moe_swiglu_oai_f32: the clamped SwiGLU of gate and up.
//   4. moe_mmv_<type>_f32 for the down projection (input per pair).
//   5. moe_combine_f32: x[t] += sum_j w[t][j] y[t][j] (the residual add included), j ascending.
// Experts are stacked as the GGUF stores them: expert e of a (n rows, k) projection is rows
// e * n .. e * n + n of the (n_expert * n, k) tensor; biases are (n_expert, n) f32.
// pdl: every kernel of this module begins with pdl_prologue()

#define MOE_ROWS_PER_BLOCK 4
#define MOE_THREADS 256
#define MOE_MAX_USED 32

// GPT-OSS's clamped SwiGLU (ggml's swiglu_oai; alpha 1.702, limit 7):
// x = min(g, limit), y = clamp(u, -limit, limit), out = x / (1 + exp(-alpha x)) * (y + 1).
__device__ __forceinline__ float swiglu_oai_f(float g, float u) {
    const float alpha = 1.702f, limit = 7.0f;
    const float x = fminf(g, limit);
    const float y = fminf(fmaxf(u, -limit), limit);
    return x / (1.0f + expf(alpha * -x)) * (y + 1.0f);
}

// logits: (ntok, n_expert) f32; bias: (n_expert) f32 or null; ids: (ntok, k) i32; w: (ntok, k)
// f32. Grid: (ntok); block: one warp. Lane 0 picks the top k in order (highest first, the
// lower index on a tie, as the CPU's stable sort), then the softmax over the chosen logits.
extern "C" __global__ void moe_route_f32(const float* __restrict__ logits,
                                         const float* __restrict__ bias, i32* __restrict__ ids,
                                         float* __restrict__ w, int n_expert, int k) {
    pdl_prologue();
    if (threadIdx.x != 0) return;
    const int t = blockIdx.x;
    const float* lt = logits + (u64)t * n_expert;
    float chosen[MOE_MAX_USED];
    int picked[MOE_MAX_USED];
    for (int j = 0; j < k; ++j) {
        int best = -1;
        float bv = -INFINITY;
        for (int e = 0; e < n_expert; ++e) {
            bool taken = false;
            for (int i = 0; i < j; ++i) taken |= picked[i] == e;
            const float v = lt[e] + (bias ? bias[e] : 0.0f);
            if (!taken && (best < 0 || v > bv)) {
                best = e;
                bv = v;
            }
        }
        picked[j] = best;
        chosen[j] = bv;
    }
    // softmax over the chosen (chosen[0] is the largest; kept aside, since the loop
    // overwrites chosen[0] first)
    const float top = chosen[0];
    float sum = 0.0f;
    for (int j = 0; j < k; ++j) {
        chosen[j] = expf(chosen[j] - top);
        sum += chosen[j];
    }
    for (int j = 0; j < k; ++j) {
        ids[(u64)t * k + j] = picked[j];
        w[(u64)t * k + j] = chosen[j] / sum;
    }
}

// y[p][r] = W_{ids[p]}[r] . x_p + bias_{ids[p]}[r] for every pair p = t * k + j:
// x_p = x[t] (x_per_pair 0: the gate and up projections share the token's input) or x[p]
// (x_per_pair 1: the down projection). W: (n_expert * n, kdim) of type T; x: (ntok or
// ntok * k, kdim) f32; y: (ntok * k, n) f32; bias: (n_expert, n) f32 or null.
// Grid: (ceil(n / MOE_ROWS_PER_BLOCK), ntok * k); block: MOE_ROWS_PER_BLOCK warps, one per
// row; lanes take the row's 32-weight units in turn (mmvq.cu's reference row).
template <int T>
__device__ __forceinline__ void moe_mmv(const u8* __restrict__ W, const float* __restrict__ bias,
                                        const float* __restrict__ x, int x_per_pair,
                                        const i32* __restrict__ ids, float* __restrict__ y, int n,
                                        int kdim, int k) {
    const int r = blockIdx.x * MOE_ROWS_PER_BLOCK + threadIdx.x / WARP_SIZE;
    const int p = blockIdx.y;
    if (r >= n) return;
    const int e = ids[p];
    const u8* row = W + ((u64)e * n + r) * row_bytes<T>(kdim);
    const float* xp = x + (u64)(x_per_pair ? p : p / k) * kdim;
    const int lane = threadIdx.x % WARP_SIZE;
    float acc = 0.0f;
    for (int u = lane; u < kdim / 32; u += WARP_SIZE) {
        float wv[32];
        dequant_unit<T>(row, u, wv);
        float s = 0.0f;
        #pragma unroll
        for (int j = 0; j < 32; ++j) s += wv[j] * xp[u * 32 + j];
        acc += s;
    }
    acc = warp_sum(acc);
    if (lane == 0) y[(u64)p * n + r] = acc + (bias ? bias[(u64)e * n + r] : 0.0f);
}

#define MOE_MMV_KERNEL(NAME, T)                                                                 \
    extern "C" __global__ void __launch_bounds__(MOE_ROWS_PER_BLOCK * WARP_SIZE)                 \
    NAME(const u8* W, const float* bias, const float* x, int x_per_pair, const i32* ids,        \
         float* y, int n, int kdim, int k) {                                                    \
        pdl_prologue();                                                                             \
        moe_mmv<T>(W, bias, x, x_per_pair, ids, y, n, kdim, k);                                 \
    }

MOE_MMV_KERNEL(moe_mmv_mxfp4_f32, T_MXFP4)
MOE_MMV_KERNEL(moe_mmv_q8_0_f32, T_Q8_0)
MOE_MMV_KERNEL(moe_mmv_q4_0_f32, T_Q4_0)
MOE_MMV_KERNEL(moe_mmv_f32_f32, T_F32)

// gate = swiglu_oai(gate, up), elementwise over n f32. Grid: ceil(n / MOE_THREADS).
extern "C" __global__ void moe_swiglu_oai_f32(float* gate, const float* __restrict__ up, int n) {
    pdl_prologue();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) gate[i] = swiglu_oai_f(gate[i], up[i]);
}

// x[t][i] += sum_j w[t][j] * y[t * k + j][i], j ascending. x: (ntok, dim); y: (ntok * k, dim);
// w: (ntok, k). Grid: (ntok); block: MOE_THREADS.
extern "C" __global__ void moe_combine_f32(float* __restrict__ x, const float* __restrict__ y,
                                           const float* __restrict__ w, int dim, int k) {
    pdl_prologue();
    const int t = blockIdx.x;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j < k; ++j) acc += w[(u64)t * k + j] * y[((u64)t * k + j) * dim + i];
        x[(u64)t * dim + i] += acc;
    }
}
