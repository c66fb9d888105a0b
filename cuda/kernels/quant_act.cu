// Q8 activations for the integer matrix kernels (cuda/src/packed.rs `ActsQ8`, the CPU's
// `QuantizedActs`): per column c and 32-wide block b of x: (ncols, k) f32,
//   d = amax / 127,  q = round(x * (1 / d)) (half away from zero, saturating; d = 0: q = 0),
//   sum = sum(q).
// Outputs: q: (ncols, k) i8;  d: (ncols, k / 32) f32;  sum: (ncols, k / 32) i32.
// With nw non-null the column is RMS-normalized first, exactly as rms_norm_f32 (norm.cu) does
// it (same thread count, same loops, same expressions; every block of a column computes the
// column's sum of squares the same way), so quantizing here equals quantizing that kernel's
// output: v = x * inv_rms * nw.
// Grid: (ceil(k / 32 / QA_WARPS), ncols); block: QA_THREADS (must equal NORM_THREADS for the
// sum of squares to match); each warp quantizes one 32-wide block.
// pdl: every kernel of this module begins with pdl_prologue()

#define QA_THREADS 256
#define QA_WARPS 8

extern "C" __global__ void __launch_bounds__(QA_THREADS)
quantize_q8_f32(const float* __restrict__ x, const float* __restrict__ nw, float eps,
                i8* __restrict__ q, float* __restrict__ d, i32* __restrict__ sum, int k) {
    pdl_prologue();
    __shared__ float scratch[32];
    const int c = blockIdx.y;
    const float* xr = x + (u64)c * k;
    float inv = 1.0f;
    if (nw) {
        // rms_norm_f32's reduction, verbatim.
        float ss = 0.0f;
        for (int i = threadIdx.x; i < k; i += blockDim.x) ss += xr[i] * xr[i];
        ss = block_sum(ss, scratch);
        inv = 1.0f / sqrtf(ss / (float)k + eps);
    }
    const int lane = threadIdx.x % WARP_SIZE;
    const int b = blockIdx.x * QA_WARPS + threadIdx.x / WARP_SIZE;
    const int nb = k / 32;
    if (b >= nb) return;
    const int i = b * 32 + lane;
    float v = xr[i];
    if (nw) v = v * inv * nw[i];
    const float amax = warp_max(fabsf(v));
    const float db = __fdiv_rn(amax, 127.0f);
    const float id = db != 0.0f ? __fdiv_rn(1.0f, db) : 0.0f;
    const float r = roundf(__fmul_rn(v, id));
    // Rust's `as i8`: saturating, NaN to 0.
    const int qi = r != r ? 0 : (int)fminf(fmaxf(r, -128.0f), 127.0f);
    q[(u64)c * k + i] = (i8)qi;
    const int s = __reduce_add_sync(FULL_MASK, qi);
    if (lane == 0) {
        d[(u64)c * nb + b] = db;
        sum[(u64)c * nb + b] = s;
    }
}
