// RMS normalization, LayerNorm, and the residual and bias adds.
// pdl: every kernel of this module begins with pdl_prologue()

#define NORM_THREADS 256

// out[r][i] = x[r][i] / sqrt(mean_i(x[r]^2) + eps) * w[i]   (out may alias x)
// x, out: (rows, n) f32;  w: (n) f32.  Grid: (rows); block: NORM_THREADS.
// Used per token (n = dim) and per head (rows = tokens * heads, n = head_dim) for gemma3's
// q/k norms. The sum of squares is reduced in a fixed order.
extern "C" __global__ void rms_norm_f32(const float* x, const float* __restrict__ w, float* out,
                                        int n, float eps) {
    pdl_prologue();
    __shared__ float scratch[32];
    const float* xr = x + (u64)blockIdx.x * n;
    float* orow = out + (u64)blockIdx.x * n;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, scratch);
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) orow[i] = xr[i] * inv * w[i];
}

// LayerNorm (gpt2): out[r][i] = (x[r][i] - mean) / sqrt(var + eps) * w[i] (+ b[i]), mean and
// variance over the row, each reduced in a fixed order in f32 (the CPU sums in f64: the
// results agree to rounding). x, out: (rows, n) f32 (out may alias x);  w, b: (n) f32, b may
// be null.  Grid: (rows); block: NORM_THREADS. Each thread reads back only what it wrote.
extern "C" __global__ void layer_norm_f32(const float* x, const float* __restrict__ w,
                                          const float* __restrict__ b, float* out, int n,
                                          float eps) {
    pdl_prologue();
    __shared__ float scratch[32];
    const float* xr = x + (u64)blockIdx.x * n;
    float* orow = out + (u64)blockIdx.x * n;
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += xr[i];
    s = block_sum(s, scratch);
    const float mean = s / (float)n;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float d = xr[i] - mean;
        orow[i] = d;
        ss += d * d;
    }
    ss = block_sum(ss, scratch);
    const float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = orow[i] * scale * w[i];
        orow[i] = b != nullptr ? v + b[i] : v;
    }
}

// Residual add fused with the next RMS norm: x[r] += y[r], then out[r] = rmsnorm(x[r]) * w.
// x, y, out: (rows, n) f32;  w: (n) f32.  Grid: (rows); block: NORM_THREADS.
// Each thread reads back only the elements it wrote.
extern "C" __global__ void add_rms_norm_f32(float* x, const float* __restrict__ y,
                                            const float* __restrict__ w, float* __restrict__ out,
                                            int n, float eps) {
    pdl_prologue();
    __shared__ float scratch[32];
    float* xr = x + (u64)blockIdx.x * n;
    const float* yr = y + (u64)blockIdx.x * n;
    float* orow = out + (u64)blockIdx.x * n;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = xr[i] + yr[i];
        xr[i] = v;
        ss += v * v;
    }
    ss = block_sum(ss, scratch);
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) orow[i] = xr[i] * inv * w[i];
}

// x[i] += y[i] for i < n.  Grid: ceil(n / NORM_THREADS); block: NORM_THREADS.
extern "C" __global__ void add_f32(float* x, const float* __restrict__ y, int n) {
    pdl_prologue();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += y[i];
}

// x[t][i] += b[i]: a bias row added to every token (qwen2's q/k/v biases).
// x: (ntok, n);  b: (n).  Grid: ceil(ntok * n / NORM_THREADS); block: NORM_THREADS.
extern "C" __global__ void add_bias_f32(float* x, const float* __restrict__ b, int n, int total) {
    pdl_prologue();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) x[i] += b[i % n];
}

// Copy selected rows: out[r][:] = x[rows[r]][:].  x: (ntok, n); rows: (nrows) i32;
// out: (nrows, n).  Grid: (nrows); block: NORM_THREADS.
extern "C" __global__ void gather_rows_f32(const float* __restrict__ x, const i32* __restrict__ rows,
                                           float* __restrict__ out, int n) {
    pdl_prologue();
    const float* src = x + (u64)rows[blockIdx.x] * n;
    float* dst = out + (u64)blockIdx.x * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}
