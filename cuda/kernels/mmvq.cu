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

#define MMV_ROWS_PER_BLOCK 4
#define MMV_COLS 8

template <int T>
__device__ __forceinline__ void mmv(const u8* __restrict__ W, const float* __restrict__ x,
                                    float* __restrict__ y, int n, int k, int ncols, int y_stride) {
    const int lane = threadIdx.x % WARP_SIZE;
    const int r = blockIdx.x * MMV_ROWS_PER_BLOCK + threadIdx.x / WARP_SIZE;
    const int c0 = blockIdx.y * MMV_COLS;
    if (r >= n) return;
    const int nc = min(MMV_COLS, ncols - c0);
    const u8* row = W + (u64)r * row_bytes<T>(k);
    const int units = k / 32;
    float acc[MMV_COLS];
    #pragma unroll
    for (int c = 0; c < MMV_COLS; ++c) acc[c] = 0.0f;
    for (int u = lane; u < units; u += WARP_SIZE) {
        float w[32];
        dequant_unit<T>(row, u, w);
        #pragma unroll
        for (int c = 0; c < MMV_COLS; ++c) {
            if (c < nc) {
                const float4* xv = (const float4*)(x + (u64)(c0 + c) * k + (u64)u * 32);
                float s = 0.0f;
                #pragma unroll
                for (int j = 0; j < 8; ++j) {
                    const float4 v = xv[j];
                    s += w[4 * j] * v.x + w[4 * j + 1] * v.y + w[4 * j + 2] * v.z + w[4 * j + 3] * v.w;
                }
                acc[c] += s;
            }
        }
    }
    #pragma unroll
    for (int c = 0; c < MMV_COLS; ++c) {
        const float s = warp_sum(acc[c]);
        if (lane == 0 && c < nc) y[(u64)(c0 + c) * y_stride + r] = s;
    }
}

#define MMV_KERNEL(NAME, T)                                                                     \
    extern "C" __global__ void __launch_bounds__(MMV_ROWS_PER_BLOCK * WARP_SIZE)                 \
    NAME(const u8* W, const float* x, float* y, int n, int k, int ncols, int y_stride) {         \
        mmv<T>(W, x, y, n, k, ncols, y_stride);                                                 \
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
