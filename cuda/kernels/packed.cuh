// Packed weights and Q8 activations (cuda/src/packed.rs documents the layout and holds the
// host references). The per-block terms and the segment fold below are THE canonical
// arithmetic: every kernel that reads packed weights (matrix-vector and matrix-matrix) calls
// these, so one output is bit-identical whichever kernel computed it.
//
// Packed tensor (rows x k, nb = k / 32 blocks per row): quants at 0, block (r, b) at
// (r * nb + b) * QB bytes (QB 16 for Q4_0/Q4_1, 32 for Q8_0; Q4 byte j = weight j low nibble,
// weight j + 16 high nibble, unsigned); scales at packed_scales_offset(): Q4_0/Q8_0 one f16 d
// per block, Q4_1 a (d, m) f16 pair per block (d first), index r * nb + b.
// Q8 activations: q (ncols, k) i8, d (ncols, nb) f32, sum (ncols, nb) i32.

#define SEG_BLOCKS 16

// Offset of the scales region of a packed rows x k tensor (quants rounded up to 256 bytes).
__device__ __forceinline__ u64 packed_scales_offset(int qb, int rows, int k) {
    const u64 q = (u64)rows * (u64)(k / 32) * (u64)qb;
    return (q + 255) & ~(u64)255;
}

// Per-block terms (f32 operations rounded one at a time; `dot` = sum of w_q * x_q over the block,
// Q4 quants taken unsigned 0..15).
__device__ __forceinline__ float term_q4_0(float dw, float dx, int dot, int xsum) {
    return __fmul_rn(__fmul_rn(dw, dx), (float)(dot - 8 * xsum));
}
__device__ __forceinline__ float term_q4_1(float dw, float mw, float dx, int dot, int xsum) {
    return __fadd_rn(__fmul_rn(__fmul_rn(dw, dx), (float)dot), __fmul_rn(mw, __fmul_rn(dx, (float)xsum)));
}
__device__ __forceinline__ float term_q8_0(float dw, float dx, int dot) {
    return __fmul_rn(__fmul_rn(dw, dx), (float)dot);
}

// The canonical sum: blocks are added in increasing b into `seg`; after block b where
// (b + 1) % SEG_BLOCKS == 0 or b + 1 == nb, `total = total + seg; seg = 0`.
struct CanonicalSum {
    float total;
    float seg;
    __device__ __forceinline__ void init() { total = 0.0f; seg = 0.0f; }
    __device__ __forceinline__ void add(float t, int b, int nb) {
        seg = __fadd_rn(seg, t);
        if ((b + 1) % SEG_BLOCKS == 0 || b + 1 == nb) {
            total = __fadd_rn(total, seg);
            seg = 0.0f;
        }
    }
};
