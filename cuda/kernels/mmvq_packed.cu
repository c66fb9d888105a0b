// Kernels on packed weights (Q4_0, Q4_1, Q8_0; layout in packed.cuh and cuda/src/packed.rs):
// the load-time repack from GGUF blocks, the embedding lookup, and matrix x Q8 activations
// computing the canonical dot product (term_* and the segment fold of packed.cuh) bit for bit.
//
// Matrix kernels: one thread per (weight row, segment of SEG_BLOCKS blocks). A thread fetches
// its segment's quants (16-byte loads, all issued before use), dots them against the Q8
// activations of up to PK_COLS columns with __dp4a, and folds the block terms of each column in
// increasing block order. The segment sums of a row go through shared memory; then the row's
// threads share its columns and each adds the segments of one column in order. With nseg =
// ceil(k / 32 / SEG_BLOCKS) segments per row, a block of blockDim.x threads (64, 128 or
// PK_THREADS, a multiple of nseg's row groups: rows per block = blockDim.x / nseg; the launcher
// picks it) covers blockDim.x / nseg rows; grid.y covers the columns in tiles of PK_COLS. The
// result of one output does not depend on the tiling, the block size or ncols.
// Activations: q (ncols, k) i8, d (ncols, k / 32) f32, sum (ncols, k / 32) i32 (quant_act.cu).

#define PK_THREADS 256
#define PK_COLS 8

// Per packed type: quant bytes per block, scale bytes per block, GGUF bytes per block, blocks
// per register round of a thread (Q8_0's 32-byte blocks are fetched 8 at a time).
template <int T> struct PK;
template <> struct PK<T_Q4_0> { static constexpr int QB = 16, SB = 2, BB = 18, RB = 16; };
template <> struct PK<T_Q4_1> { static constexpr int QB = 16, SB = 4, BB = 20, RB = 16; };
template <> struct PK<T_Q8_0> { static constexpr int QB = 32, SB = 2, BB = 34, RB = 8; };

// ---------------------------------------------------------------------------------------------
// Repack: GGUF blocks src (rows x k, rows contiguous, 2-byte aligned) into the packed tensor dst
// (packed_bytes of packed.rs, 256-byte aligned). Grid: ceil(rows * k / 32 / PK_THREADS);
// block: PK_THREADS; one thread per block.
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
        embed_packed<T>(W, tokens, out, vocab, dim, scale);                                     \
    }

PKEMBED_KERNEL(embed_packed_q4_0, T_Q4_0)
PKEMBED_KERNEL(embed_packed_q4_1, T_Q4_1)
PKEMBED_KERNEL(embed_packed_q8_0, T_Q8_0)

// ---------------------------------------------------------------------------------------------
// Matrix x Q8 activations.

