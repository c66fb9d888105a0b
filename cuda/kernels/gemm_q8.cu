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
// Tiles: a block of G x WM x WN warps computes BM weight rows x BN activation columns; each warp
// WTM = BM / WM rows (MT = WTM / 16 m-tiles) x WTN = BN / WN columns (NT = WTN / 8 n-tiles);
// G > 1 groups split k (see gemm_q8_body); KS splits k over the CTAs of grid z. k is staged through shared memory KB blocks at a
// time, GEMM_STAGES (D: GEMM_D_STAGES) stages in flight, everything by cp.async: the quants of
// BM rows and BN columns as they are in global memory, and the scales. Rows >= n, columns >=
// ncols and blocks >= nb are neither loaded nor written.
//
// Where the time goes (H200, ncu on 14336 x 4096 x 512 Q4_0, tile l): the tensor cores are
// idle most of the time; the kernel is bound by instruction issue (74 % of issue slots busy),
// and the canonical arithmetic alone is 4 FP32 instructions per output and 32-k block (convert,
// d_w * d_x, times dot, add; Q4_1: 6), about 40 % of all instructions. That caps any kernel
// computing it at ~470 TOPS (Q4_1 ~315) on 132 SMs at ~1.75 GHz, and at 64 columns it makes a
// GEMM compute-bound, not DRAM-bound (4096 x 4096: 4.5 us of FP32 at 100 % vs 2.4 us of bytes).
// SASS of tile l, Q4_0 (cuobjdump, sm_90, 2026-11-27): one full stage (4 blocks, 32 IMMA) is
// ~1250 instructions: 512 FP32 (the terms), 32 IMMA, ~115 LDS, ~100 MOV (copies of the
// {c0, c1, c0, c1} C quads the IMMAs need), ~330 IMAD / IADD3 / LOP3 / SHF (shared addresses
// recomputed every stage from the lane id, plus the nibble unpack and c = MAGIC - 8 * xsum),
// ~40 ISETP / BRA. Moving the running totals to shared memory (32 fewer live registers) left
// that count unchanged (1237): the overhead is not register pressure alone.
// Split k over CTAs (tiles lk / sk) measured (H200, 64 columns): 8B q/o 4096 x 4096 Q4_0 28.2
// -> 26.4 us (lk, 8 ways), 8B k/v 1024 x 4096 27.4 -> 13.6 us (sk, 8), Qwen down 896 x 4864
// 32.4 -> 14.9 us (sk, 10); 16 columns: 8B q/o 23.0 -> 16.2 us (sk, 4). At 64 columns every
// SM is busy issuing (ncu: 64 % issue-slot use, DRAM 5 %), so more CTAs stop helping there.
//
// Integer to float: the mma accumulates onto C = GEMM_MAGIC (the bits of 1.5 * 2^23), so the
// result's bits are the f32 1.5 * 2^23 + dot exactly (|dot| < 2^22 for every type), and
// subtracting 1.5 * 2^23 gives (float)dot exactly: the same value term_* converts, without the
// slow I2F. Q4_0 takes its "- 8 * xsum" in C too (C = GEMM_MAGIC - 8 * xsum), which leaves the
// exact integer (dot - 8 * xsum) of term_q4_0.

// Launch shapes (cuda/src/ops/gemm.rs mirrors them, and the dynamic shared memory of a block:
// GEMM_STAGES stages of gemm_stage_bytes()).
#define GEMM_L_BM 128
#define GEMM_L_BN 64
#define GEMM_L_WARPS 8
#define GEMM_S_BM 32
#define GEMM_S_BN 64
#define GEMM_S_WARPS 4
#define GEMM_D_BM 32
#define GEMM_D_BN 64
#define GEMM_D_WARPS 16
#define GEMM_D_GROUPS 4
#define GEMM_STAGES 4
#define GEMM_D_STAGES 3

