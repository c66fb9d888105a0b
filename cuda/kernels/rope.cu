// Rotary position embedding, in place, on (ntok, heads, head_dim) f32 vectors.
//
// For pair i (0 <= i < n_rot/2) at position p: theta_i = p * s^i with s = base^(-2 / n_rot),
// computed in f32 by repeated multiplication exactly as llama.cpp (and the CPU backend) do (the
// host passes s, so both sides use the same f32 value), and
// the pair (a, b) becomes (a cos - b sin, a sin + b cos). NORM style (llama GGUF, whose q/k
// weights the converter permuted) pairs elements (2i, 2i+1); NEOX style (qwen2, gemma3) pairs
// (i, i + n_rot/2). Elements at and past n_rot are left alone. cos/sin are taken in double.
// x: (ntok, heads, head_dim);  pos: (ntok) i32.  Grid: (ntok, heads); block: ROPE_THREADS.

#define ROPE_THREADS 64

extern "C" __global__ void rope_f32(float* x, const i32* __restrict__ pos, int heads, int head_dim,
                                    int n_rot, float theta_scale, int neox) {
    const int t = blockIdx.x;
    const int h = blockIdx.y;
    float* v = x + ((u64)t * heads + h) * head_dim;
    for (int i = threadIdx.x; i < n_rot / 2; i += blockDim.x) {
        float theta = (float)pos[t];
        for (int j = 0; j < i; ++j) theta = __fmul_rn(theta, theta_scale);
        double s, c;
        sincos((double)theta, &s, &c);
        const int ia = neox ? i : 2 * i;
        const int ib = neox ? i + n_rot / 2 : 2 * i + 1;
        const float a = v[ia], b = v[ib];
        const float cf = (float)c, sf = (float)s;
        // Unfused, as the CPU computes it.
        v[ia] = __fsub_rn(__fmul_rn(a, cf), __fmul_rn(b, sf));
        v[ib] = __fadd_rn(__fmul_rn(a, sf), __fmul_rn(b, cf));
    }
}
