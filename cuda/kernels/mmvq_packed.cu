// Kernels on packed weights (Q4_0, Q4_1, Q8_0; layout in packed.cuh and cuda/src/packed.rs):
// the load-time repack from GGUF blocks, the embedding lookup, and matrix x Q8 activations
// computing the canonical dot product (term_* and the segment fold of packed.cuh) bit for bit.
//
// Matrix kernels: one warp per weight row (pk_row below); the block terms are folded in the
// canonical order through a little shared memory, so one output's arithmetic does not depend on
// the tiling, the block size or ncols. Blocks of up to PK_WARPS warps; grid.y covers the
// activation columns in tiles of PK_COLS.
// Activations: q (ncols, k) i8, d (ncols, k / 32) f32, sum (ncols, k / 32) i32 (quant_act.cu).
// pdl: every kernel of this module begins with pdl_prologue()

#define PK_WARPS 8
#define PK_COLS 8
#define PK_UNROLL 4

// Per packed type: quant bytes per block, scale bytes per block, GGUF bytes per block.
template <int T> struct PK;
template <> struct PK<T_Q4_0> { static constexpr int QB = 16, SB = 2, BB = 18; };
template <> struct PK<T_Q4_1> { static constexpr int QB = 16, SB = 4, BB = 20; };
template <> struct PK<T_Q8_0> { static constexpr int QB = 32, SB = 2, BB = 34; };

// ---------------------------------------------------------------------------------------------
// Repack: GGUF blocks src (rows x k, rows contiguous, 2-byte aligned) into the packed tensor dst
// (packed_bytes of packed.rs, 256-byte aligned). Grid: ceil(rows * k / 32 / 256); block: 256;
// one thread per block.
template <int T>
__device__ __forceinline__ void repack(const u8* __restrict__ src, u8* __restrict__ dst, int rows,
                                       int k) {
    constexpr int QB = PK<T>::QB, SB = PK<T>::SB, BB = PK<T>::BB;
    const u64 n = (u64)rows * (u64)(k / 32);
    const u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const u16* b = (const u16*)(src + i * BB);
    u16* sc = (u16*)(dst + packed_scales_offset(QB, rows, k) + i * SB);
    #pragma unroll
    for (int j = 0; j < SB / 2; ++j) sc[j] = b[j];
    uint4* qd = (uint4*)(dst + i * QB);
    #pragma unroll
    for (int v = 0; v < QB / 16; ++v) {
        const u16* s = b + SB / 2 + v * 8;
        uint4 o;
        o.x = (u32)s[0] | ((u32)s[1] << 16);
        o.y = (u32)s[2] | ((u32)s[3] << 16);
        o.z = (u32)s[4] | ((u32)s[5] << 16);
        o.w = (u32)s[6] | ((u32)s[7] << 16);
        qd[v] = o;
    }
}

#define REPACK_KERNEL(NAME, T)                                                                  \
    extern "C" __global__ void NAME(const u8* src, u8* dst, int rows, int k) {                   \
        pdl_prologue();                                                                             \
        repack<T>(src, dst, rows, k);                                                           \
    }

REPACK_KERNEL(repack_q4_0, T_Q4_0)
REPACK_KERNEL(repack_q4_1, T_Q4_1)
REPACK_KERNEL(repack_q8_0, T_Q8_0)

// ---------------------------------------------------------------------------------------------
// Embedding lookup from a packed table: out[t][:] = dequant(W[tokens[t]][:]) * scale, with the
// dequantization expressions of quant.cuh's dequant_unit (the GGUF embed kernel's values).
// W: packed (vocab, dim);  tokens: (ntok) u32 < vocab;  out: (ntok, dim) f32.
// Grid: (ntok); block: EMBED_THREADS.
template <int T>
__device__ __forceinline__ void embed_packed(const u8* __restrict__ W, const u32* __restrict__ tokens,
                                             float* __restrict__ out, int vocab, int dim,
                                             float scale) {
    constexpr int QB = PK<T>::QB, SB = PK<T>::SB;
    const int t = blockIdx.x;
    const int nb = dim / 32;
    const u64 r = tokens[t];
    const u8* sc0 = W + packed_scales_offset(QB, vocab, dim);
    float* o = out + (u64)t * dim;
    for (int u = threadIdx.x; u < nb; u += blockDim.x) {
        const u64 i = r * nb + u;
        const u8* qs = W + i * QB;
        const u8* sc = sc0 + i * SB;
        const float d = f16_to_f32(ld_u16(sc));
        float w[32];
        if constexpr (T == T_Q4_0) {
            #pragma unroll
            for (int j = 0; j < 16; ++j) {
                w[j] = d * (float)((int)(qs[j] & 0xF) - 8);
                w[j + 16] = d * (float)((int)(qs[j] >> 4) - 8);
            }
        } else if constexpr (T == T_Q4_1) {
            const float m = f16_to_f32(ld_u16(sc + 2));
            #pragma unroll
            for (int j = 0; j < 16; ++j) {
                w[j] = d * (float)(qs[j] & 0xF) + m;
                w[j + 16] = d * (float)(qs[j] >> 4) + m;
            }
        } else {
            #pragma unroll
            for (int j = 0; j < 32; ++j) w[j] = d * (float)(i8)qs[j];
        }
        #pragma unroll
        for (int j = 0; j < 32; ++j) o[u * 32 + j] = w[j] * scale;
    }
}

