// Mixture of experts (GPT-OSS), on the device end to end: no readback, so a step stays one
// stream of launches (and can be captured into a graph). Per layer, with k = experts per token:
//   1. moe_route_f32: router logits (+ bias) -> each token's top k expert ids and their weights
//      (the softmax over the chosen logits).
//   2. moe_mmv_<type>_f32 for the gate and the up projections: one warp per output row of the
//      chosen expert, for every (token, choice) pair; only the chosen experts' rows are read.
//      With more pairs than experts (prefill, batches), moe_mmv_grouped_<type>_f32 instead:
//      a block per (rows, expert) takes every pair that chose its expert, MOE_COLS at a time,
//      so an expert's weights are read once per step rather than once per pair. Both compute
//      each pair's sum with the same operations in the same order (moe_unit_dot, then the warp
//      sum): a token's bits do not depend on which one ran.
//   3. moe_swiglu_oai_f32: the clamped SwiGLU of gate and up.
//   4. moe_mmv(_grouped)_<type>_f32 for the down projection (input per pair).
//   5. moe_combine_f32: x[t] += sum_j w[t][j] y[t][j] (the residual add included), j ascending.
// Experts are stacked as the GGUF stores them: expert e of a (n rows, k) projection is rows
// e * n .. e * n + n of the (n_expert * n, k) tensor; biases are (n_expert, n) f32.
// pdl: every kernel of this module begins with pdl_prologue()

#define MOE_ROWS_PER_BLOCK 4
#define MOE_THREADS 256
#define MOE_MAX_USED 32
#define MOE_COLS 8
#define MOE_GROUP_WINDOW 4096

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

// One 32-weight unit of a row against 32 inputs: the products chained by fma, j ascending.
// The per-unit sum of both expert kernels: a pair's row sum is the lane's units (u = lane,
// lane + 32, ...) added in order with __fadd_rn, then warp_sum, then the bias.
__device__ __forceinline__ float moe_unit_dot(const float* wv, const float* __restrict__ x) {
    float s = 0.0f;
    #pragma unroll
    for (int j = 0; j < 32; ++j) s = __fmaf_rn(wv[j], x[j], s);
    return s;
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
        acc = __fadd_rn(acc, moe_unit_dot(wv, xp + u * 32));
    }
    acc = warp_sum(acc);
    if (lane == 0) y[(u64)p * n + r] = __fadd_rn(acc, bias ? bias[(u64)e * n + r] : 0.0f);
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

// moe_mmv by expert: the same y for the same arguments (npairs = ntok * k), bit for bit.
// Grid: (ceil(n / MOE_ROWS_PER_BLOCK), n_expert); block: MOE_ROWS_PER_BLOCK warps, one per
// row of expert e = blockIdx.y. The block lists the pairs that chose e (a window of
// MOE_GROUP_WINDOW pairs at a time, in any order: each pair's sum is its own), then each warp
// takes them MOE_COLS at a time: a unit of its row is dequantized once and dotted with every
// pair's input (moe_unit_dot, as moe_mmv), each pair's units summed in its own accumulator.
template <int T>
__device__ __forceinline__ void moe_mmv_grouped(const u8* __restrict__ W,
                                                const float* __restrict__ bias,
                                                const float* __restrict__ x, int x_per_pair,
                                                const i32* __restrict__ ids, float* __restrict__ y,
                                                int n, int kdim, int k, int npairs) {
    __shared__ int s_n;
    __shared__ int s_list[MOE_GROUP_WINDOW];
    const int e = blockIdx.y;
    const int r = blockIdx.x * MOE_ROWS_PER_BLOCK + threadIdx.x / WARP_SIZE;
    const int lane = threadIdx.x % WARP_SIZE;
    const u8* row = W + ((u64)e * n + min(r, n - 1)) * row_bytes<T>(kdim);
    for (int base = 0; base < npairs; base += MOE_GROUP_WINDOW) {
        if (threadIdx.x == 0) s_n = 0;
        __syncthreads();
        const int end = min(npairs, base + MOE_GROUP_WINDOW);
        for (int p = base + threadIdx.x; p < end; p += blockDim.x)
            if (ids[p] == e) s_list[atomicAdd(&s_n, 1)] = p;
        __syncthreads();
        const int m = s_n;
        for (int c0 = 0; r < n && c0 < m; c0 += MOE_COLS) {
            const int nc = min(MOE_COLS, m - c0);
            const float* xp[MOE_COLS];
            float acc[MOE_COLS];
            #pragma unroll
            for (int c = 0; c < MOE_COLS; ++c) {
                const int p = s_list[c0 + min(c, nc - 1)];
                xp[c] = x + (u64)(x_per_pair ? p : p / k) * kdim;
                acc[c] = 0.0f;
            }
            for (int u = lane; u < kdim / 32; u += WARP_SIZE) {
                float wv[32];
                dequant_unit<T>(row, u, wv);
                #pragma unroll
                for (int c = 0; c < MOE_COLS; ++c)
                    if (c < nc) acc[c] = __fadd_rn(acc[c], moe_unit_dot(wv, xp[c] + u * 32));
            }
            #pragma unroll
            for (int c = 0; c < MOE_COLS; ++c) {
                if (c >= nc) break;
                const float v = warp_sum(acc[c]);
                if (lane == 0) {
                    const int p = s_list[c0 + c];
                    y[(u64)p * n + r] = __fadd_rn(v, bias ? bias[(u64)e * n + r] : 0.0f);
                }
            }
        }
        __syncthreads();  // the list is read before the next window rewrites it
    }
}

#define MOE_MMV_GROUPED_KERNEL(NAME, T)                                                         \
    extern "C" __global__ void __launch_bounds__(MOE_ROWS_PER_BLOCK * WARP_SIZE)                 \
    NAME(const u8* W, const float* bias, const float* x, int x_per_pair, const i32* ids,        \
         float* y, int n, int kdim, int k, int npairs) {                                        \
        pdl_prologue();                                                                         \
        moe_mmv_grouped<T>(W, bias, x, x_per_pair, ids, y, n, kdim, k, npairs);                 \
    }

MOE_MMV_GROUPED_KERNEL(moe_mmv_grouped_mxfp4_f32, T_MXFP4)
MOE_MMV_GROUPED_KERNEL(moe_mmv_grouped_q8_0_f32, T_Q8_0)
MOE_MMV_GROUPED_KERNEL(moe_mmv_grouped_q4_0_f32, T_Q4_0)
MOE_MMV_GROUPED_KERNEL(moe_mmv_grouped_f32_f32, T_F32)

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