// Split k over CTAs (tiles ls / ss): workspace of segment sums and per-tile arrival counters,
// static device arrays sized here (ops/gemm.rs mirrors the sizes and never launches a split that
// needs more): 8 Mi floats (32 MiB: 8B down 4096 x 14336 at 64 columns split 5 ways takes 24 MiB)
// and 16384 tiles. The counters return to 0 after every
// launch (the last CTA of a tile resets its own), so launches on one stream may follow each
// other and be captured into graphs; two split launches must not run concurrently.
#define GEMM_KS_WS_FLOATS (8 * 1024 * 1024)
#define GEMM_KS_TILES 16384
__device__ float gemm_ks_ws[GEMM_KS_WS_FLOATS];
__device__ u32 gemm_ks_count[GEMM_KS_TILES];

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
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem_addr(smem)), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
__device__ __forceinline__ u32 dynamic_smem_bytes() {
    u32 r;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(r));
    return r;
}

// d = a * b + {c0, c1, c0, c1}: A 16 x 32 s8 (row), B 32 x 8 s8 (col), s32.
__device__ __forceinline__ void mma_s8(int d[4], const u32 a[4], u32 b0, u32 b1, int c0, int c1) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%11,%12,%13};"
        : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(c0), "r"(c1), "r"(c0),
          "r"(c1));
}

// Per-type constants: quant bytes per block, blocks per stage (64 bytes of quants a row).
template <int TY> struct GemmTy {
    static constexpr int QB = TY == 2 ? 32 : 16;
    static constexpr int KB = TY == 2 ? 2 : 4;
    // Shared bytes per weight row / activation column of a stage (16 of padding each: the
    // fragment loads of 8 rows x 4 lanes hit 32 distinct banks).
    static constexpr int A_ROW = KB * QB + 16;
    static constexpr int B_COL = KB * 32 + 16;
    // Scales of a row: Q4_1 KB (d, m) words; Q4_0 / Q8_0 the KB / 2 + 1 aligned words that cover
    // the row's KB f16 (starting at the even element below the first: cp.async moves >= 4 bytes).
    static constexpr int W_ROW = TY == 1 ? KB * 4 : (KB / 2 + 1) * 4;
};
template <int TY>
__host__ __device__ constexpr int gemm_stage_bytes(int bm, int bn) {
    return bm * GemmTy<TY>::A_ROW + bn * GemmTy<TY>::B_COL + bm * GemmTy<TY>::W_ROW +
           2 * GemmTy<TY>::KB * bn * 4;
}

