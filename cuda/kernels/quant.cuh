// Dequantization of ggml weight blocks, one "unit" of 32 consecutive weights at a time.
// Every supported type's row splits into units of 32 (legacy types: one block; K-quants: one
// of the 8 sub-blocks of a 256-weight super-block; float types: 32 elements), so one matrix
// kernel serves all types. Layouts follow ggml (ggml-common.h), little-endian, byte-aligned.

// Type ids: ggml's `enum ggml_type` values.
#define T_F32 0
#define T_F16 1
#define T_Q4_0 2
#define T_Q4_1 3
#define T_Q5_0 6
#define T_Q5_1 7
#define T_Q8_0 8
#define T_Q4_K 12
#define T_Q5_K 13
#define T_Q6_K 14
#define T_BF16 30
#define T_MXFP4 39

template <int T> struct QTraits;
// Q4_0: {f16 d; u8 qs[16]}: w = d * (nibble - 8); low nibbles are weights 0..15.
template <> struct QTraits<T_Q4_0> { static constexpr int QK = 32, BYTES = 18; };
// Q4_1: {f16 d; f16 m; u8 qs[16]}: w = d * nibble + m.
template <> struct QTraits<T_Q4_1> { static constexpr int QK = 32, BYTES = 20; };
// Q5_0: {f16 d; u8 qh[4]; u8 qs[16]}: w = d * ((nibble | high bit << 4) - 16).
template <> struct QTraits<T_Q5_0> { static constexpr int QK = 32, BYTES = 22; };
// Q5_1: {f16 d; f16 m; u8 qh[4]; u8 qs[16]}: w = d * (nibble | high bit << 4) + m.
template <> struct QTraits<T_Q5_1> { static constexpr int QK = 32, BYTES = 24; };
// Q8_0: {f16 d; i8 qs[32]}: w = d * q.
template <> struct QTraits<T_Q8_0> { static constexpr int QK = 32, BYTES = 34; };
// Q4_K: {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}: 8 sub-blocks of 32 with 6-bit scales/mins.
template <> struct QTraits<T_Q4_K> { static constexpr int QK = 256, BYTES = 144; };
// Q5_K: {f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}.
template <> struct QTraits<T_Q5_K> { static constexpr int QK = 256, BYTES = 176; };
// Q6_K: {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: 16 sub-blocks of 16 with 8-bit scales.
template <> struct QTraits<T_Q6_K> { static constexpr int QK = 256, BYTES = 210; };
// MXFP4: {u8 e; u8 qs[16]}: w = kvalues[nibble] * 2^(e - 128) (E2M1 values doubled, E8M0 scale
// halved, as ggml); low nibbles are weights 0..15.
template <> struct QTraits<T_MXFP4> { static constexpr int QK = 32, BYTES = 17; };
// Float types: one element per "block".
template <> struct QTraits<T_F32> { static constexpr int QK = 1, BYTES = 4; };
template <> struct QTraits<T_F16> { static constexpr int QK = 1, BYTES = 2; };
template <> struct QTraits<T_BF16> { static constexpr int QK = 1, BYTES = 2; };

// Bytes of a row of `k` weights of type T (k a multiple of 32 and of the block size).
template <int T> __device__ __forceinline__ u64 row_bytes(int k) {
    return (u64)(k / QTraits<T>::QK) * QTraits<T>::BYTES;
}