#define PKEMBED_KERNEL(NAME, T)                                                                 \
    extern "C" __global__ void NAME(const u8* W, const u32* tokens, float* out, int vocab,       \
                                    int dim, float scale) {                                     \
        pdl_prologue();                                                                             \
        embed_packed<T>(W, tokens, out, vocab, dim, scale);                                     \
    }

PKEMBED_KERNEL(embed_packed_q4_0, T_Q4_0)
PKEMBED_KERNEL(embed_packed_q4_1, T_Q4_1)
PKEMBED_KERNEL(embed_packed_q8_0, T_Q8_0)

// ---------------------------------------------------------------------------------------------
// Matrix x Q8 activations.

// The canonical term (packed.cuh) of block b (of nb) of one packed weight row against Q8
// activation column `col` (k wide): `w` the block's quants (QB / 16 16-byte words), `sc` its
// scales (d, or d | m << 16 for Q4_1).
template <int T>
__device__ __forceinline__ float pk_block_term(const uint4* w, u32 sc, const i8* __restrict__ xq,
                                               const float* __restrict__ xd,
                                               const i32* __restrict__ xs, int col, int k, int nb,
                                               int b) {
    const i8* xb = xq + (u64)col * k + (u64)b * 32;
    const int4 x0 = __ldg((const int4*)xb);
    const int4 x1 = __ldg((const int4*)(xb + 16));
    const float dx = __ldg(xd + (u64)col * nb + b);
    const float dw = f16_to_f32((u16)(sc & 0xFFFF));
    int dot = 0;
    if constexpr (T == T_Q8_0) {
        const uint4 a = w[0], e = w[1];
        dot = __dp4a((int)a.x, x0.x, dot);
        dot = __dp4a((int)a.y, x0.y, dot);
        dot = __dp4a((int)a.z, x0.z, dot);
        dot = __dp4a((int)a.w, x0.w, dot);
        dot = __dp4a((int)e.x, x1.x, dot);
        dot = __dp4a((int)e.y, x1.y, dot);
        dot = __dp4a((int)e.z, x1.z, dot);
        dot = __dp4a((int)e.w, x1.w, dot);
        return term_q8_0(dw, dx, dot);
    } else {
        // Byte j: weight j (low nibble) and weight j + 16 (high nibble).
        const uint4 a = w[0];
        const u32 M = 0x0F0F0F0Fu;
        dot = __dp4a((int)(a.x & M), x0.x, dot);
        dot = __dp4a((int)((a.x >> 4) & M), x1.x, dot);
        dot = __dp4a((int)(a.y & M), x0.y, dot);
        dot = __dp4a((int)((a.y >> 4) & M), x1.y, dot);
        dot = __dp4a((int)(a.z & M), x0.z, dot);
        dot = __dp4a((int)((a.z >> 4) & M), x1.z, dot);
        dot = __dp4a((int)(a.w & M), x0.w, dot);
        dot = __dp4a((int)((a.w >> 4) & M), x1.w, dot);
        const int xsum = __ldg(xs + (u64)col * nb + b);
        if constexpr (T == T_Q4_0) {
            return term_q4_0(dw, dx, dot, xsum);
        } else {
            const float mw = f16_to_f32((u16)(sc >> 16));
            return term_q4_1(dw, mw, dx, dot, xsum);
        }
    }
}

