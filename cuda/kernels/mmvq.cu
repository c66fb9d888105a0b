// Quantized matrix times a few activation columns: y[c][r] = sum_i W[r][i] * x[c][i].
//
// W: (n rows, k) in its GGUF block format, rows contiguous, `row_bytes(k)` bytes each.
// x: (ncols, k) f32, row-major.  y: (ncols, n) f32, row-major, with column stride `y_stride`
// (>= n) so a caller can write into a wider buffer.
// Grid: (ceil(n / MMV_ROWS_PER_BLOCK), ceil(ncols / MMV_COLS)); block: MMV_ROWS_PER_BLOCK warps.
// Each warp owns one weight row; its lanes take the row's 32-weight units in turn, dequantize
// one unit into registers and multiply it against up to MMV_COLS activation columns, so a
// weight is read once for MMV_COLS columns. Sums are reduced in a fixed order (deterministic).
// k must be a multiple of 32 and of the type's block size.
// pdl: every kernel of this module begins with pdl_prologue()

#define MMV_ROWS_PER_BLOCK 4
#define MMV_COLS 8
// 1: Q4_0 and Q8_0 use `mmv_row_fast`; 0: every type takes the reference `mmv_row`.
#ifndef MMV_FAST
#define MMV_FAST 1
#endif

// Per-column RMS-norm scales of the activations, for kernels that normalize their input on
// the fly: s_inv[c] = 1 / sqrt(mean(x[c0 + c]^2) + eps) for c < nc. Every thread of the block
// must call it (it synchronizes).
__device__ __forceinline__ void column_inv_rms(const float* __restrict__ x, int k, int c0, int nc,
                                               float eps, float* s_inv, float* scratch) {
    for (int c = 0; c < nc; ++c) {
        const float* xc = x + (u64)(c0 + c) * k;
        float ss = 0.0f;
        for (int i = threadIdx.x; i < k; i += blockDim.x) ss += xc[i] * xc[i];
        ss = block_sum(ss, scratch);
        if (threadIdx.x == 0) s_inv[c] = 1.0f / sqrtf(ss / (float)k + eps);
    }
    __syncthreads();
}

// Dot products of weight row `row` (k weights) with activation columns c0..c0+nc of x, summed
// over the warp (every lane gets the sums). With NORM, the activations are RMS-normalized on the
// fly: x[c][i] * inv[c] * nw[i], the same expression as rms_norm_f32.
template <int T, bool NORM>
__device__ __forceinline__ void mmv_row(const u8* __restrict__ row, const float* __restrict__ x,
                                        int k, int c0, int nc, const float* __restrict__ nw,
                                        const float* inv, float* acc) {
    const int lane = threadIdx.x % WARP_SIZE;
    const int units = k / 32;
    #pragma unroll
    for (int c = 0; c < MMV_COLS; ++c) acc[c] = 0.0f;
    for (int u = lane; u < units; u += WARP_SIZE) {
        float w[32];
        dequant_unit<T>(row, u, w);
        #pragma unroll
        for (int c = 0; c < MMV_COLS; ++c) {
            if (c < nc) {
                const float4* xv = (const float4*)(x + (u64)(c0 + c) * k + (u64)u * 32);
                const float4* gv = (const float4*)(nw + (u64)u * 32);
                float s = 0.0f;
                #pragma unroll
                for (int j = 0; j < 8; ++j) {
                    float4 v = xv[j];
                    if (NORM) {
                        const float4 g = gv[j];
                        const float ic = inv[c];
                        v.x = v.x * ic * g.x;
                        v.y = v.y * ic * g.y;
                        v.z = v.z * ic * g.z;
                        v.w = v.w * ic * g.w;
                    }
                    s += w[4 * j] * v.x + w[4 * j + 1] * v.y + w[4 * j + 2] * v.z + w[4 * j + 3] * v.w;
                }
                acc[c] += s;
            }
        }
    }
    #pragma unroll
    for (int c = 0; c < MMV_COLS; ++c) acc[c] = warp_sum(acc[c]);
}

