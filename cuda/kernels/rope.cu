// Rotary position embedding, in place, on (ntok, heads, head_dim) f32 vectors.
//
// For pair i (0 <= i < n_rot/2) at position p: theta = p * base^(-2i / n_rot), and the pair
// (a, b) becomes (a cos - b sin, a sin + b cos). NORM style (llama GGUF, whose q/k weights the
// converter permuted) pairs elements (2i, 2i+1); NEOX style (qwen2, gemma3) pairs (i, i + n_rot/2).
// Elements at and past n_rot are left alone. Angles are computed in double precision.
// x: (ntok, heads, head_dim);  pos: (ntok) i32.  Grid: (ntok, heads); block: ROPE_THREADS.

#define ROPE_THREADS 64

extern "C" __global__ void rope_f32(float* x, const i32* __restrict__ pos, int heads, int head_dim,
                                    int n_rot, float base, int neox) {
    const int t = blockIdx.x;
    const int h = blockIdx.y;
    float* v = x + ((u64)t * heads + h) * head_dim;
    const double p = (double)pos[t];
    for (int i = threadIdx.x; i < n_rot / 2; i += blockDim.x) {
        const double theta = p * pow((double)base, -2.0 * (double)i / (double)n_rot);
        double s, c;
        sincos(theta, &s, &c);
        const int ia = neox ? i : 2 * i;
        const int ib = neox ? i + n_rot / 2 : 2 * i + 1;
        const float a = v[ia], b = v[ib];
        v[ia] = (float)((double)a * c - (double)b * s);
        v[ib] = (float)((double)a * s + (double)b * c);
    }
}