// Row r of the packed W (rows x k) against activation columns c0..c0+nc, computed by one warp:
// lane l takes block 32 j + l of each 32-block chunk j (its 16-byte quant loads coalesce across
// the warp; PK_UNROLL chunks are fetched before use), computes the block's term per column and
// parks it in `sm` (this warp's [PK_COLS][32] floats); then lane 2c folds the first 16 terms of
// column c (segment 2 j) and lane 2c + 1 the other 16 (segment 2 j + 1), in block order, and
// lane 2c adds the two segment sums to its running total in segment order. Returns, in lane 2c
// (c < nc), the canonical dot of column c.
template <int T>
__device__ __forceinline__ float pk_row(const u8* __restrict__ W, int rows, int k, int r,
                                        const i8* __restrict__ xq, const float* __restrict__ xd,
                                        const i32* __restrict__ xs, int c0, int nc,
                                        float (*sm)[32]) {
    constexpr int QB = PK<T>::QB, SB = PK<T>::SB, NV = QB / 16;
    const int lane = threadIdx.x % WARP_SIZE;
    const int nb = k / 32;
    const int nch = (nb + 31) / 32;
    const u8* wq = W + (u64)r * nb * QB;
    const u8* ws = W + packed_scales_offset(QB, rows, k) + (u64)r * nb * SB;
    const int fc = lane >> 1, half = lane & 1; // the (column, segment) this lane folds
    float total = 0.0f;
    for (int j0 = 0; j0 < nch; j0 += PK_UNROLL) {
        uint4 w[PK_UNROLL * NV];
        u32 sc[PK_UNROLL];
        #pragma unroll
        for (int u = 0; u < PK_UNROLL; ++u) {
            const int b = (j0 + u) * 32 + lane;
            if (b < nb) {
                #pragma unroll
                for (int v = 0; v < NV; ++v) w[u * NV + v] = __ldg((const uint4*)(wq + (u64)b * QB) + v);
                if constexpr (SB == 4) sc[u] = __ldg((const u32*)(ws + (u64)b * 4));
                else sc[u] = (u32)__ldg((const unsigned short*)(ws + (u64)b * 2));
            }
        }
        #pragma unroll
        for (int u = 0; u < PK_UNROLL; ++u) {
            const int jb = (j0 + u) * 32;
            if (jb >= nb) break; // warp-uniform
            const int b = jb + lane;
            #pragma unroll
            for (int c = 0; c < PK_COLS; ++c) {
                if (c < nc) {
                    const float t = b < nb ? pk_block_term<T>(&w[u * NV], sc[u], xq, xd, xs,
                                                              c0 + c, k, nb, b)
                                           : 0.0f;
                    sm[c][lane] = t;
                }
            }
            __syncwarp();
            // Segment 2 j + half of column fc: blocks jb + 16 half .. (at most 16, in order).
            const int cnt = min(SEG_BLOCKS, nb - (jb + half * SEG_BLOCKS));
            float seg = 0.0f;
            if (fc < nc) {
                #pragma unroll
                for (int i = 0; i < SEG_BLOCKS; ++i)
                    if (i < cnt) seg = __fadd_rn(seg, sm[fc][half * SEG_BLOCKS + i]);
            }
            const float seg_b = __shfl_down_sync(FULL_MASK, seg, 1);
            if (fc < nc && half == 0) {
                total = __fadd_rn(total, seg);
                if (nb > jb + SEG_BLOCKS) total = __fadd_rn(total, seg_b);
            }
            __syncwarp();
        }
    }
    return total;
}

// y[c][r] = W[r] . x[c] (accumulate = 0) or y[c][r] += W[r] . x[c] (accumulate = 1).
// W: packed (n, k);  y: (ncols, y_stride) f32.
// Grid: (ceil(n / warps), ceil(ncols / PK_COLS)); block: warps * 32 threads (<= PK_WARPS warps),
// one weight row per warp.
template <int T>
__device__ __forceinline__ void mmvq_packed(const u8* __restrict__ W, const i8* __restrict__ xq,
                                            const float* __restrict__ xd,
                                            const i32* __restrict__ xs, float* __restrict__ y,
                                            int n, int k, int ncols, int y_stride, int accumulate) {
    __shared__ float sm[PK_WARPS][PK_COLS][32];
    const int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    const int r = blockIdx.x * (blockDim.x / WARP_SIZE) + warp;
    const int c0 = blockIdx.y * PK_COLS;
    const int nc = min(PK_COLS, ncols - c0);
    if (r >= n) return; // warp-uniform; no block-wide synchronization follows
    const float tot = pk_row<T>(W, n, k, r, xq, xd, xs, c0, nc, sm[warp]);
    const int c = lane >> 1;
    if ((lane & 1) == 0 && c < nc) {
        float* out = y + (u64)(c0 + c) * y_stride + r;
        *out = accumulate ? __fadd_rn(*out, tot) : tot;
    }
}

