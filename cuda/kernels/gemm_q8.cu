// Matrix-matrix product of PACKED Q4_0 / Q4_1 / Q8_0 weights and Q8 activations on the tensor
// cores (int8 mma.sync m16n8k32, sm_80+), for prefill chunks and many-sequence decode steps.
//
// y[c * y_stride + r] (=, or += with `accumulate`) dot(r, c) for r < n, c < ncols, where dot is
// THE canonical dot product of packed.cuh / cuda/src/packed.rs, bit for bit: each mma over one
// 32-wide k block gives the exact integer block dot of a 16 x 8 tile; each thread scales its
// outputs' block dots with the packed.cuh term arithmetic and folds them, in increasing block
// order, into a segment accumulator that is added into the total every SEG_BLOCKS blocks.
//
// Buffers: w packed (n, k) (quants at 0, scales at packed_scales_offset);
//   xq (ncols, k) i8, xd (ncols, k / 32) f32, xsum (ncols, k / 32) i32;
//   y (ncols, y_stride) f32, y_stride >= n. k a multiple of 32; w and xq 16-byte aligned.
//
// Tiles: a block of WM x WN warps computes BM weight rows x BN activation columns; each warp
// WTM = BM / WM rows (MT = WTM / 16 m-tiles) x WTN = BN / WN columns (NT = WTN / 8 n-tiles).
// k is staged through shared memory KB blocks at a time (cp.async, double buffered): the quants
// of BM rows and BN columns as they are in global memory, the scales through registers.
// Rows >= n and columns >= ncols are read clamped to the last row / column and not written.
//
// Integer to float: the mma accumulates onto C = GEMM_MAGIC (the bits of 1.5 * 2^23), so the
// result's bits are the f32 1.5 * 2^23 + dot exactly (|dot| < 2^22 for every type), and
// subtracting 1.5 * 2^23 gives (float)dot exactly: the same value term_* converts, without the
// slow I2F. Q4_0 takes its "- 8 * xsum" in C too (C = GEMM_MAGIC - 8 * xsum), which leaves the
// exact integer (dot - 8 * xsum) of term_q4_0.

// Launch shapes (cuda/src/ops/gemm.rs mirrors them).
#define GEMM_L_BM 128
#define GEMM_L_BN 64
#define GEMM_L_WARPS 8
#define GEMM_S_BM 32
#define GEMM_S_BN 64
#define GEMM_S_WARPS 4

#define GEMM_MAGIC 0x4B400000
#define GEMM_MAGIC_F 12582912.0f

__device__ __forceinline__ u32 smem_addr(const void* p) {
    u32 a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(smem)), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// d = a * b + {c0, c1, c0, c1}: A 16 x 32 s8 (row), B 32 x 8 s8 (col), s32.
__device__ __forceinline__ void mma_s8(int d[4], const u32 a[4], u32 b0, u32 b1, int c0, int c1) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%11,%12,%13};"
        : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(c0), "r"(c1), "r"(c0),
          "r"(c1));
}