// Fast path of `mmv_row` for Q4_0 and Q8_0 (the reference above stays the path of every other
// type and the definition these are tested against). In the reference each lane owns a whole
// 32-weight unit, so one activation load instruction touches 32 cache lines (one per lane) and
// the weights are read byte by byte: with several activation columns the L1 traffic of the
// activations, not DRAM, bounds the kernel. Here 8 lanes share a unit, each taking 4
// consecutive weights: a float4 activation load covers 4 lines per warp, the weights come in
// 2-byte loads (blocks are 18 / 34 bytes, rows and tensors even-aligned), and a lane keeps 4
// dequantized weights instead of 32. Measured (H200): prefill 4x faster (Llama-3-8B Q4_0
// pp512 84 -> 368 tok/s, Qwen2.5-0.5B 1462 -> 5937); batch-1 decode barely moves (8B 61.5 ->
// 75.9 tok/s), so one column is bound by something else (cuda/BENCH.md).
// The dequantized values are the reference's (d * q, the same float expression); only the
// order of the additions differs. `ORCD_MMV_FAST=0` at run time selects the reference.
template <int T>
__device__ __forceinline__ void dequant4(const u8* __restrict__ row, int u, int sub, float* w) {
    if constexpr (T == T_Q4_0) {
        const u8* b = row + (u64)u * 18;
        const float d = f16_to_f32(*(const u16*)b);
        const u16* q = (const u16*)(b + 2 + 4 * (sub & 3));
        const u32 v = (u32)q[0] | ((u32)q[1] << 16);
        const int shift = sub < 4 ? 0 : 4; // weights 0..15: low nibbles, 16..31: high
        #pragma unroll
        for (int j = 0; j < 4; ++j) w[j] = d * (float)((int)((v >> (8 * j + shift)) & 0xF) - 8);
    } else {
        const u8* b = row + (u64)u * 34;
        const float d = f16_to_f32(*(const u16*)b);
        const u16* q = (const u16*)(b + 2 + 4 * sub);
        const u32 v = (u32)q[0] | ((u32)q[1] << 16);
        #pragma unroll
        for (int j = 0; j < 4; ++j) w[j] = d * (float)(i8)(u8)(v >> (8 * j));
    }
}

// Weight j of a Q4_0 unit sits in byte j % 16 (low nibble for j < 16), so lane `sub` of a unit
// takes weights 4 * sub .. 4 * sub + 3 in both types.
template <int T, bool NORM>
__device__ __forceinline__ void mmv_row_fast(const u8* __restrict__ row, const float* __restrict__ x,
                                             int k, int c0, int nc, const float* __restrict__ nw,
                                             const float* inv, float* acc) {
    const int lane = threadIdx.x % WARP_SIZE;
    const int sub = lane % 8;
    const int units = k / 32;
    #pragma unroll
    for (int c = 0; c < MMV_COLS; ++c) acc[c] = 0.0f;
    #pragma unroll 4
    for (int u = lane / 8; u < units; u += WARP_SIZE / 8) {
        float w[4];
        dequant4<T>(row, u, sub, w);
        const u64 off = (u64)u * 32 + 4 * sub;
        float4 g = make_float4(1.0f, 1.0f, 1.0f, 1.0f);
        if (NORM) g = *(const float4*)(nw + off);
        #pragma unroll
        for (int c = 0; c < MMV_COLS; ++c) {
            if (c < nc) {
                float4 v = *(const float4*)(x + (u64)(c0 + c) * k + off);
                if (NORM) {
                    const float ic = inv[c];
                    v.x = v.x * ic * g.x;
                    v.y = v.y * ic * g.y;
                    v.z = v.z * ic * g.z;
                    v.w = v.w * ic * g.w;
                }
                acc[c] += w[0] * v.x + w[1] * v.y + w[2] * v.z + w[3] * v.w;
            }
        }
    }
    #pragma unroll
    for (int c = 0; c < MMV_COLS; ++c) acc[c] = warp_sum(acc[c]);
}

// The row kernel a type uses: the fast path where there is one, else the reference.
template <int T, bool NORM>
__device__ __forceinline__ void mmv_row_any(const u8* __restrict__ row, const float* __restrict__ x,
                                            int k, int c0, int nc, const float* __restrict__ nw,
                                            const float* inv, float* acc) {
    if constexpr (MMV_FAST && (T == T_Q4_0 || T == T_Q8_0))
        mmv_row_fast<T, NORM>(row, x, k, c0, nc, nw, inv, acc);
    else
        mmv_row<T, NORM>(row, x, k, c0, nc, nw, inv, acc);
}

