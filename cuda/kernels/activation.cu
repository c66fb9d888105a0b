// Feed-forward activations: gated, out[i] = act(gate[i]) * up[i] (out may alias gate), and
// plain, x[i] = act(x[i]) in place.
// gate, up, out, x: (n) f32.  Grid: ceil(n / ACT_THREADS); block: ACT_THREADS.
// pdl: every kernel of this module begins with pdl_prologue()

#define ACT_THREADS 256

// SwiGLU (llama, qwen2): silu(g) = g / (1 + exp(-g)).
extern "C" __global__ void silu_mul_f32(const float* gate, const float* __restrict__ up, float* out,
                                        int n) {
    pdl_prologue();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = silu_f(gate[i]) * up[i];
    }
}

// GeGLU with the tanh approximation (gemma3):
// gelu(g) = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))).
extern "C" __global__ void gelu_tanh_mul_f32(const float* gate, const float* __restrict__ up,
                                             float* out, int n) {
    pdl_prologue();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = gelu_tanh_f(gate[i]) * up[i];
    }
}

// Plain GELU (tanh approximation) in place (gpt2's FFN): x[i] = gelu(x[i]).
extern "C" __global__ void gelu_tanh_f32(float* x, int n) {
    pdl_prologue();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        x[i] = gelu_tanh_f(x[i]);
    }
}