// Up to three packed matrices of one type and width k against the same activations, one launch
// (q, k, v): rows 0..n0 are W0's (into y0: (ncols, n0)), then n1 of W1 (y1), then n2 of W2
// (y2). A part with n = 0 is absent. Grid: (ceil((n0 + n1 + n2) / warps), ceil(ncols / PK_COLS)).
template <int T>
__device__ __forceinline__ void mmvq3_packed(const u8* W0, float* y0, int n0, const u8* W1,
                                             float* y1, int n1, const u8* W2, float* y2, int n2,
                                             const i8* __restrict__ xq,
                                             const float* __restrict__ xd,
                                             const i32* __restrict__ xs, int k, int ncols) {
    __shared__ float sm[PK_WARPS][PK_COLS][32];
    const int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    int r = blockIdx.x * (blockDim.x / WARP_SIZE) + warp;
    const int c0 = blockIdx.y * PK_COLS;
    const int nc = min(PK_COLS, ncols - c0);
    const u8* W = W0;
    float* y = y0;
    int n = n0;
    if (r < n0) {
    } else if (r < n0 + n1) {
        r -= n0; W = W1; y = y1; n = n1;
    } else if (r < n0 + n1 + n2) {
        r -= n0 + n1; W = W2; y = y2; n = n2;
    } else {
        return;
    }
    const float tot = pk_row<T>(W, n, k, r, xq, xd, xs, c0, nc, sm[warp]);
    const int c = lane >> 1;
    if ((lane & 1) == 0 && c < nc) y[(u64)(c0 + c) * n + r] = tot;
}

// The gated pair: out[c][r] = act(Wg[r] . x[c]) * (Wu[r] . x[c]), act SiLU (0) or GELU-tanh (1),
// as silu_f / gelu_tanh_f of common.cuh (activation.cu's kernels). Wg, Wu: packed (n, k);
// out: (ncols, n). Warp 2 i of a block takes gate row r = blockIdx.x * warps / 2 + i, warp
// 2 i + 1 the same row of up. Grid: (ceil(n / (warps / 2)), ceil(ncols / PK_COLS)).
template <int T>
__device__ __forceinline__ void mmvq_glu_packed(const u8* __restrict__ Wg, const u8* __restrict__ Wu,
                                                const i8* __restrict__ xq,
                                                const float* __restrict__ xd,
                                                const i32* __restrict__ xs, float* __restrict__ out,
                                                int n, int k, int ncols, int act) {
    __shared__ float sm[PK_WARPS][PK_COLS][32];
    __shared__ float res[PK_WARPS][PK_COLS];
    const int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    const int r = blockIdx.x * (blockDim.x / WARP_SIZE / 2) + warp / 2;
    const bool up = warp & 1;
    const int c0 = blockIdx.y * PK_COLS;
    const int nc = min(PK_COLS, ncols - c0);
    const int c = lane >> 1;
    if (r < n) {
        const float tot = pk_row<T>(up ? Wu : Wg, n, k, r, xq, xd, xs, c0, nc, sm[warp]);
        if ((lane & 1) == 0 && c < nc) res[warp][c] = tot;
    }
    __syncthreads();
    if (!up && r < n && lane < nc) {
        const float g = res[warp][lane];
        out[(u64)(c0 + lane) * n + r] = (act ? gelu_tanh_f(g) : silu_f(g)) * res[warp + 1][lane];
    }
}

#define PK_KERNEL(NAME, T)                                                                      \
    extern "C" __global__ void __launch_bounds__(PK_WARPS * WARP_SIZE)                                     \
    NAME(const u8* W, const i8* xq, const float* xd, const i32* xs, float* y, int n, int k,      \
         int ncols, int y_stride, int accumulate) {                                             \
        pdl_prologue();                                                                             \
        mmvq_packed<T>(W, xq, xd, xs, y, n, k, ncols, y_stride, accumulate);                    \
    }

PK_KERNEL(mmvq_packed_q4_0, T_Q4_0)
PK_KERNEL(mmvq_packed_q4_1, T_Q4_1)
PK_KERNEL(mmvq_packed_q8_0, T_Q8_0)

#define PK3_KERNEL(NAME, T)                                                                     \
    extern "C" __global__ void __launch_bounds__(PK_WARPS * WARP_SIZE)                                     \
    NAME(const u8* W0, float* y0, int n0, const u8* W1, float* y1, int n1, const u8* W2,         \
         float* y2, int n2, const i8* xq, const float* xd, const i32* xs, int k, int ncols) {    \
        pdl_prologue();                                                                             \
        mmvq3_packed<T>(W0, y0, n0, W1, y1, n1, W2, y2, n2, xq, xd, xs, k, ncols);               \
    }

PK3_KERNEL(mmvq3_packed_q4_0, T_Q4_0)
PK3_KERNEL(mmvq3_packed_q4_1, T_Q4_1)
PK3_KERNEL(mmvq3_packed_q8_0, T_Q8_0)

#define PKGLU_KERNEL(NAME, T)                                                                   \
    extern "C" __global__ void __launch_bounds__(PK_WARPS * WARP_SIZE)                                     \
    NAME(const u8* Wg, const u8* Wu, const i8* xq, const float* xd, const i32* xs, float* out,   \
         int n, int k, int ncols, int act) {                                                    \
        pdl_prologue();                                                                             \
        mmvq_glu_packed<T>(Wg, Wu, xq, xd, xs, out, n, k, ncols, act);                          \
    }