// Segment s of row r of the packed W (rows x k) against activation columns c0..c0+nc: seg[c] =
// the canonical fold of the segment's block terms (0 + t_first) + ... + t_last.
template <int T>
__device__ __forceinline__ void pk_segment(const u8* __restrict__ W, int rows, int k, int r, int s,
                                           const i8* __restrict__ xq, const float* __restrict__ xd,
                                           const i32* __restrict__ xs, int c0, int nc,
                                           float* seg) {
    constexpr int QB = PK<T>::QB, SB = PK<T>::SB, RB = PK<T>::RB, NV = QB / 16;
    const int nb = k / 32;
    const int b0 = s * SEG_BLOCKS;
    const int nblk = min(SEG_BLOCKS, nb - b0);
    const u64 blk0 = (u64)r * nb + b0;
    const u8* wq = W + blk0 * QB;
    const u8* ws = W + packed_scales_offset(QB, rows, k) + blk0 * SB;
    #pragma unroll
    for (int c = 0; c < PK_COLS; ++c) seg[c] = 0.0f;
    #pragma unroll
    for (int h = 0; h < SEG_BLOCKS; h += RB) {
        // This round's quants and scales, every load issued before any use.
        uint4 w[RB * NV];
        u32 sc[RB];
        #pragma unroll
        for (int i = 0; i < RB; ++i) {
            if (h + i < nblk) {
                #pragma unroll
                for (int v = 0; v < NV; ++v)
                    w[i * NV + v] = __ldg((const uint4*)(wq + (u64)(h + i) * QB) + v);
                if constexpr (SB == 4) sc[i] = __ldg((const u32*)(ws + (h + i) * 4));
                else sc[i] = (u32)__ldg((const unsigned short*)(ws + (h + i) * 2));
            }
        }
        #pragma unroll
        for (int c = 0; c < PK_COLS; ++c) {
            if (c < nc) {
                const u64 col = (u64)(c0 + c);
                const i8* xc = xq + col * k + (u64)b0 * 32;
                const float* dc = xd + col * nb + b0;
                const i32* sc_x = xs + col * nb + b0;
                #pragma unroll
                for (int i = 0; i < RB; ++i) {
                    if (h + i < nblk) {
                        const int4 x0 = __ldg((const int4*)(xc + (h + i) * 32));
                        const int4 x1 = __ldg((const int4*)(xc + (h + i) * 32 + 16));
                        const float dx = __ldg(dc + h + i);
                        const float dw = f16_to_f32((u16)(sc[i] & 0xFFFF));
                        int dot = 0;
                        float t;
                        if constexpr (T == T_Q8_0) {
                            const uint4 a = w[2 * i], b = w[2 * i + 1];
                            dot = __dp4a((int)a.x, x0.x, dot);
                            dot = __dp4a((int)a.y, x0.y, dot);
                            dot = __dp4a((int)a.z, x0.z, dot);
                            dot = __dp4a((int)a.w, x0.w, dot);
                            dot = __dp4a((int)b.x, x1.x, dot);
                            dot = __dp4a((int)b.y, x1.y, dot);
                            dot = __dp4a((int)b.z, x1.z, dot);
                            dot = __dp4a((int)b.w, x1.w, dot);
                            t = term_q8_0(dw, dx, dot);
                        } else {
                            // Byte j: weight j (low nibble) and weight j + 16 (high nibble).
                            const uint4 a = w[i];
                            const u32 M = 0x0F0F0F0Fu;
                            dot = __dp4a((int)(a.x & M), x0.x, dot);
                            dot = __dp4a((int)((a.x >> 4) & M), x1.x, dot);
                            dot = __dp4a((int)(a.y & M), x0.y, dot);
                            dot = __dp4a((int)((a.y >> 4) & M), x1.y, dot);
                            dot = __dp4a((int)(a.z & M), x0.z, dot);
                            dot = __dp4a((int)((a.z >> 4) & M), x1.z, dot);
                            dot = __dp4a((int)(a.w & M), x0.w, dot);
                            dot = __dp4a((int)((a.w >> 4) & M), x1.w, dot);
                            const int xsum = __ldg(sc_x + h + i);
                            if constexpr (T == T_Q4_0) {
                                t = term_q4_0(dw, dx, dot, xsum);
                            } else {
                                const float mw = f16_to_f32((u16)(sc[i] >> 16));
                                t = term_q4_1(dw, mw, dx, dot, xsum);
                            }
                        }
                        seg[c] = __fadd_rn(seg[c], t);
                    }
                }
            }
        }
    }
}

// (0 + p[0]) + p[1] + ... + p[nseg - 1]: a row's segment sums in order.
__device__ __forceinline__ float pk_fold(const float* p, int nseg) {
    float t = 0.0f;
    for (int j = 0; j < nseg; ++j) t = __fadd_rn(t, p[j]);
    return t;
}

