// Constrained decoding: keep only the allowed tokens of one logits row, in place, before
// argmax / top-k / the sampler read it (so no row crosses to the host).
// logits: (rows, vocab) f32; allowed: (ceil(vocab / 32)) u32, token i allowed when bit
// i % 32 of word i / 32 is set. Every other logit becomes -inf.
// Grid: ceil(vocab / MASK_THREADS); block: MASK_THREADS; one thread per token.
// pdl: every kernel of this module begins with pdl_prologue()

#define MASK_THREADS 256

extern "C" __global__ void __launch_bounds__(MASK_THREADS)
    mask_logits_f32(float* logits, int row, int vocab, const u32* __restrict__ allowed) {
    pdl_prologue();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= vocab) return;
    if (((allowed[i >> 5] >> (i & 31)) & 1u) == 0u) {
        logits[(u64)row * vocab + i] = -INFINITY;
    }
}