PKGLU_KERNEL(mmvq_glu_packed_q4_0, T_Q4_0)
PKGLU_KERNEL(mmvq_glu_packed_q4_1, T_Q4_1)
PKGLU_KERNEL(mmvq_glu_packed_q8_0, T_Q8_0)

// ---------------------------------------------------------------------------------------------
// Fast variants (mmvqf*): the same canonical dot, the same launch grid (one warp per weight row,
// blocks of up to PK_WARPS warps, grid.y tiles of PK_COLS columns), but the tile's column count
// is a compile-time NC (1, 2, 4 or 8: the smallest >= the launch's columns, capped at PK_COLS),
// each lane fetches U blocks before use (U * 32 blocks = 2 U segments a warp per iteration), and
// the fold is parallel: every lane writes its block terms to shared memory (one padding float
// per 16 blocks: conflict-free), then one lane per (column, segment) folds the segment's 16
// terms in block order, then lane c adds column c's segment sums in segment order. The old
// kernels above stay as the references. Kernel names: mmvqf{,3,_glu}_packed_<type>_c<NC>, with
// U and the resident-block hint (MINB, registers <= 65536 / (MINB * 256)) chosen per type and
// NC below (U = 4 for Q4_0 / Q4_1, 2 for Q8_0, MINB 4: on an H200 the best overall of the
// one-column (U, MINB) pairs timed, among (1..16, 2..6); cuda/tests/packed.rs prints them); the
// one-column kernels also have alternatives (U, MINB) for timing (suffix u<U>m<MINB>).

template <int T, int NC, int U> struct PKF {
    static constexpr int SPAN = U * 32;                // blocks per iteration
    static constexpr int PITCH = U * 34;               // padded floats per column
    static constexpr int NSEG = 2 * U;                 // segments per iteration
    static constexpr int FLOATS = NC * (PITCH + NSEG); // shared floats per warp
};

// Row r of the packed W (rows x k) against activation columns c0..c0+nc (nc <= NC), one warp;
// `sm`: this warp's PKF<T, NC, U>::FLOATS floats. Returns, in lane c (c < nc), the canonical dot
// of column c0 + c.
template <int T, int NC, int U>
__device__ __forceinline__ float pkf_row(const u8* __restrict__ W, int rows, int k, int r,
                                         const i8* __restrict__ xq, const float* __restrict__ xd,
                                         const i32* __restrict__ xs, int c0, int nc,
                                         float* __restrict__ sm) {
    constexpr int QB = PK<T>::QB, SB = PK<T>::SB, NV = QB / 16;
    constexpr int SPAN = PKF<T, NC, U>::SPAN, PITCH = PKF<T, NC, U>::PITCH,
                  NSEG = PKF<T, NC, U>::NSEG;
    const int lane = threadIdx.x % WARP_SIZE;
    const int nb = k / 32;
    const u8* wq = W + (u64)r * nb * QB;
    const u8* ws = W + packed_scales_offset(QB, rows, k) + (u64)r * nb * SB;
    float* segs = sm + NC * PITCH;
    float total = 0.0f;
    for (int base = 0; base < nb; base += SPAN) {
        uint4 w[U * NV];
        u32 sc[U];
        #pragma unroll
        for (int u = 0; u < U; ++u) {
            const int b = base + u * 32 + lane;
            if (b < nb) {
                #pragma unroll
                for (int v = 0; v < NV; ++v) w[u * NV + v] = __ldg((const uint4*)(wq + (u64)b * QB) + v);
                if constexpr (SB == 4) sc[u] = __ldg((const u32*)(ws + (u64)b * 4));
                else sc[u] = (u32)__ldg((const unsigned short*)(ws + (u64)b * 2));
            }
        }
        #pragma unroll
        for (int u = 0; u < U; ++u) {
            if (base + u * 32 >= nb) break; // warp-uniform
            const int b = base + u * 32 + lane;
            const int slot = u * 34 + lane + (lane >> 4);
            #pragma unroll
            for (int c = 0; c < NC; ++c) {
                if (c < nc) {
                    const float t = b < nb ? pk_block_term<T>(&w[u * NV], sc[u], xq, xd, xs,
                                                              c0 + c, k, nb, b)
                                           : 0.0f;
                    sm[c * PITCH + slot] = t;
                }
            }
        }
        __syncwarp();
        // Segment s of this iteration (blocks base + 16 s ..) of column c: one lane each.
        const int nblk = min(SPAN, nb - base);
        const int nseg = (nblk + SEG_BLOCKS - 1) / SEG_BLOCKS;
        #pragma unroll
        for (int t0 = 0; t0 < NC * NSEG; t0 += 32) {
            const int task = t0 + lane;
            const int c = task / NSEG, s = task % NSEG;
            if (task < NC * NSEG && c < nc && s < nseg) {
                const int cnt = min(SEG_BLOCKS, nblk - s * SEG_BLOCKS);
                const float* p = sm + c * PITCH + s * (SEG_BLOCKS + 1);
                float seg = 0.0f;
                #pragma unroll
                for (int i = 0; i < SEG_BLOCKS; ++i)
                    if (i < cnt) seg = __fadd_rn(seg, p[i]);
                segs[c * NSEG + s] = seg;
            }
        }
        __syncwarp();
        if (lane < nc) {
            #pragma unroll
            for (int s = 0; s < NSEG; ++s)
                if (s < nseg) total = __fadd_rn(total, segs[lane * NSEG + s]);
        }
        __syncwarp();
    }
    return total;
}