// y[c][r] = W[r] . x[c] (accumulate = 0) or y[c][r] += W[r] . x[c] (accumulate = 1).
// W: packed (n, k);  y: (ncols, y_stride) f32.
// Grid: (ceil(n / (blockDim.x / nseg)), ceil(ncols / PK_COLS)); block: 64, 128 or PK_THREADS.
template <int T>
__device__ __forceinline__ void mmvq_packed(const u8* __restrict__ W, const i8* __restrict__ xq,
                                            const float* __restrict__ xd,
                                            const i32* __restrict__ xs, float* __restrict__ y,
                                            int n, int k, int ncols, int y_stride, int accumulate) {
    __shared__ float sp[PK_COLS][PK_THREADS];
    const int nseg = (k / 32 + SEG_BLOCKS - 1) / SEG_BLOCKS;
    const int rpb = blockDim.x / nseg;
    const int v = threadIdx.x / nseg, s = threadIdx.x % nseg;
    const int r = blockIdx.x * rpb + v;
    const int c0 = blockIdx.y * PK_COLS;
    const int nc = min(PK_COLS, ncols - c0);
    const bool live = v < rpb && r < n;
    if (live) {
        float seg[PK_COLS];
        pk_segment<T>(W, n, k, r, s, xq, xd, xs, c0, nc, seg);
        #pragma unroll
        for (int c = 0; c < PK_COLS; ++c)
            if (c < nc) sp[c][threadIdx.x] = seg[c];
    }
    __syncthreads();
    if (live) {
        for (int c = s; c < nc; c += nseg) {
            const float tot = pk_fold(&sp[c][v * nseg], nseg);
            float* out = y + (u64)(c0 + c) * y_stride + r;
            *out = accumulate ? __fadd_rn(*out, tot) : tot;
        }
    }
}

// Up to three packed matrices of one type and width k against the same activations, one launch
// (q, k, v): virtual rows 0..n0 are W0's (into y0: (ncols, n0)), then n1 of W1 (y1), then n2 of
// W2 (y2). A part with n = 0 is absent. Grid: (ceil((n0 + n1 + n2) / (blockDim.x / nseg)),
// ceil(ncols / PK_COLS)).
template <int T>
__device__ __forceinline__ void mmvq3_packed(const u8* W0, float* y0, int n0, const u8* W1,
                                             float* y1, int n1, const u8* W2, float* y2, int n2,
                                             const i8* __restrict__ xq,
                                             const float* __restrict__ xd,
                                             const i32* __restrict__ xs, int k, int ncols) {
    __shared__ float sp[PK_COLS][PK_THREADS];
    const int nseg = (k / 32 + SEG_BLOCKS - 1) / SEG_BLOCKS;
    const int rpb = blockDim.x / nseg;
    const int v = threadIdx.x / nseg, s = threadIdx.x % nseg;
    int r = blockIdx.x * rpb + v;
    const int c0 = blockIdx.y * PK_COLS;
    const int nc = min(PK_COLS, ncols - c0);
    const u8* W = W0;
    float* y = y0;
    int n = n0;
    bool live = v < rpb;
    if (r < n0) {
    } else if (r < n0 + n1) {
        r -= n0; W = W1; y = y1; n = n1;
    } else if (r < n0 + n1 + n2) {
        r -= n0 + n1; W = W2; y = y2; n = n2;
    } else {
        live = false;
    }
    if (live) {
        float seg[PK_COLS];
        pk_segment<T>(W, n, k, r, s, xq, xd, xs, c0, nc, seg);
        #pragma unroll
        for (int c = 0; c < PK_COLS; ++c)
            if (c < nc) sp[c][threadIdx.x] = seg[c];
    }
    __syncthreads();
    if (live) {
        for (int c = s; c < nc; c += nseg) y[(u64)(c0 + c) * n + r] = pk_fold(&sp[c][v * nseg], nseg);
    }
}