// TY: 0 = Q4_0, 1 = Q4_1, 2 = Q8_0. G groups of WM x WN warps split k inside the block:
// group q takes segments q, q + G, q + 2G, ... (each a run of SEG_BLOCKS blocks), and after each
// round of G segments group 0 adds the groups' segment sums into the total in segment order
// (through shared memory), which is the canonical fold. G = 1: one group walks all of k.
// KS (G = 1 only): k is split over the gridDim.z CTAs of a tile, `spc` segments each: CTA z
// takes segments z * spc .. z * spc + spc - 1. CTA 0 folds its segments into the total as
// usual (the canonical running total after segment spc - 1) and stores it in slot 0 of the
// tile's workspace; CTA z > 0 stores each segment sum in its own slot (segment s at slot
// s - spc + 1). The last CTA of the tile to arrive (atomic counter) folds slot 0, 1, 2, ... in
// order: the canonical fold exactly.
template <int TY, int BM, int BN, int WM, int WN, int G, int KS>
__device__ __forceinline__ void gemm_q8_body(const u8* __restrict__ w, int n, int k,
                                             const i8* __restrict__ xq, const float* __restrict__ xd,
                                             const i32* __restrict__ xsum, int ncols,
                                             float* __restrict__ y, int y_stride, int accumulate,
                                             int spc) {
    typedef GemmTy<TY> T;
    constexpr int QB = T::QB, KB = T::KB, A_ROW = T::A_ROW, B_COL = T::B_COL, W_ROW = T::W_ROW;
    constexpr int NTH = WM * WN * 32;  // threads of a group
    constexpr int WTM = BM / WM, WTN = BN / WN;
    constexpr int MT = WTM / 16, NT = WTN / 8;
    constexpr int A_CH = KB * QB / 16, B_CH = KB * 32 / 16;  // 16-byte chunks per row / column
    constexpr int W_WORDS = W_ROW / 4;
    constexpr int NST = G > 1 ? GEMM_D_STAGES : GEMM_STAGES;
    constexpr int SPS = SEG_BLOCKS / KB;  // stages per segment
    constexpr int GSTAGE = gemm_stage_bytes<TY>(BM, BN);  // one group's part of a stage
    constexpr int STAGE = G * GSTAGE;
    // Group stage layout: A (BM, A_ROW) | B (BN, B_COL) | W (BM, W_ROW) | xd (KB, BN) f32 |
    // xs (KB, BN) i32. After the NST stages: the segment exchange, (G - 1, MT * NT * 4, NTH) f32.
    constexpr int OFF_B = BM * A_ROW, OFF_W = OFF_B + BN * B_COL, OFF_XD = OFF_W + BM * W_ROW;
    constexpr int OFF_XS = OFF_XD + KB * BN * 4;
    static_assert(MT * 16 == WTM && NT * 8 == WTN, "warp tile");
    static_assert(SEG_BLOCKS % KB == 0 && KB % 2 == 0, "a stage never straddles a segment");
    static_assert(GSTAGE % 16 == 0, "stages stay 16-byte aligned");
    static_assert(KS == 0 || G == 1, "split k over CTAs or inside a block, not both");

    extern __shared__ __align__(16) u8 smem[];
    float* xch = (float*)(smem + NST * STAGE);
    if (dynamic_smem_bytes() < (u32)(NST * STAGE + (G - 1) * BM * BN * 4)) __trap();  // mismatch

    const int grp = threadIdx.x / NTH;
    const int tid = threadIdx.x % NTH;
    const int lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int wm = warp / WN, wn = warp % WN;
    const int col0 = blockIdx.x * BN;
    const int row0 = blockIdx.y * BM;
    const int nb = k / 32;
    const int nseg_all = (nb + SEG_BLOCKS - 1) / SEG_BLOCKS;
    // This CTA's segments (KS: a run of spc; else all of k).
    const int seg_lo = KS ? (int)blockIdx.z * spc : 0;
    const int seg_hi = KS ? min(nseg_all, seg_lo + spc) : nseg_all;
    const int nseg = seg_hi - seg_lo;
    const int blk_lo = seg_lo * SEG_BLOCKS;
    const int rounds = (nseg + G - 1) / G;
    // Stages: SPS a round, the last round as long as its first (longest) segment.
    const int last_blocks =
        min(SEG_BLOCKS, min(nb, seg_hi * SEG_BLOCKS) - blk_lo - (rounds - 1) * G * SEG_BLOCKS);
    const int nstages = (rounds - 1) * SPS + (last_blocks + KB - 1) / KB;
    const u8* scales = w + packed_scales_offset(QB, n, k);
    const u64 scale_elems = (u64)n * nb;

    // Tile bases; offsets inside a tile fit in 32 bits.
    const u8* wt = w + (u64)row0 * nb * QB;
    const i8* xt = xq + (u64)col0 * k;
    // Scales: Q4_1 from the tile's first row; Q4_0 / Q8_0 from the even element at or below it
    // (pb = 1 when that is odd), so 4-byte words of f16 are aligned.
    const u64 first_e = (u64)row0 * nb;
    const u32 pb = TY == 1 ? 0 : (u32)(first_e & 1);
    const u8* st_base = scales + (first_e - pb) * (TY == 1 ? 4 : 2);
    const float* xdt = xd + (u64)col0 * nb;
    const i32* xst = xsum + (u64)col0 * nb;
    const int rows = min(BM, n - row0), cols = min(BN, ncols - col0);
    // Scale elements from st_base to the tensor's end (Q4_0 / Q8_0 word guard).
    const u64 tail_elems = scale_elems - (first_e - pb);
    // First block of this group's part of stage s.
    auto first_block = [&](int s) {
        return blk_lo + ((s / SPS) * G + grp) * SEG_BLOCKS + (s % SPS) * KB;
    };
    // KS workspace of this tile: slots of (MT * NT * 4, NTH) floats, in the threads' fragment
    // order (coalesced; the last CTA reads them back with the same mapping).
    const int nslots = nseg_all - spc + 1;
    float* wsp = gemm_ks_ws + (u32)(blockIdx.y * gridDim.x + blockIdx.x) * (u32)(nslots * BM * BN);

    // This group's part of a stage (blocks b0 .. b0 + KB - 1) into buffer `buf`, by cp.async,
    // loaded by the group's threads; rows >= n, columns >= ncols and blocks >= nb are not
    // loaded (their shared bytes are never used).
    auto issue = [&](int buf, int b0) {
        u8* st = smem + buf * STAGE + grp * GSTAGE;
        #pragma unroll
        for (int u = 0; u < (BM * A_CH + NTH - 1) / NTH; u++) {
            const int i = tid + u * NTH;
            const int r = i / A_CH, ch = i % A_CH;
            if ((BM * A_CH % NTH == 0 || i < BM * A_CH) && r < rows && b0 + ch * 16 / QB < nb)
                cp_async16(st + r * A_ROW + ch * 16, wt + (u32)((r * nb + b0) * QB + ch * 16));
        }
        #pragma unroll
        for (int u = 0; u < (BN * B_CH + NTH - 1) / NTH; u++) {
            const int i = tid + u * NTH;
            const int c = i / B_CH, ch = i % B_CH;
            if ((BN * B_CH % NTH == 0 || i < BN * B_CH) && c < cols && b0 + ch / 2 < nb)
                cp_async16(st + OFF_B + c * B_COL + ch * 16, xt + (u32)(c * k + b0 * 32 + ch * 16));
        }
        #pragma unroll
        for (int u = 0; u < (BM * W_WORDS + NTH - 1) / NTH; u++) {
            const int i = tid + u * NTH;
            const int r = i / W_WORDS, j = i % W_WORDS;
            if (i < BM * W_WORDS && r < rows && b0 < nb) {
                const u32 e0 = (u32)(r * nb + b0);  // first scale element of the row
                u8* dst = st + OFF_W + r * W_ROW + j * 4;
                if (TY == 1) {
                    if (b0 + j < nb) cp_async4(dst, st_base + (e0 + j) * 4);
                } else {
                    // The word's first element, counted from st_base (which is even).
                    const u32 e = ((pb + e0) & ~1u) + 2 * j;
                    if (e + 1 < tail_elems) {
                        cp_async4(dst, st_base + e * 2);
                    } else if (e < tail_elems) {  // the tensor's last f16, alone
                        *(u32*)dst = (u32)(*(const u16*)(st_base + e * 2));
                    }
                }
            }
        }
        #pragma unroll
        for (int u = 0; u < (BN * KB + NTH - 1) / NTH; u++) {
            const int i = tid + u * NTH;
            const int c = i / KB, kb = i % KB;
            if (i < BN * KB && c < cols && b0 + kb < nb) {
                const u32 idx = (u32)(c * nb + b0 + kb);
                cp_async4(st + OFF_XD + (kb * BN + c) * 4, xdt + idx);
                cp_async4(st + OFF_XS + (kb * BN + c) * 4, xst + idx);
            }
        }
    };

    // Parity of each of this thread's rows' first scale element (Q4_0 / Q8_0: where the row's
    // f16 start in its scale words).
    u32 parity = 0;
    #pragma unroll
    for (int i = 0; i < MT; i++)
        #pragma unroll
        for (int h = 0; h < 2; h++) {
            const u64 r = (u64)(row0 + wm * WTM + i * 16 + g + 8 * h);
            parity |= (u32)((r * nb) & 1) << (i * 2 + h);
        }

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
    // Warps whose columns all lie past ncols skip the arithmetic (warp-uniform).
    const bool warp_live = col0 + wn * WTN < ncols;

    #pragma unroll
    for (int st = 0; st < NST - 1; st++) {
        if (st < nstages) issue(st, first_block(st));
        cp_async_commit();
    }
    for (int s = 0; s < nstages; s++) {
        cp_async_wait<NST - 2>();
        __syncthreads();
        // Everyone is done with stage s - 1's buffer: refill it with stage s + NST - 1.
        if (s + NST - 1 < nstages) issue((s + NST - 1) % NST, first_block(s + NST - 1));
        cp_async_commit();

        const u8* st = smem + (s % NST) * STAGE + grp * GSTAGE;
        // Block kb of the stage into the segment sums.
        auto block = [&](int kb) {
            // A fragments (rows g, g + 8 of each m-tile; k 4t..4t+3 and 16+4t..16+4t+3).
            u32 a[MT][4];
            float dw[MT][2], mw[MT][2];
            #pragma unroll
            for (int i = 0; i < MT; i++) {
                const int r = wm * WTM + i * 16 + g;
                const u8* p = st + r * A_ROW + kb * QB + 4 * t;
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
                    const u8* wr = st + OFF_W + (r + 8 * h) * W_ROW;
                    if (TY == 1) {
                        const u32 sc = *(const u32*)(wr + kb * 4);
                        dw[i][h] = f16_to_f32((u16)(sc & 0xFFFF));
                        mw[i][h] = f16_to_f32((u16)(sc >> 16));
                    } else {
                        const int pe = (parity >> (i * 2 + h)) & 1;
                        dw[i][h] = f16_to_f32(*(const u16*)(wr + (pe + kb) * 2));
                        mw[i][h] = 0.0f;
                    }
                }
            }
            #pragma unroll
            for (int j = 0; j < NT; j++) {
                const int c = wn * WTN + j * 8;
                const u8* p = st + OFF_B + (c + g) * B_COL + kb * 32 + 4 * t;
                const u32 b0r = *(const u32*)p, b1r = *(const u32*)(p + 16);
                const float2 dx = *(const float2*)(st + OFF_XD + (kb * BN + c + 2 * t) * 4);
                const int2 xs = *(const int2*)(st + OFF_XS + (kb * BN + c + 2 * t) * 4);
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
                    mma_s8(d, a[i], b0r, b1r, c0, c1);
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
        };
        const int b0 = first_block(s);
        if (!warp_live) {
        } else if (b0 + KB <= nb) {
            #pragma unroll
            for (int kb = 0; kb < KB; kb++) block(kb);
        } else {  // the stage runs past k: blocks >= nb add nothing
            #pragma unroll
            for (int kb = 0; kb < KB; kb++)
                if (b0 + kb < nb) block(kb);
        }
        // End of a segment (or of k): fold the G segment sums into the total, in order.
        if (KS && blockIdx.z > 0 && (s % SPS == SPS - 1 || s == nstages - 1)) {
            float* o = wsp + (u32)((seg_lo + s / SPS - spc + 1) * BM * BN) + tid;
            #pragma unroll
            for (int i = 0; i < MT; i++)
                #pragma unroll
                for (int j = 0; j < NT; j++)
                    #pragma unroll
                    for (int e = 0; e < 4; e++) {
                        __stcg(o + ((i * NT + j) * 4 + e) * NTH, seg[i][j][e]);
                        seg[i][j][e] = 0.0f;
                    }
        } else if (s % SPS == SPS - 1 || s == nstages - 1) {
            if (G > 1) {
                if (grp > 0) {
                    #pragma unroll
                    for (int i = 0; i < MT; i++)
                        #pragma unroll
                        for (int j = 0; j < NT; j++)
                            #pragma unroll
                            for (int e = 0; e < 4; e++)
                                xch[((grp - 1) * MT * NT * 4 + (i * NT + j) * 4 + e) * NTH + tid] =
                                    seg[i][j][e];
                }
                __syncthreads();
            }
            if (grp == 0) {
                const int seg0 = (s / SPS) * G;
                #pragma unroll
                for (int i = 0; i < MT; i++)
                    #pragma unroll
                    for (int j = 0; j < NT; j++)
                        #pragma unroll
                        for (int e = 0; e < 4; e++) {
                            float tot = __fadd_rn(total[i][j][e], seg[i][j][e]);
                            #pragma unroll
                            for (int q = 1; q < G; q++)
                                if (seg0 + q < nseg)
                                    tot = __fadd_rn(
                                        tot, xch[((q - 1) * MT * NT * 4 + (i * NT + j) * 4 + e) * NTH + tid]);
                            total[i][j][e] = tot;
                        }
            }
            #pragma unroll
            for (int i = 0; i < MT; i++)
                #pragma unroll
                for (int j = 0; j < NT; j++)
                    #pragma unroll
                    for (int e = 0; e < 4; e++) seg[i][j][e] = 0.0f;
        }
    }
    cp_async_wait<0>();

    if (KS) {
        __shared__ u32 last;
        if (blockIdx.z == 0) {
            #pragma unroll
            for (int i = 0; i < MT; i++)
                #pragma unroll
                for (int j = 0; j < NT; j++)
                    #pragma unroll
                    for (int e = 0; e < 4; e++)
                        __stcg(wsp + ((i * NT + j) * 4 + e) * NTH + tid, total[i][j][e]);
        }
        __threadfence();
        __syncthreads();
        if (threadIdx.x == 0) {
            u32* cnt = gemm_ks_count + blockIdx.y * gridDim.x + blockIdx.x;
            const u32 prev = atomicAdd(cnt, 1u);
            last = prev == gridDim.z - 1;
            if (last) *cnt = 0;  // every CTA of the tile has counted: ready for the next launch
        }
        __syncthreads();
        if (!last) return;
        __threadfence();
        // Slots QC at a time, every load of a round issued before the adds (one L2 round trip
        // a round, not one a slot and output).
        constexpr int VALS = MT * NT * 4, QC = VALS <= 16 ? 4 : 2;
        float* tot = &total[0][0][0];
        #pragma unroll
        for (int v = 0; v < VALS; v++) tot[v] = 0.0f;
        for (int q0 = 0; q0 < nslots; q0 += QC) {
            float vals[QC][VALS];
            #pragma unroll
            for (int u = 0; u < QC; u++)
                #pragma unroll
                for (int v = 0; v < VALS; v++)
                    vals[u][v] = q0 + u < nslots ? __ldcg(wsp + (q0 + u) * BM * BN + v * NTH + tid)
                                                 : 0.0f;
            #pragma unroll
            for (int u = 0; u < QC; u++)
                #pragma unroll
                for (int v = 0; v < VALS; v++)
                    // Slot 0 is CTA 0's running total: the fold starts from it.
                    if (q0 + u < nslots)
                        tot[v] = q0 + u == 0 ? vals[u][v] : __fadd_rn(tot[v], vals[u][v]);
        }
    }

    if (grp == 0) {
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
}

// gemm_q8_<type>_<tile>(w, n, k, xq, xd, xsum, ncols, y, y_stride, accumulate): grid
// (ceil(ncols / BN), ceil(n / BM)), G * WM * WN * 32 threads, stages * G *
// gemm_stage_bytes(BM, BN) + (G - 1) * BM * BN * 4 bytes of dynamic shared memory (stages:
// GEMM_STAGES, GEMM_D_STAGES when G > 1).
// Tile l: 128 rows x 64 columns, 8 warps (4 x 2, 32 x 32 each); s: 32 x 64, 4 warps (1 x 4,
// 32 x 16); d: the s tile with k split over 4 groups of 4 warps (16 warps), for few row tiles
// and long k; lk / sk: l / s with k split over CTAs (GEMM_SPLIT_KERNEL), for few row tiles.
// (Measured and dropped, 2026-11-27: 64 x 64 with 2 x 2 warps, and 128 x 64 with 4 warps of
// 64 x 32: never faster than these three.)
#define GEMM_KERNEL(name, TY, BM, BN, WM, WN, G, MINB)                                          \
    extern "C" __global__ void __launch_bounds__(G * WM * WN * 32, MINB)                        \
        name(const u8* __restrict__ w, int n, int k, const i8* __restrict__ xq,                 \
             const float* __restrict__ xd, const i32* __restrict__ xsum, int ncols,             \
             float* __restrict__ y, int y_stride, int accumulate) {                             \
        gemm_q8_body<TY, BM, BN, WM, WN, G, 0>(w, n, k, xq, xd, xsum, ncols, y, y_stride,        \
                                               accumulate, 0);                                  \
    }
// The same with k split over the gridDim.z CTAs of a tile, spc segments each (KS above): one
// more argument, spc; gridDim.z = ceil(nseg / spc) >= 2, and (tiles) x BM x BN x (nseg - spc +
// 1) floats <= GEMM_KS_WS_FLOATS, tiles <= GEMM_KS_TILES.
#define GEMM_SPLIT_KERNEL(name, TY, BM, BN, WM, WN, MINB)                                    \
    extern "C" __global__ void __launch_bounds__(WM * WN * 32, MINB)                            \
        name(const u8* __restrict__ w, int n, int k, const i8* __restrict__ xq,                 \
             const float* __restrict__ xd, const i32* __restrict__ xsum, int ncols,             \
             float* __restrict__ y, int y_stride, int accumulate, int spc) {                    \
        gemm_q8_body<TY, BM, BN, WM, WN, 1, 1>(w, n, k, xq, xd, xsum, ncols, y, y_stride,        \
                                               accumulate, spc);                                \
    }

GEMM_KERNEL(gemm_q8_q4_0_l, 0, 128, 64, 4, 2, 1, 2)
GEMM_KERNEL(gemm_q8_q4_1_l, 1, 128, 64, 4, 2, 1, 2)
GEMM_KERNEL(gemm_q8_q8_0_l, 2, 128, 64, 4, 2, 1, 2)
GEMM_KERNEL(gemm_q8_q4_0_s, 0, 32, 64, 1, 4, 1, 3)
GEMM_KERNEL(gemm_q8_q4_1_s, 1, 32, 64, 1, 4, 1, 3)
GEMM_KERNEL(gemm_q8_q8_0_s, 2, 32, 64, 1, 4, 1, 3)
GEMM_KERNEL(gemm_q8_q4_0_d, 0, 32, 64, 1, 4, 4, 1)
GEMM_KERNEL(gemm_q8_q4_1_d, 1, 32, 64, 1, 4, 4, 1)
GEMM_KERNEL(gemm_q8_q8_0_d, 2, 32, 64, 1, 4, 4, 1)
GEMM_SPLIT_KERNEL(gemm_q8_q4_0_lk, 0, 128, 64, 4, 2, 2)
GEMM_SPLIT_KERNEL(gemm_q8_q4_1_lk, 1, 128, 64, 4, 2, 2)
GEMM_SPLIT_KERNEL(gemm_q8_q8_0_lk, 2, 128, 64, 4, 2, 2)
GEMM_SPLIT_KERNEL(gemm_q8_q4_0_sk, 0, 32, 64, 1, 4, 3)
GEMM_SPLIT_KERNEL(gemm_q8_q4_1_sk, 1, 32, 64, 1, 4, 3)
GEMM_SPLIT_KERNEL(gemm_q8_q8_0_sk, 2, 32, 64, 1, 4, 3)