// mmvq_packed's contract (y[c][r] = or += W[r] . x[c]), tiles of NC columns.
// W: packed (n, k);  y: (ncols, y_stride) f32.
// Grid: (ceil(n / warps), ceil(ncols / PK_COLS)); block: warps * 32 threads (<= PK_WARPS).
template <int T, int NC, int U>
__device__ __forceinline__ void mmvqf_packed(const u8* __restrict__ W, const i8* __restrict__ xq,
                                             const float* __restrict__ xd,
                                             const i32* __restrict__ xs, float* __restrict__ y,
                                             int n, int k, int ncols, int y_stride, int accumulate) {
    __shared__ float sm[PK_WARPS][PKF<T, NC, U>::FLOATS];
    const int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    const int r = blockIdx.x * (blockDim.x / WARP_SIZE) + warp;
    const int c0 = blockIdx.y * PK_COLS;
    const int nc = min(NC, ncols - c0);
    if (r >= n) return; // warp-uniform; no block-wide synchronization follows
    const float tot = pkf_row<T, NC, U>(W, n, k, r, xq, xd, xs, c0, nc, sm[warp]);
    if (lane < nc) {
        float* out = y + (u64)(c0 + lane) * y_stride + r;
        *out = accumulate ? __fadd_rn(*out, tot) : tot;
    }
}

// mmvq3_packed's contract plus optional biases: y_i[c][r] = W_i[r] . x[c] (+ b_i[r], one f32
// addition, as add_bias_f32; b_i null: none). b_i: (n_i) f32.
// Grid: (ceil((n0 + n1 + n2) / warps), ceil(ncols / PK_COLS)).
template <int T, int NC, int U>
__device__ __forceinline__ void mmvqf3_packed(const u8* W0, float* y0, const float* b0, int n0,
                                              const u8* W1, float* y1, const float* b1, int n1,
                                              const u8* W2, float* y2, const float* b2, int n2,
                                              const i8* __restrict__ xq,
                                              const float* __restrict__ xd,
                                              const i32* __restrict__ xs, int k, int ncols) {
    __shared__ float sm[PK_WARPS][PKF<T, NC, U>::FLOATS];
    const int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    int r = blockIdx.x * (blockDim.x / WARP_SIZE) + warp;
    const int c0 = blockIdx.y * PK_COLS;
    const int nc = min(NC, ncols - c0);
    const u8* W = W0;
    float* y = y0;
    const float* bias = b0;
    int n = n0;
    if (r < n0) {
    } else if (r < n0 + n1) {
        r -= n0; W = W1; y = y1; bias = b1; n = n1;
    } else if (r < n0 + n1 + n2) {
        r -= n0 + n1; W = W2; y = y2; bias = b2; n = n2;
    } else {
        return;
    }
    float tot = pkf_row<T, NC, U>(W, n, k, r, xq, xd, xs, c0, nc, sm[warp]);
    if (lane < nc) {
        if (bias) tot = __fadd_rn(tot, bias[r]);
        y[(u64)(c0 + lane) * n + r] = tot;
    }
}