// 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block (ggml's get_scale_min_k4).
__device__ __forceinline__ void scale_min_k4(int j, const u8* q, float* sc, float* m) {
    if (j < 4) {
        *sc = (float)(q[j] & 63);
        *m = (float)(q[j + 4] & 63);
    } else {
        *sc = (float)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (float)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// Dequantize unit `u` (weights 32u..32u+31) of the row starting at `row` into w[0..32].
template <int T> __device__ __forceinline__ void dequant_unit(const u8* row, int u, float* w);

template <> __device__ __forceinline__ void dequant_unit<T_Q4_0>(const u8* row, int u, float* w) {
    const u8* b = row + (u64)u * 18;
    const float d = f16_to_f32(ld_u16(b));
    const u8* qs = b + 2;
    #pragma unroll
    for (int j = 0; j < 16; ++j) {
        w[j] = d * (float)((int)(qs[j] & 0xF) - 8);
        w[j + 16] = d * (float)((int)(qs[j] >> 4) - 8);
    }
}

template <> __device__ __forceinline__ void dequant_unit<T_Q4_1>(const u8* row, int u, float* w) {
    const u8* b = row + (u64)u * 20;
    const float d = f16_to_f32(ld_u16(b));
    const float m = f16_to_f32(ld_u16(b + 2));
    const u8* qs = b + 4;
    #pragma unroll
    for (int j = 0; j < 16; ++j) {
        w[j] = d * (float)(qs[j] & 0xF) + m;
        w[j + 16] = d * (float)(qs[j] >> 4) + m;
    }
}

template <> __device__ __forceinline__ void dequant_unit<T_Q5_0>(const u8* row, int u, float* w) {
    const u8* b = row + (u64)u * 22;
    const float d = f16_to_f32(ld_u16(b));
    const u32 qh = ld_u32(b + 2);
    const u8* qs = b + 6;
    #pragma unroll
    for (int j = 0; j < 16; ++j) {
        const int lo = (qs[j] & 0xF) | (((qh >> j) << 4) & 0x10);
        const int hi = (qs[j] >> 4) | ((qh >> (j + 12)) & 0x10);
        w[j] = d * (float)(lo - 16);
        w[j + 16] = d * (float)(hi - 16);
    }
}

template <> __device__ __forceinline__ void dequant_unit<T_Q5_1>(const u8* row, int u, float* w) {
    const u8* b = row + (u64)u * 24;
    const float d = f16_to_f32(ld_u16(b));
    const float m = f16_to_f32(ld_u16(b + 2));
    const u32 qh = ld_u32(b + 4);
    const u8* qs = b + 8;
    #pragma unroll
    for (int j = 0; j < 16; ++j) {
        const int lo = (qs[j] & 0xF) | (((qh >> j) << 4) & 0x10);
        const int hi = (qs[j] >> 4) | ((qh >> (j + 12)) & 0x10);
        w[j] = d * (float)lo + m;
        w[j + 16] = d * (float)hi + m;
    }
}

template <> __device__ __forceinline__ void dequant_unit<T_Q8_0>(const u8* row, int u, float* w) {
    const u8* b = row + (u64)u * 34;
    const float d = f16_to_f32(ld_u16(b));
    const i8* qs = (const i8*)(b + 2);
    #pragma unroll
    for (int j = 0; j < 32; ++j) w[j] = d * (float)qs[j];
}

template <> __device__ __forceinline__ void dequant_unit<T_Q4_K>(const u8* row, int u, float* w) {
    const u8* b = row + (u64)(u / 8) * 144;
    const int s = u % 8;
    const float d = f16_to_f32(ld_u16(b));
    const float dmin = f16_to_f32(ld_u16(b + 2));
    float sc, m;
    scale_min_k4(s, b + 4, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    const u8* qs = b + 16 + 32 * (s / 2);
    const int shift = (s % 2) * 4;
    #pragma unroll
    for (int l = 0; l < 32; ++l) w[l] = d1 * (float)((qs[l] >> shift) & 0xF) - m1;
}

template <> __device__ __forceinline__ void dequant_unit<T_Q5_K>(const u8* row, int u, float* w) {
    const u8* b = row + (u64)(u / 8) * 176;
    const int s = u % 8;
    const float d = f16_to_f32(ld_u16(b));
    const float dmin = f16_to_f32(ld_u16(b + 2));
    float sc, m;
    scale_min_k4(s, b + 4, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    const u8* qh = b + 16;
    const u8* qs = b + 48 + 32 * (s / 2);
    const int shift = (s % 2) * 4;
    #pragma unroll
    for (int l = 0; l < 32; ++l) {
        const int q = ((qs[l] >> shift) & 0xF) | (((qh[l] >> s) & 1) << 4);
        w[l] = d1 * (float)q - m1;
    }
}

template <> __device__ __forceinline__ void dequant_unit<T_Q6_K>(const u8* row, int u, float* w) {
    const u8* b = row + (u64)(u / 8) * 210;
    const int s = u % 8;
    const int n = s / 4;  // which 128-weight half
    const int r = s % 4;  // which quarter of the half
    const u8* ql = b + 64 * n + (r & 1) * 32;
    const u8* qh = b + 128 + 32 * n;
    const i8* sc = (const i8*)(b + 192) + 8 * n + 2 * r;
    const float d = f16_to_f32(ld_u16(b + 208));
    const int lshift = (r >> 1) * 4;
    const int hshift = 2 * r;
    #pragma unroll
    for (int l = 0; l < 32; ++l) {
        const int q = (((ql[l] >> lshift) & 0xF) | (((qh[l] >> hshift) & 3) << 4)) - 32;
        w[l] = d * (float)sc[l / 16] * (float)q;
    }
}

// ggml's kvalues_mxfp4: the E2M1 values times two.
__device__ __constant__ signed char KVALUES_MXFP4[16] = {0, 1, 2, 3, 4, 6, 8, 12,
                                                          0, -1, -2, -3, -4, -6, -8, -12};

// ggml_e8m0_to_fp32_half: 2^(e - 128) from its bits (subnormal for e < 2).
__device__ __forceinline__ float e8m0_to_f32_half(u8 e) {
    const u32 bits = e < 2 ? 0x00200000u << e : (u32)(e - 1) << 23;
    return __uint_as_float(bits);
}

template <> __device__ __forceinline__ void dequant_unit<T_MXFP4>(const u8* row, int u, float* w) {
    const u8* b = row + (u64)u * 17;
    const float d = e8m0_to_f32_half(b[0]);
    #pragma unroll
    for (int j = 0; j < 16; ++j) {
        w[j] = (float)KVALUES_MXFP4[b[1 + j] & 0xF] * d;
        w[j + 16] = (float)KVALUES_MXFP4[b[1 + j] >> 4] * d;
    }
}

template <> __device__ __forceinline__ void dequant_unit<T_F32>(const u8* row, int u, float* w) {
    const float* p = (const float*)row + (u64)u * 32;  // f32 rows are 4-byte aligned
    #pragma unroll
    for (int j = 0; j < 32; ++j) w[j] = p[j];
}

template <> __device__ __forceinline__ void dequant_unit<T_F16>(const u8* row, int u, float* w) {
    const u16* p = (const u16*)row + (u64)u * 32;
    #pragma unroll
    for (int j = 0; j < 32; ++j) w[j] = f16_to_f32(p[j]);
}

template <> __device__ __forceinline__ void dequant_unit<T_BF16>(const u8* row, int u, float* w) {
    const u16* p = (const u16*)row + (u64)u * 32;
    #pragma unroll
    for (int j = 0; j < 32; ++j) w[j] = bf16_to_f32(p[j]);
}