// y[c][r] = W[r] . x[c] (accumulate = 0) or y[c][r] += W[r] . x[c] (accumulate = 1: the
// residual add fused into the projection; each element has one writer).
template <int T>
__device__ __forceinline__ void mmv(const u8* __restrict__ W, const float* __restrict__ x,
                                    float* __restrict__ y, int n, int k, int ncols, int y_stride,
                                    int accumulate) {
    const int r = blockIdx.x * MMV_ROWS_PER_BLOCK + threadIdx.x / WARP_SIZE;
    const int c0 = blockIdx.y * MMV_COLS;
    if (r >= n) return;
    const int nc = min(MMV_COLS, ncols - c0);
    float acc[MMV_COLS];
    mmv_row_any<T, false>(W + (u64)r * row_bytes<T>(k), x, k, c0, nc, nullptr, nullptr, acc);
    if (threadIdx.x % WARP_SIZE == 0) {
        #pragma unroll
        for (int c = 0; c < MMV_COLS; ++c) {
            if (c < nc) {
                float* out = y + (u64)(c0 + c) * y_stride + r;
                *out = accumulate ? *out + acc[c] : acc[c];
            }
        }
    }
}

// Up to three matrices of one type and width k against the same activations in one launch
// (q, k and v): grid rows 0..n0 are W0's (into y0: (ncols, n0)), then n1 of W1 (into y1),
// then n2 of W2 (into y2). A part with n = 0 is absent. With nw non-null, x is RMS-normalized
// on the fly with weights nw (k) and epsilon eps (the layer's attention norm).
template <int T, bool NORM>
__device__ __forceinline__ void mmv3(const u8* W0, float* y0, int n0, const u8* W1, float* y1,
                                     int n1, const u8* W2, float* y2, int n2,
                                     const float* __restrict__ x, int k, int ncols,
                                     const float* __restrict__ nw, float eps) {
    __shared__ float s_inv[MMV_COLS];
    __shared__ float scratch[32];
    const int c0 = blockIdx.y * MMV_COLS;
    const int nc = min(MMV_COLS, ncols - c0);
    if (NORM) column_inv_rms(x, k, c0, nc, eps, s_inv, scratch);
    int r = blockIdx.x * MMV_ROWS_PER_BLOCK + threadIdx.x / WARP_SIZE;
    const u8* W;
    float* y;
    int n;
    if (r < n0) {
        W = W0; y = y0; n = n0;
    } else if (r < n0 + n1) {
        r -= n0; W = W1; y = y1; n = n1;
    } else if (r < n0 + n1 + n2) {
        r -= n0 + n1; W = W2; y = y2; n = n2;
    } else {
        return;
    }
    float acc[MMV_COLS];
    mmv_row_any<T, NORM>(W + (u64)r * row_bytes<T>(k), x, k, c0, nc, nw, s_inv, acc);
    if (threadIdx.x % WARP_SIZE == 0) {
        #pragma unroll
        for (int c = 0; c < MMV_COLS; ++c)
            if (c < nc) y[(u64)(c0 + c) * n + r] = acc[c];
    }
}

// The gated feed-forward's first half in one launch: out[c][r] = act(Wg[r] . x[c]) * (Wu[r] . x[c])
// with act = SiLU (act 0) or GELU-tanh (act 1). Wg, Wu: (n, k) of one type; out: (ncols, n).
// With nw non-null, x is RMS-normalized on the fly (the layer's FFN norm).
template <int T, bool NORM>
__device__ __forceinline__ void mmv_glu(const u8* __restrict__ Wg, const u8* __restrict__ Wu,
                                        const float* __restrict__ x, float* __restrict__ out,
                                        int n, int k, int ncols, int act,
                                        const float* __restrict__ nw, float eps) {
    __shared__ float s_inv[MMV_COLS];
    __shared__ float scratch[32];
    const int c0 = blockIdx.y * MMV_COLS;
    const int nc = min(MMV_COLS, ncols - c0);
    if (NORM) column_inv_rms(x, k, c0, nc, eps, s_inv, scratch);
    const int r = blockIdx.x * MMV_ROWS_PER_BLOCK + threadIdx.x / WARP_SIZE;
    if (r >= n) return;
    float g[MMV_COLS], u[MMV_COLS];
    mmv_row_any<T, NORM>(Wg + (u64)r * row_bytes<T>(k), x, k, c0, nc, nw, s_inv, g);
    mmv_row_any<T, NORM>(Wu + (u64)r * row_bytes<T>(k), x, k, c0, nc, nw, s_inv, u);
    if (threadIdx.x % WARP_SIZE == 0) {
        #pragma unroll
        for (int c = 0; c < MMV_COLS; ++c)
            if (c < nc) out[(u64)(c0 + c) * n + r] = (act ? gelu_tanh_f(g[c]) : silu_f(g[c])) * u[c];
    }
}