// mmvq_glu_packed's contract: out[c][r] = act(Wg[r] . x[c]) * (Wu[r] . x[c]). Warp 2 i: gate
// row blockIdx.x * warps / 2 + i, warp 2 i + 1: the same row of up.
// Grid: (ceil(n / (warps / 2)), ceil(ncols / PK_COLS)).
template <int T, int NC, int U>
__device__ __forceinline__ void mmvqf_glu_packed(const u8* __restrict__ Wg, const u8* __restrict__ Wu,
                                                 const i8* __restrict__ xq,
                                                 const float* __restrict__ xd,
                                                 const i32* __restrict__ xs, float* __restrict__ out,
                                                 int n, int k, int ncols, int act) {
    __shared__ float sm[PK_WARPS][PKF<T, NC, U>::FLOATS];
    __shared__ float res[PK_WARPS][NC];
    const int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    const int r = blockIdx.x * (blockDim.x / WARP_SIZE / 2) + warp / 2;
    const bool up = warp & 1;
    const int c0 = blockIdx.y * PK_COLS;
    const int nc = min(NC, ncols - c0);
    if (r < n) {
        const float tot = pkf_row<T, NC, U>(up ? Wu : Wg, n, k, r, xq, xd, xs, c0, nc, sm[warp]);
        if (lane < nc) res[warp][lane] = tot;
    }
    __syncthreads();
    if (!up && r < n && lane < nc) {
        const float g = res[warp][lane];
        out[(u64)(c0 + lane) * n + r] = (act ? gelu_tanh_f(g) : silu_f(g)) * res[warp + 1][lane];
    }
}

#define PKF_KERNEL(NAME, T, NC, U, MINB)                                                                 \
    extern "C" __global__ void __launch_bounds__(PK_WARPS * WARP_SIZE, MINB)                    \
    NAME(const u8* W, const i8* xq, const float* xd, const i32* xs, float* y, int n, int k,      \
         int ncols, int y_stride, int accumulate) {                                             \
        pdl_prologue();                                                                         \
        mmvqf_packed<T, NC, U>(W, xq, xd, xs, y, n, k, ncols, y_stride, accumulate);               \
    }

#define PKF3_KERNEL(NAME, T, NC, U, MINB)                                                                \
    extern "C" __global__ void __launch_bounds__(PK_WARPS * WARP_SIZE, MINB)                    \
    NAME(const u8* W0, float* y0, const float* b0, int n0, const u8* W1, float* y1,             \
         const float* b1, int n1, const u8* W2, float* y2, const float* b2, int n2,             \
         const i8* xq, const float* xd, const i32* xs, int k, int ncols) {                      \
        pdl_prologue();                                                                         \
        mmvqf3_packed<T, NC, U>(W0, y0, b0, n0, W1, y1, b1, n1, W2, y2, b2, n2, xq, xd, xs, k,     \
                             ncols);                                                            \
    }

#define PKFGLU_KERNEL(NAME, T, NC, U, MINB)                                                              \
    extern "C" __global__ void __launch_bounds__(PK_WARPS * WARP_SIZE, MINB)                    \
    NAME(const u8* Wg, const u8* Wu, const i8* xq, const float* xd, const i32* xs, float* out,   \
         int n, int k, int ncols, int act) {                                                    \
        pdl_prologue();                                                                         \
        mmvqf_glu_packed<T, NC, U>(Wg, Wu, xq, xd, xs, out, n, k, ncols, act);                     \
    }

PKF_KERNEL(mmvqf_packed_q4_0_c1, T_Q4_0, 1, 4, 4)
PKF_KERNEL(mmvqf_packed_q4_0_c2, T_Q4_0, 2, 4, 4)
PKF_KERNEL(mmvqf_packed_q4_0_c4, T_Q4_0, 4, 4, 4)
PKF_KERNEL(mmvqf_packed_q4_0_c8, T_Q4_0, 8, 4, 4)
PKF_KERNEL(mmvqf_packed_q4_1_c1, T_Q4_1, 1, 4, 4)
PKF_KERNEL(mmvqf_packed_q4_1_c2, T_Q4_1, 2, 4, 4)
PKF_KERNEL(mmvqf_packed_q4_1_c4, T_Q4_1, 4, 4, 4)
PKF_KERNEL(mmvqf_packed_q4_1_c8, T_Q4_1, 8, 4, 4)
PKF_KERNEL(mmvqf_packed_q8_0_c1, T_Q8_0, 1, 2, 4)
PKF_KERNEL(mmvqf_packed_q8_0_c2, T_Q8_0, 2, 2, 4)
PKF_KERNEL(mmvqf_packed_q8_0_c4, T_Q8_0, 4, 2, 4)
PKF_KERNEL(mmvqf_packed_q8_0_c8, T_Q8_0, 8, 2, 4)

