//! Argmax, top-k and penalties on logits rows kept on the GPU (`logits.cu`), and the
//! constrained-decoding mask (`mask.cu`).

use cudarc::driver::result;

use super::{Ops, blocks, int};
use crate::driver::check;
use crate::error::CudaResult;
use crate::kernels::{Arg, launch, shape};
use crate::operand::{LogitsRow, Penalties, TopKOut};

impl Ops<'_> {
    /// out[0] = best id, out[1] = its logit's bits.  logits: (rows, vocab) f32;  out: 8 u32
    /// (the result, then the kernel's 64-bit key accumulator and block counter, cleared here).
    pub fn argmax(&self, row: LogitsRow, out: u64) -> CudaResult<()> {
        let LogitsRow { logits, row, vocab } = row;
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

    /// The k best entries of a row, in id order, into `out`.
    pub fn top_k(&self, row: LogitsRow, k: usize, out: TopKOut) -> CudaResult<()> {
        let LogitsRow { logits, row, vocab } = row;
        let TopKOut { ids, vals, count } = out;
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

    /// Every token of the row not in `allowed` gets -inf (`mask.cu`).
    /// allowed: (ceil(vocab / 32)) u32 bitset words on the device.
    pub fn mask(&self, row: LogitsRow, allowed: u64) -> CudaResult<()> {
        let LogitsRow { logits, row, vocab } = row;
        let f = self.k.get("mask_logits_f32")?;
        launch(
            self.gpu,
            f,
            (blocks(vocab, shape::MASK_THREADS), 1, 1),
            (shape::MASK_THREADS, 1, 1),
            &[
                Arg::Ptr(logits),
                Arg::I32(int(row, "row")?),
                Arg::I32(int(vocab, "vocab")?),
                Arg::Ptr(allowed),
            ],
            "mask_logits_f32",
        )
    }

    /// Penalties for n distinct ids (each < vocab) seen counts[j] times.
    /// ids, counts: (n) u32.
    pub fn penalize(
        &self,
        row: LogitsRow,
        ids: u64,
        counts: u64,
        n: usize,
        p: Penalties,
    ) -> CudaResult<()> {
        let LogitsRow { logits, row, vocab } = row;
        let Penalties {
            repeat,
            frequency,
            presence,
        } = p;
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

    /// log(sum(exp)) of a row into `out` (1 f32 on the device).
    pub fn logsumexp(&self, row: LogitsRow, out: u64) -> CudaResult<()> {
        let LogitsRow { logits, row, vocab } = row;
        let f = self.k.get("logsumexp_f32")?;
        launch(
            self.gpu,
            f,
            (1, 1, 1),
            (shape::LOGITS_THREADS, 1, 1),
            &[
                Arg::Ptr(logits),
                Arg::I32(int(row, "row")?),
                Arg::I32(int(vocab, "vocab")?),
                Arg::Ptr(out),
            ],
            "logsumexp_f32",
        )
    }

    /// The row's logits of n ids (each < vocab) into `out`.
    /// ids: (n) u32, out: (n) f32, on the device.
    pub fn gather(&self, row: LogitsRow, ids: u64, n: usize, out: u64) -> CudaResult<()> {
        let LogitsRow { logits, row, vocab } = row;
        let f = self.k.get("gather_f32")?;
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
                Arg::I32(int(n, "n")?),
                Arg::Ptr(out),
            ],
            "gather_f32",
        )
    }
}