// The gated pair: out[c][r] = act(Wg[r] . x[c]) * (Wu[r] . x[c]), act SiLU (0) or GELU-tanh (1),
// as silu_f / gelu_tanh_f of common.cuh (activation.cu's kernels). Wg, Wu: packed (n, k);
// out: (ncols, n). A block's virtual rows: h = (blockDim.x / nseg) / 2 gate rows, then the same
// h rows of up. Grid: (ceil(n / h), ceil(ncols / PK_COLS)).
template <int T>
__device__ __forceinline__ void mmvq_glu_packed(const u8* __restrict__ Wg, const u8* __restrict__ Wu,
                                                const i8* __restrict__ xq,
                                                const float* __restrict__ xd,
                                                const i32* __restrict__ xs, float* __restrict__ out,
                                                int n, int k, int ncols, int act) {
    __shared__ float sp[PK_COLS][PK_THREADS];
    __shared__ float st[PK_COLS][PK_THREADS];
    const int nseg = (k / 32 + SEG_BLOCKS - 1) / SEG_BLOCKS;
    const int h = (blockDim.x / nseg) / 2;
    const int v = threadIdx.x / nseg, s = threadIdx.x % nseg;
    const bool up = v >= h;
    const int r = blockIdx.x * h + (up ? v - h : v);
    const int c0 = blockIdx.y * PK_COLS;
    const int nc = min(PK_COLS, ncols - c0);
    const bool live = v < 2 * h && r < n;
    if (live) {
        float seg[PK_COLS];
        pk_segment<T>(up ? Wu : Wg, n, k, r, s, xq, xd, xs, c0, nc, seg);
        #pragma unroll
        for (int c = 0; c < PK_COLS; ++c)
            if (c < nc) sp[c][threadIdx.x] = seg[c];
    }
    __syncthreads();
    if (live) {
        for (int c = s; c < nc; c += nseg) st[c][v] = pk_fold(&sp[c][v * nseg], nseg);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < h * nc; i += blockDim.x) {
        const int c = i / h, j = i % h;
        const int rr = blockIdx.x * h + j;
        if (rr < n) {
            const float g = st[c][j];
            out[(u64)(c0 + c) * n + rr] = (act ? gelu_tanh_f(g) : silu_f(g)) * st[c][j + h];
        }
    }
}

#define PK_KERNEL(NAME, T)                                                                      \
    extern "C" __global__ void __launch_bounds__(PK_THREADS)                                     \
    NAME(const u8* W, const i8* xq, const float* xd, const i32* xs, float* y, int n, int k,      \
         int ncols, int y_stride, int accumulate) {                                             \
        mmvq_packed<T>(W, xq, xd, xs, y, n, k, ncols, y_stride, accumulate);                    \
    }

PK_KERNEL(mmvq_packed_q4_0, T_Q4_0)
PK_KERNEL(mmvq_packed_q4_1, T_Q4_1)
PK_KERNEL(mmvq_packed_q8_0, T_Q8_0)

#define PK3_KERNEL(NAME, T)                                                                     \
    extern "C" __global__ void __launch_bounds__(PK_THREADS)                                     \
    NAME(const u8* W0, float* y0, int n0, const u8* W1, float* y1, int n1, const u8* W2,         \
         float* y2, int n2, const i8* xq, const float* xd, const i32* xs, int k, int ncols) {    \
        mmvq3_packed<T>(W0, y0, n0, W1, y1, n1, W2, y2, n2, xq, xd, xs, k, ncols);               \
    }

PK3_KERNEL(mmvq3_packed_q4_0, T_Q4_0)
PK3_KERNEL(mmvq3_packed_q4_1, T_Q4_1)
PK3_KERNEL(mmvq3_packed_q8_0, T_Q8_0)

#define PKGLU_KERNEL(NAME, T)                                                                   \
    extern "C" __global__ void __launch_bounds__(PK_THREADS)                                     \
    NAME(const u8* Wg, const u8* Wu, const i8* xq, const float* xd, const i32* xs, float* out,   \
         int n, int k, int ncols, int act) {                                                    \
        mmvq_glu_packed<T>(Wg, Wu, xq, xd, xs, out, n, k, ncols, act);                          \
    }

PKGLU_KERNEL(mmvq_glu_packed_q4_0, T_Q4_0)
PKGLU_KERNEL(mmvq_glu_packed_q4_1, T_Q4_1)
PKGLU_KERNEL(mmvq_glu_packed_q8_0, T_Q8_0)
