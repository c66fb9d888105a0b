// RMS normalization and the residual add.
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