PKF3_KERNEL(mmvqf3_packed_q4_0_c1, T_Q4_0, 1, 4, 4)
PKF3_KERNEL(mmvqf3_packed_q4_0_c2, T_Q4_0, 2, 4, 4)
PKF3_KERNEL(mmvqf3_packed_q4_0_c4, T_Q4_0, 4, 4, 4)
PKF3_KERNEL(mmvqf3_packed_q4_0_c8, T_Q4_0, 8, 4, 4)
PKF3_KERNEL(mmvqf3_packed_q4_1_c1, T_Q4_1, 1, 4, 4)
PKF3_KERNEL(mmvqf3_packed_q4_1_c2, T_Q4_1, 2, 4, 4)
PKF3_KERNEL(mmvqf3_packed_q4_1_c4, T_Q4_1, 4, 4, 4)
PKF3_KERNEL(mmvqf3_packed_q4_1_c8, T_Q4_1, 8, 4, 4)
PKF3_KERNEL(mmvqf3_packed_q8_0_c1, T_Q8_0, 1, 2, 4)
PKF3_KERNEL(mmvqf3_packed_q8_0_c2, T_Q8_0, 2, 2, 4)
PKF3_KERNEL(mmvqf3_packed_q8_0_c4, T_Q8_0, 4, 2, 4)
PKF3_KERNEL(mmvqf3_packed_q8_0_c8, T_Q8_0, 8, 2, 4)

PKFGLU_KERNEL(mmvqf_glu_packed_q4_0_c1, T_Q4_0, 1, 4, 4)
PKFGLU_KERNEL(mmvqf_glu_packed_q4_0_c2, T_Q4_0, 2, 4, 4)
PKFGLU_KERNEL(mmvqf_glu_packed_q4_0_c4, T_Q4_0, 4, 4, 4)
PKFGLU_KERNEL(mmvqf_glu_packed_q4_0_c8, T_Q4_0, 8, 4, 4)
PKFGLU_KERNEL(mmvqf_glu_packed_q4_1_c1, T_Q4_1, 1, 4, 4)
PKFGLU_KERNEL(mmvqf_glu_packed_q4_1_c2, T_Q4_1, 2, 4, 4)
PKFGLU_KERNEL(mmvqf_glu_packed_q4_1_c4, T_Q4_1, 4, 4, 4)
PKFGLU_KERNEL(mmvqf_glu_packed_q4_1_c8, T_Q4_1, 8, 4, 4)
PKFGLU_KERNEL(mmvqf_glu_packed_q8_0_c1, T_Q8_0, 1, 2, 4)
PKFGLU_KERNEL(mmvqf_glu_packed_q8_0_c2, T_Q8_0, 2, 2, 4)
PKFGLU_KERNEL(mmvqf_glu_packed_q8_0_c4, T_Q8_0, 4, 2, 4)
PKFGLU_KERNEL(mmvqf_glu_packed_q8_0_c8, T_Q8_0, 8, 2, 4)

// Alternatives (U, MINB) of the one-column kernels for timing (same results).
PKF_KERNEL(mmvqf_packed_q4_0_c1u8m3, T_Q4_0, 1, 8, 3)
PKF_KERNEL(mmvqf_packed_q4_0_c1u2m6, T_Q4_0, 1, 2, 6)
PKF_KERNEL(mmvqf_packed_q4_0_c1u4m5, T_Q4_0, 1, 4, 5)
PKF_KERNEL(mmvqf_packed_q8_0_c1u4m4, T_Q8_0, 1, 4, 4)
PKF_KERNEL(mmvqf_packed_q8_0_c1u2m5, T_Q8_0, 1, 2, 5)
PKF_KERNEL(mmvqf_packed_q8_0_c1u1m6, T_Q8_0, 1, 1, 6)
PKF3_KERNEL(mmvqf3_packed_q4_0_c1u8m3, T_Q4_0, 1, 8, 3)
PKF3_KERNEL(mmvqf3_packed_q4_0_c1u2m6, T_Q4_0, 1, 2, 6)
PKF3_KERNEL(mmvqf3_packed_q4_0_c1u4m5, T_Q4_0, 1, 4, 5)
PKF3_KERNEL(mmvqf3_packed_q8_0_c1u4m4, T_Q8_0, 1, 4, 4)
PKF3_KERNEL(mmvqf3_packed_q8_0_c1u2m5, T_Q8_0, 1, 2, 5)
PKF3_KERNEL(mmvqf3_packed_q8_0_c1u1m6, T_Q8_0, 1, 1, 6)
PKFGLU_KERNEL(mmvqf_glu_packed_q4_0_c1u8m3, T_Q4_0, 1, 8, 3)
PKFGLU_KERNEL(mmvqf_glu_packed_q4_0_c1u2m6, T_Q4_0, 1, 2, 6)
PKFGLU_KERNEL(mmvqf_glu_packed_q4_0_c1u4m5, T_Q4_0, 1, 4, 5)
PKFGLU_KERNEL(mmvqf_glu_packed_q8_0_c1u4m4, T_Q8_0, 1, 4, 4)
PKFGLU_KERNEL(mmvqf_glu_packed_q8_0_c1u2m5, T_Q8_0, 1, 2, 5)
PKFGLU_KERNEL(mmvqf_glu_packed_q8_0_c1u1m6, T_Q8_0, 1, 1, 6)