// TY: 0 = Q4_0, 1 = Q4_1, 2 = Q8_0.
template <int TY, int BM, int BN, int WM, int WN>
__device__ __forceinline__ void gemm_q8_body(const u8* __restrict__ w, int n, int k,
                                             const i8* __restrict__ xq, const float* __restrict__ xd,
                                             const i32* __restrict__ xsum, int ncols,
                                             float* __restrict__ y, int y_stride, int accumulate) {
    constexpr int QB = TY == 2 ? 32 : 16;       // quant bytes per block
    constexpr int KB = TY == 2 ? 2 : 4;         // blocks per stage (64 bytes of quants a row)
    constexpr int NTH = WM * WN * 32;
    constexpr int A_ROW = KB * QB + 16;         // smem bytes per weight row (16 of padding:
    constexpr int B_COL = KB * 32 + 16;         // conflict-free fragment loads)
    constexpr int WTM = BM / WM, WTN = BN / WN;
    constexpr int MT = WTM / 16, NT = WTN / 8;
    constexpr int A_CH = KB * QB / 16, B_CH = KB * 32 / 16;  // 16-byte chunks per row / column
    constexpr int SCL = (BM * KB + NTH - 1) / NTH;          // weight scales per thread
    constexpr int XL = (BN * KB + NTH - 1) / NTH;           // activation scales per thread
    static_assert(MT * 16 == WTM && NT * 8 == WTN, "warp tile");
    static_assert(SEG_BLOCKS % KB == 0, "a stage never straddles a segment");

    __shared__ __align__(16) u8 sA[2][BM * A_ROW];
    __shared__ __align__(16) u8 sB[2][BN * B_COL];
    __shared__ u32 sW[2][KB][BM];     // f16 d (low half), Q4_1: f16 m (high half)
    __shared__ __align__(8) float sXd[2][KB][BN];
    __shared__ __align__(8) int sXs[2][KB][BN];

    const int tid = threadIdx.x;
    const int lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int wm = warp / WN, wn = warp % WN;
    const int col0 = blockIdx.x * BN;
    const int row0 = blockIdx.y * BM;
    const int nb = k / 32;
    const int nstages = (nb + KB - 1) / KB;
    const u8* scales = w + packed_scales_offset(QB, n, k);

    // Stage loads: quants by cp.async into buffer `buf`, scales into registers.
    u32 rs[SCL];
    float rxd[XL];
    int rxs[XL];
    auto issue = [&](int buf, int b0) {
        #pragma unroll
        for (int u = 0; u < (BM * A_CH + NTH - 1) / NTH; u++) {
            const int i = tid + u * NTH;
            if (i < BM * A_CH) {
                const int r = i / A_CH, ch = i % A_CH;
                const int gr = min(row0 + r, n - 1);
                const int b = min(b0 + ch * 16 / QB, nb - 1);
                cp_async16(&sA[buf][r * A_ROW + ch * 16],
                           w + ((u64)gr * nb + b) * QB + (ch * 16) % QB);
            }
        }
        #pragma unroll
        for (int u = 0; u < (BN * B_CH + NTH - 1) / NTH; u++) {
            const int i = tid + u * NTH;
            if (i < BN * B_CH) {
                const int c = i / B_CH, ch = i % B_CH;
                const int gc = min(col0 + c, ncols - 1);
                const int b = min(b0 + ch / 2, nb - 1);
                cp_async16(&sB[buf][c * B_COL + ch * 16], xq + (u64)gc * k + b * 32 + (ch % 2) * 16);
            }
        }
        cp_async_commit();
        #pragma unroll
        for (int u = 0; u < SCL; u++) {
            const int i = tid + u * NTH;
            if (i < BM * KB) {
                const int gr = min(row0 + i / KB, n - 1);
                const u64 idx = (u64)gr * nb + min(b0 + i % KB, nb - 1);
                rs[u] = TY == 1 ? ((const u32*)scales)[idx] : (u32)((const u16*)scales)[idx];
            }
        }
        #pragma unroll
        for (int u = 0; u < XL; u++) {
            const int i = tid + u * NTH;
            if (i < BN * KB) {
                const int gc = min(col0 + i / KB, ncols - 1);
                const u64 idx = (u64)gc * nb + min(b0 + i % KB, nb - 1);
                rxd[u] = xd[idx];
                rxs[u] = xsum[idx];
            }
        }
    };
    auto store_scales = [&](int buf) {
        #pragma unroll
        for (int u = 0; u < SCL; u++) {
            const int i = tid + u * NTH;
            if (i < BM * KB) sW[buf][i % KB][i / KB] = rs[u];
        }
        #pragma unroll
        for (int u = 0; u < XL; u++) {
            const int i = tid + u * NTH;
            if (i < BN * KB) {
                sXd[buf][i % KB][i / KB] = rxd[u];
                sXs[buf][i % KB][i / KB] = rxs[u];
            }
        }
    };

    float seg[MT][NT][4], total[MT][NT][4];
    #pragma unroll
    for (int i = 0; i < MT; i++)
        #pragma unroll
        for (int j = 0; j < NT; j++)
            #pragma unroll
            for (int e = 0; e < 4; e++) {
                seg[i][j][e] = 0.0f;
                total[i][j][e] = 0.0f;
            }

    issue(0, 0);
    store_scales(0);
    for (int s = 0; s < nstages; s++) {
        const int buf = s & 1;
        if (s + 1 < nstages) {
            issue(buf ^ 1, (s + 1) * KB);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        #pragma unroll
        for (int kb = 0; kb < KB; kb++) {
            const int b = s * KB + kb;
            if (b >= nb) break;
            // A fragments (rows g, g + 8 of each m-tile; k 4t..4t+3 and 16+4t..16+4t+3).
            u32 a[MT][4];
            float dw[MT][2], mw[MT][2];
            #pragma unroll
            for (int i = 0; i < MT; i++) {
                const int r = wm * WTM + i * 16 + g;
                const u8* p = &sA[buf][r * A_ROW + kb * QB + 4 * t];
                if (QB == 16) {
                    const u32 v0 = *(const u32*)p, v1 = *(const u32*)(p + 8 * A_ROW);
                    a[i][0] = v0 & 0x0F0F0F0Fu;
                    a[i][1] = v1 & 0x0F0F0F0Fu;
                    a[i][2] = (v0 >> 4) & 0x0F0F0F0Fu;
                    a[i][3] = (v1 >> 4) & 0x0F0F0F0Fu;
                } else {
                    a[i][0] = *(const u32*)p;
                    a[i][1] = *(const u32*)(p + 8 * A_ROW);
                    a[i][2] = *(const u32*)(p + 16);
                    a[i][3] = *(const u32*)(p + 8 * A_ROW + 16);
                }
                #pragma unroll
                for (int h = 0; h < 2; h++) {
                    const u32 sc = sW[buf][kb][r + 8 * h];
                    dw[i][h] = f16_to_f32((u16)(sc & 0xFFFF));
                    mw[i][h] = TY == 1 ? f16_to_f32((u16)(sc >> 16)) : 0.0f;
                }
            }
            #pragma unroll
            for (int j = 0; j < NT; j++) {
                const int c = wn * WTN + j * 8;
                const u8* p = &sB[buf][(c + g) * B_COL + kb * 32 + 4 * t];
                const u32 b0 = *(const u32*)p, b1 = *(const u32*)(p + 16);
                const float2 dx = *(const float2*)&sXd[buf][kb][c + 2 * t];
                const int2 xs = *(const int2*)&sXs[buf][kb][c + 2 * t];
                const int c0 = TY == 0 ? GEMM_MAGIC - 8 * xs.x : GEMM_MAGIC;
                const int c1 = TY == 0 ? GEMM_MAGIC - 8 * xs.y : GEMM_MAGIC;
                const float dxv[2] = {dx.x, dx.y};
                float dxs[2] = {0.0f, 0.0f};
                if (TY == 1) {
                    dxs[0] = __fmul_rn(dx.x, (float)xs.x);
                    dxs[1] = __fmul_rn(dx.y, (float)xs.y);
                }
                #pragma unroll
                for (int i = 0; i < MT; i++) {
                    int d[4];
                    mma_s8(d, a[i], b0, b1, c0, c1);
                    #pragma unroll
                    for (int e = 0; e < 4; e++) {
                        // (float) of the exact block dot (Q4_0: dot - 8 * xsum).
                        const float f = __fsub_rn(__int_as_float(d[e]), GEMM_MAGIC_F);
                        float term = __fmul_rn(__fmul_rn(dw[i][e >> 1], dxv[e & 1]), f);
                        if (TY == 1) term = __fadd_rn(term, __fmul_rn(mw[i][e >> 1], dxs[e & 1]));
                        seg[i][j][e] = __fadd_rn(seg[i][j][e], term);
                    }
                }
            }
            if ((b + 1) % SEG_BLOCKS == 0 || b + 1 == nb) {
                #pragma unroll
                for (int i = 0; i < MT; i++)
                    #pragma unroll
                    for (int j = 0; j < NT; j++)
                        #pragma unroll
                        for (int e = 0; e < 4; e++) {
                            total[i][j][e] = __fadd_rn(total[i][j][e], seg[i][j][e]);
                            seg[i][j][e] = 0.0f;
                        }
            }
        }
        if (s + 1 < nstages) store_scales(buf ^ 1);
        __syncthreads();
    }

    #pragma unroll
    for (int i = 0; i < MT; i++)
        #pragma unroll
        for (int j = 0; j < NT; j++)
            #pragma unroll
            for (int e = 0; e < 4; e++) {
                const int r = row0 + wm * WTM + i * 16 + g + 8 * (e >> 1);
                const int c = col0 + wn * WTN + j * 8 + 2 * t + (e & 1);
                if (r < n && c < ncols) {
                    float* o = y + (u64)c * y_stride + r;
                    *o = accumulate ? __fadd_rn(*o, total[i][j][e]) : total[i][j][e];
                }
            }
}

// gemm_q8_<type>_<tile>(w, n, k, xq, xd, xsum, ncols, y, y_stride, accumulate): grid
// (ceil(ncols / BN), ceil(n / BM)), WARPS * 32 threads. Tile l: 128 rows x 64 columns, 8 warps
// (4 x 2, 32 x 32 each); tile s: 32 rows x 64 columns, 4 warps (1 x 4, 32 x 16 each).
#define GEMM_KERNEL(name, TY, BM, BN, WM, WN, MINB)                                              \
    extern "C" __global__ void __launch_bounds__(WM * WN * 32, MINB)                             \
        name(const u8* __restrict__ w, int n, int k, const i8* __restrict__ xq,                  \
             const float* __restrict__ xd, const i32* __restrict__ xsum, int ncols,              \
             float* __restrict__ y, int y_stride, int accumulate) {                              \
        gemm_q8_body<TY, BM, BN, WM, WN>(w, n, k, xq, xd, xsum, ncols, y, y_stride, accumulate); \
    }

GEMM_KERNEL(gemm_q8_q4_0_l, 0, 128, 64, 4, 2, 2)
GEMM_KERNEL(gemm_q8_q4_1_l, 1, 128, 64, 4, 2, 2)
GEMM_KERNEL(gemm_q8_q8_0_l, 2, 128, 64, 4, 2, 2)
GEMM_KERNEL(gemm_q8_q4_0_s, 0, 32, 64, 1, 4, 4)
GEMM_KERNEL(gemm_q8_q4_1_s, 1, 32, 64, 1, 4, 4)
GEMM_KERNEL(gemm_q8_q8_0_s, 2, 32, 64, 1, 4, 4)
