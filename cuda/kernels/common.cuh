// Shared definitions, prepended to every kernel source before NVRTC compiles it (no headers:
// NVRTC runs without the CUDA include directory).

typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef int i32;
typedef unsigned long long u64;

#define WARP_SIZE 32
#define FULL_MASK 0xffffffffu
#define INFINITY __int_as_float(0x7f800000)
#define NAN __int_as_float(0x7fffffff)

// An IEEE half (little-endian bits) as f32; exact.
__device__ __forceinline__ float f16_to_f32(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

// A bfloat16 (the top 16 bits of an f32) as f32; exact.
__device__ __forceinline__ float bf16_to_f32(u16 h) {
    return __uint_as_float(((u32)h) << 16);
}

// Little-endian loads at byte alignment (quant blocks are 18, 22, 34, 210... bytes long).
__device__ __forceinline__ u16 ld_u16(const u8* p) {
    return (u16)p[0] | ((u16)p[1] << 8);
}
__device__ __forceinline__ u32 ld_u32(const u8* p) {
    return (u32)p[0] | ((u32)p[1] << 8) | ((u32)p[2] << 16) | ((u32)p[3] << 24);
}

// Sum / max over a warp; every lane gets the result. The order of additions is fixed.
__device__ __forceinline__ float warp_sum(float v) {
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

// Sum over a block of up to 32 warps, deterministic: warps reduce, then warp 0 adds the warp
// totals in warp order. `scratch` holds 32 floats. Every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x % WARP_SIZE;
    const int warp = threadIdx.x / WARP_SIZE;
    const int nwarps = (blockDim.x + WARP_SIZE - 1) / WARP_SIZE;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float t = lane < nwarps ? scratch[lane] : 0.0f;
        t = warp_sum(t);
        if (lane == 0) scratch[0] = t;
    }
    __syncthreads();
    return scratch[0];
}

// The gate activations of the gated feed-forward network (activation.cu, mmvq.cu).
// SiLU: g / (1 + exp(-g)).
__device__ __forceinline__ float silu_f(float g) {
    return g / (1.0f + expf(-g));
}
// GELU, tanh approximation: 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))).
__device__ __forceinline__ float gelu_tanh_f(float g) {
    const float k = 0.7978845608028654f;  // sqrt(2/pi)
    return 0.5f * g * (1.0f + tanhf(k * (g + 0.044715f * g * g * g)));
}

// Row of the paged KV cache holding position p of slot `slot`: page_table is
// (n_slots, pages_per_slot) i32 page ids; a page holds page_tokens consecutive positions.
__device__ __forceinline__ u64 kv_row(const i32* page_table, int pages_per_slot, int page_tokens,
                                      int slot, int p) {
    const int page = page_table[(u64)slot * pages_per_slot + p / page_tokens];
    return (u64)page * page_tokens + (p % page_tokens);
}

// The KV cache's row types (host/model/src/kv_type.rs; the host passes none of this, each
// kernel is instantiated per type and named after it). A row is kv_dim values: one layer's keys
// or values at one position.
//   KV_F32: kv_dim f32.   KV_F16: kv_dim IEEE halves (stored rounded to nearest, ties even).
//   KV_Q8_0: kv_dim i8 quants, then kv_dim / 32 f16 scales (value = scale * q, block b of 32
//   values has scale b), the row padded to a multiple of 16 bytes. Loads are exact.
#define KV_F32 0
#define KV_F16 1
#define KV_Q8_0 2
#define KV_Q8_BLOCK 32

// f32 to the nearest IEEE half, ties to even (bits).
__device__ __forceinline__ u16 f32_to_f16(float f) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// Bytes of one cache row of kv_dim values.
template <int T>
__device__ __forceinline__ u64 kv_row_bytes(int kv_dim) {
    if (T == KV_F32) return 4 * (u64)kv_dim;
    if (T == KV_F16) return 2 * (u64)kv_dim;
    return (u64)((kv_dim + kv_dim / 16 + 15) / 16 * 16);
}

// Values e..e+3 (e a multiple of 4) of cache row `row`, as stored.
template <int T>
__device__ __forceinline__ float4 kv_load4(const u8* __restrict__ c, u64 row, int kv_dim, int e) {
    const u8* r = c + row * kv_row_bytes<T>(kv_dim);
    if (T == KV_F32) return *(const float4*)(r + 4 * (u64)e);
    if (T == KV_F16) {
        const uint2 u = *(const uint2*)(r + 2 * (u64)e);
        return make_float4(f16_to_f32((u16)(u.x & 0xffffu)), f16_to_f32((u16)(u.x >> 16)),
                           f16_to_f32((u16)(u.y & 0xffffu)), f16_to_f32((u16)(u.y >> 16)));
    }
    const char4 q = *(const char4*)(r + e);
    const float d = f16_to_f32(*(const u16*)(r + kv_dim + 2 * (e / KV_Q8_BLOCK)));
    return make_float4(__fmul_rn(d, (float)q.x), __fmul_rn(d, (float)q.y),
                       __fmul_rn(d, (float)q.z), __fmul_rn(d, (float)q.w));
}

// Value e of cache row `row`, as stored.
template <int T>
__device__ __forceinline__ float kv_load1(const u8* __restrict__ c, u64 row, int kv_dim, int e) {
    const u8* r = c + row * kv_row_bytes<T>(kv_dim);
    if (T == KV_F32) return ((const float*)r)[e];
    if (T == KV_F16) return f16_to_f32(((const u16*)r)[e]);
    const float d = f16_to_f32(*(const u16*)(r + kv_dim + 2 * (e / KV_Q8_BLOCK)));
    return __fmul_rn(d, (float)(i8)r[e]);
}

// Store src[0..n) as values e0..e0+n of cache row `row`; the whole block calls it (blockDim.x
// a multiple of WARP_SIZE). Q8_0: e0 and n whole blocks, one warp per block, ggml's rule:
// d = amax / 127, q = round(x / d) (half away from zero), as kv_type.rs.
template <int T>
__device__ __forceinline__ void kv_store_span(u8* c, u64 row, int kv_dim, int e0, int n,
                                              const float* src) {
    u8* r = c + row * kv_row_bytes<T>(kv_dim);
    if (T == KV_F32) {
        for (int i = threadIdx.x; i < n; i += blockDim.x) ((float*)r)[e0 + i] = src[i];
    } else if (T == KV_F16) {
        for (int i = threadIdx.x; i < n; i += blockDim.x) ((u16*)r)[e0 + i] = f32_to_f16(src[i]);
    } else {
        const int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
        const int n_warps = blockDim.x / WARP_SIZE;
        for (int b = warp; b < n / KV_Q8_BLOCK; b += n_warps) {
            const float x = src[b * KV_Q8_BLOCK + lane];
            const float amax = warp_max(fabsf(x));
            const float d = __fdiv_rn(amax, 127.0f);
            const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
            const float q = fminf(fmaxf(roundf(__fmul_rn(x, id)), -128.0f), 127.0f);
            r[e0 + b * KV_Q8_BLOCK + lane] = (u8)(i8)(int)q;
            if (lane == 0) *(u16*)(r + kv_dim + 2 * ((e0 / KV_Q8_BLOCK) + b)) = f32_to_f16(d);
        }
    }
}

// Programmatic dependent launch (sm_90+; kernels.rs PDL_MARKER): wait until the previous
// kernel in the stream has finished and its writes are visible, then let the next kernel be
// scheduled. Every kernel of a marked module calls this first; launched without the attribute
// (or before sm_90) it does nothing.
__device__ __forceinline__ void pdl_prologue() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}
