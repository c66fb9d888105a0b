// Token embedding lookup: out[t][:] = dequant(W[tokens[t]][:]) * scale.
//
// W: (vocab, dim) in its GGUF block format.  tokens: (ntok) u32, already checked < vocab on
// the host.  out: (ntok, dim) f32.  Grid: (ntok); block: EMBED_THREADS threads, one 32-weight
// unit each in turn.
// pdl: every kernel of this module begins with pdl_prologue()

#define EMBED_THREADS 128

template <int T>
__device__ __forceinline__ void embed(const u8* __restrict__ W, const u32* __restrict__ tokens,
                                      float* __restrict__ out, int dim, float scale) {
    const int t = blockIdx.x;
    const u8* row = W + (u64)tokens[t] * row_bytes<T>(dim);
    float* o = out + (u64)t * dim;
    for (int u = threadIdx.x; u < dim / 32; u += blockDim.x) {
        float w[32];
        dequant_unit<T>(row, u, w);
        #pragma unroll
        for (int j = 0; j < 32; ++j) o[u * 32 + j] = w[j] * scale;
    }
}

#define EMBED_KERNEL(NAME, T)                                                                   \
    extern "C" __global__ void NAME(const u8* W, const u32* tokens, float* out, int dim,          \
                                    float scale) {                                              \
        pdl_prologue();                                                                             \
        embed<T>(W, tokens, out, dim, scale);                                                   \
    }

EMBED_KERNEL(embed_f32, T_F32)
EMBED_KERNEL(embed_f16, T_F16)
EMBED_KERNEL(embed_bf16, T_BF16)
EMBED_KERNEL(embed_q4_0, T_Q4_0)
EMBED_KERNEL(embed_q4_1, T_Q4_1)
EMBED_KERNEL(embed_q5_0, T_Q5_0)
EMBED_KERNEL(embed_q5_1, T_Q5_1)
EMBED_KERNEL(embed_q8_0, T_Q8_0)
EMBED_KERNEL(embed_q4_k, T_Q4_K)
EMBED_KERNEL(embed_q5_k, T_Q5_K)
EMBED_KERNEL(embed_q6_k, T_Q6_K)
EMBED_KERNEL(embed_mxfp4, T_MXFP4)
