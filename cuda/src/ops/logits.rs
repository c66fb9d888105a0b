//! Argmax, top-k and penalties on logits rows kept on the GPU (`logits.cu`).

use cudarc::driver::result;
use orcd_engine::EngineError;

use super::{Ops, blocks, int};
use crate::driver::check;
use crate::kernels::{Arg, launch, shape};

impl Ops<'_> {
    /// out[0] = best id, out[1] = its logit's bits.  logits: (rows, vocab) f32;  out: 8 u32
    /// (the result, then the kernel's 64-bit key accumulator and block counter, cleared here).
    pub fn argmax(
        &self,
        logits: u64,
        row: usize,
        vocab: usize,
        out: u64,
    ) -> Result<(), EngineError> {
        // SAFETY: `out` has 8 u32; bytes 8..20 are the kernel's accumulator and counter.
        check(
            unsafe { result::memset_d8_async(out + 8, 0, 12, self.gpu.stream()) },
            "cuMemsetD8Async(argmax state)",
        )?;
        let f = self.k.get("argmax_f32")?;
        // About 8 entries per thread: 152k entries take ~75 blocks.
        let grid = blocks(vocab, shape::ARGMAX_THREADS * 8).clamp(1, 1024);
        launch(
            self.gpu,
            f,
            (grid, 1, 1),
            (shape::ARGMAX_THREADS, 1, 1),
            &[
                Arg::Ptr(logits),
                Arg::I32(int(row, "row")?),
                Arg::I32(int(vocab, "vocab")?),
                Arg::Ptr(out),
            ],
            "argmax_f32",
        )
    }

    /// The k best entries of a row, in id order: ids: (k) u32, vals: (k) f32, count: 1 u32.
    pub fn top_k(
        &self,
        logits: u64,
        row: usize,
        vocab: usize,
        k: usize,
        ids: u64,
        vals: u64,
        count: u64,
    ) -> Result<(), EngineError> {
        let f = self.k.get("top_k_f32")?;
        launch(
            self.gpu,
            f,
            (1, 1, 1),
            (shape::LOGITS_THREADS, 1, 1),
            &[
                Arg::Ptr(logits),
                Arg::I32(int(row, "row")?),
                Arg::I32(int(vocab, "vocab")?),
                Arg::I32(int(k, "k")?),
                Arg::Ptr(ids),
                Arg::Ptr(vals),
                Arg::Ptr(count),
            ],
            "top_k_f32",
        )
    }

    /// Penalties for n distinct ids (each < vocab) seen counts[j] times.
    /// ids, counts: (n) u32.
    pub fn penalize(
        &self,
        logits: u64,
        row: usize,
        vocab: usize,
        ids: u64,
        counts: u64,
        n: usize,
        repeat: f32,
        frequency: f32,
        presence: f32,
    ) -> Result<(), EngineError> {
        let f = self.k.get("penalize_f32")?;
        launch(
            self.gpu,
            f,
            (blocks(n, shape::LOGITS_THREADS), 1, 1),
            (shape::LOGITS_THREADS, 1, 1),
            &[
                Arg::Ptr(logits),
                Arg::I32(int(row, "row")?),
                Arg::I32(int(vocab, "vocab")?),
                Arg::Ptr(ids),
                Arg::Ptr(counts),
                Arg::I32(int(n, "n")?),
                Arg::F32(repeat),
                Arg::F32(frequency),
                Arg::F32(presence),
            ],
            "penalize_f32",
        )
    }
}