#define MMV_KERNEL(NAME, T)                                                                     \
    extern "C" __global__ void __launch_bounds__(MMV_ROWS_PER_BLOCK * WARP_SIZE)                 \
    NAME(const u8* W, const float* x, float* y, int n, int k, int ncols, int y_stride,           \
         int accumulate) {                                                                      \
        pdl_prologue();                                                                             \
        mmv<T>(W, x, y, n, k, ncols, y_stride, accumulate);                                     \
    }

MMV_KERNEL(mmv_f32_f32, T_F32)
MMV_KERNEL(mmv_f16_f32, T_F16)
MMV_KERNEL(mmv_bf16_f32, T_BF16)
MMV_KERNEL(mmv_q4_0_f32, T_Q4_0)
MMV_KERNEL(mmv_q4_1_f32, T_Q4_1)
MMV_KERNEL(mmv_q5_0_f32, T_Q5_0)
MMV_KERNEL(mmv_q5_1_f32, T_Q5_1)
MMV_KERNEL(mmv_q8_0_f32, T_Q8_0)
MMV_KERNEL(mmv_q4_k_f32, T_Q4_K)
MMV_KERNEL(mmv_q5_k_f32, T_Q5_K)
MMV_KERNEL(mmv_q6_k_f32, T_Q6_K)
MMV_KERNEL(mmv_mxfp4_f32, T_MXFP4)

#define MMV3_KERNEL(NAME, T)                                                                    \
    extern "C" __global__ void __launch_bounds__(MMV_ROWS_PER_BLOCK * WARP_SIZE)                 \
    NAME(const u8* W0, float* y0, int n0, const u8* W1, float* y1, int n1, const u8* W2,         \
         float* y2, int n2, const float* x, int k, int ncols, const float* nw, float eps) {      \
        pdl_prologue();                                                                             \
        if (nw) mmv3<T, true>(W0, y0, n0, W1, y1, n1, W2, y2, n2, x, k, ncols, nw, eps);         \
        else mmv3<T, false>(W0, y0, n0, W1, y1, n1, W2, y2, n2, x, k, ncols, nw, eps);           \
    }

MMV3_KERNEL(mmv3_f32_f32, T_F32)
MMV3_KERNEL(mmv3_f16_f32, T_F16)
MMV3_KERNEL(mmv3_bf16_f32, T_BF16)
MMV3_KERNEL(mmv3_q4_0_f32, T_Q4_0)
MMV3_KERNEL(mmv3_q4_1_f32, T_Q4_1)
MMV3_KERNEL(mmv3_q5_0_f32, T_Q5_0)
MMV3_KERNEL(mmv3_q5_1_f32, T_Q5_1)
MMV3_KERNEL(mmv3_q8_0_f32, T_Q8_0)
MMV3_KERNEL(mmv3_q4_k_f32, T_Q4_K)
MMV3_KERNEL(mmv3_q5_k_f32, T_Q5_K)
MMV3_KERNEL(mmv3_q6_k_f32, T_Q6_K)
MMV3_KERNEL(mmv3_mxfp4_f32, T_MXFP4)

#define GLU_KERNEL(NAME, T)                                                                     \
    extern "C" __global__ void __launch_bounds__(MMV_ROWS_PER_BLOCK * WARP_SIZE)                 \
    NAME(const u8* Wg, const u8* Wu, const float* x, float* out, int n, int k, int ncols,        \
         int act, const float* nw, float eps) {                                                 \
        pdl_prologue();                                                                             \
        if (nw) mmv_glu<T, true>(Wg, Wu, x, out, n, k, ncols, act, nw, eps);                     \
        else mmv_glu<T, false>(Wg, Wu, x, out, n, k, ncols, act, nw, eps);                       \
    }

GLU_KERNEL(mmv_glu_f32_f32, T_F32)
GLU_KERNEL(mmv_glu_f16_f32, T_F16)
GLU_KERNEL(mmv_glu_bf16_f32, T_BF16)
GLU_KERNEL(mmv_glu_q4_0_f32, T_Q4_0)
GLU_KERNEL(mmv_glu_q4_1_f32, T_Q4_1)
GLU_KERNEL(mmv_glu_q5_0_f32, T_Q5_0)
GLU_KERNEL(mmv_glu_q5_1_f32, T_Q5_1)
GLU_KERNEL(mmv_glu_q8_0_f32, T_Q8_0)
GLU_KERNEL(mmv_glu_q4_k_f32, T_Q4_K)
GLU_KERNEL(mmv_glu_q5_k_f32, T_Q5_K)
GLU_KERNEL(mmv_glu_q6_k_f32, T_Q6_K)
GLU_KERNEL(mmv_glu_mxfp4_f32, T_MXFP4)
