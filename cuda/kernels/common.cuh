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
