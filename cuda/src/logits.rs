//! The logits operations of [`CudaBackend`] (the `logits_*` of [`orcd_device::Device`]): the
//! last forward's logits stay on the GPU; argmax, top-k and penalties run kernels on a row and
//! copy back a few bytes.

use std::collections::BTreeMap;

use cudarc::driver::result;
use orcd_device::EngineError;

use crate::backend::{CudaBackend, invalid};
use crate::driver::check;
use crate::error::CudaResult;
use crate::operand::{LogitsRow, Penalties, TopKOut};

impl CudaBackend {
    fn check_row(&self, row: usize) -> Result<(), EngineError> {
        if row >= self.n_rows {
            return Err(invalid(format!(
                "logits row {row} of a step that produced {}",
                self.n_rows
            )));
        }
        Ok(())
    }

    /// Row `row` of the logits buffer.
    fn row(&self, row: usize) -> LogitsRow {
        LogitsRow {
            logits: self.scratch.logits,
            row,
            vocab: self.config.vocab_size,
        }
    }

    /// The best id of a row and its logit.
    pub(crate) fn argmax_of_row(&self, row: usize) -> Result<(u32, f32), EngineError> {
        self.check_row(row)?;
        self.gpu.bind()?;
        let s = &self.scratch;
        self.ops().argmax(self.row(row), s.argmax)?;
        let mut out = [0u32; 2];
        self.download(s.argmax, &mut out)?;
        Ok((out[0], f32::from_bits(out[1])))
    }

    /// The k best entries of a row, best first (ties by id).
    pub(crate) fn top_k_of_row(
        &self,
        row: usize,
        k: usize,
    ) -> Result<Vec<(u32, f32)>, EngineError> {
        self.check_row(row)?;
        let vocab = self.config.vocab_size;
        let k = k.min(vocab);
        if k == 0 {
            return Ok(Vec::new());
        }
        self.gpu.bind()?;
        let s = &self.scratch;
        let out = TopKOut {
            ids: s.topk_ids,
            vals: s.topk_vals,
            count: s.topk_count,
        };
        self.ops().top_k(self.row(row), k, out)?;
        let mut count = [0u32; 1];
        self.download(s.topk_count, &mut count)?;
        let n = (count[0] as usize).min(k);
        let mut ids = vec![0u32; n];
        let mut vals = vec![0f32; n];
        if n > 0 {
            self.download(s.topk_ids, &mut ids)?;
            self.download(s.topk_vals, &mut vals)?;
        }
        let mut out: Vec<(u32, f32)> = ids.into_iter().zip(vals).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// A whole row, copied to the host.
    pub(crate) fn copy_row(&self, row: usize) -> Result<Vec<f32>, EngineError> {
        self.check_row(row)?;
        self.gpu.bind()?;
        let vocab = self.config.vocab_size;
        let mut out = vec![0f32; vocab];
        self.download(self.scratch.logits + (row * vocab * 4) as u64, &mut out)?;
        Ok(out)
    }

    /// The repetition, frequency and presence penalties of `history` on a row.
    pub(crate) fn penalize_row(
        &mut self,
        row: usize,
        history: &[u32],
        p: Penalties,
    ) -> Result<(), EngineError> {
        self.check_row(row)?;
        self.gpu.bind()?;
        let vocab = self.config.vocab_size;
        let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
        for &t in history {
            if (t as usize) < vocab {
                *counts.entry(t).or_default() += 1;
            }
        }
        if counts.is_empty() {
            return Ok(());
        }
        let ids: Vec<u32> = counts.keys().copied().collect();
        let cnt: Vec<u32> = counts.values().copied().collect();
        let s = &self.scratch;
        self.upload(s.pen_ids, &ids)?;
        self.upload(s.pen_counts, &cnt)?;
        Ok(self
            .ops()
            .penalize(self.row(row), s.pen_ids, s.pen_counts, ids.len(), p)?)
    }

    /// Keep only the tokens of `allowed` in a row (the others become -inf on the GPU):
    /// the bitset (vocab / 32 words, 16 KiB at 128k tokens) goes up, no row comes down.
    pub(crate) fn mask_row(&mut self, row: usize, allowed: &[u32]) -> Result<(), EngineError> {
        self.check_row(row)?;
        let vocab = self.config.vocab_size;
        if !orcd_device::host_logits::mask_fits(vocab, allowed) {
            return Err(invalid(format!(
                "a mask of {} words for a vocabulary of {vocab}",
                allowed.len()
            )));
        }
        self.gpu.bind()?;
        self.upload(self.scratch.mask, allowed)?;
        Ok(self.ops().mask(self.row(row), self.scratch.mask)?)
    }

    /// log(sum(exp)) of a row: one f32 comes back.
    pub(crate) fn logsumexp_of_row(&self, row: usize) -> Result<f32, EngineError> {
        self.check_row(row)?;
        self.gpu.bind()?;
        self.ops().logsumexp(self.row(row), self.scratch.lse)?;
        let mut out = [0f32; 1];
        self.download(self.scratch.lse, &mut out)?;
        Ok(out[0])
    }

    /// The logits of `ids` in a row: the ids go up, their values come back.
    pub(crate) fn gather_of_row(&self, row: usize, ids: &[u32]) -> Result<Vec<f32>, EngineError> {
        self.check_row(row)?;
        let vocab = self.config.vocab_size;
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(invalid(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        if ids.len() > vocab {
            return Err(invalid(format!(
                "{} ids gathered from a row of {vocab}",
                ids.len()
            )));
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.gpu.bind()?;
        let s = &self.scratch;
        self.upload(s.gather_ids, ids)?;
        self.ops()
            .gather(self.row(row), s.gather_ids, ids.len(), s.gather_vals)?;
        let mut out = vec![0f32; ids.len()];
        self.download(s.gather_vals, &mut out)?;
        Ok(out)
    }

    /// Copy `dst.len()` values from device address `src` after the queued work.
    fn download<T: Copy>(&self, src: u64, dst: &mut [T]) -> CudaResult<()> {
        self.gpu.synchronize()?;
        // SAFETY: every caller passes an address inside the scratch with room for `dst`.
        check(
            unsafe { result::memcpy_dtoh_sync(dst, src) },
            "cuMemcpyDtoH",
        )
    }

    /// Copy `src` to device address `dst` (inside the scratch) after the queued work.
    fn upload(&self, dst: u64, src: &[u32]) -> CudaResult<()> {
        self.gpu.synchronize()?;
        // SAFETY: `dst` is a scratch array with room for `src`: the penalty arrays hold
        // `vocab` u32 (`src` has distinct ids < vocab), the mask `ceil(vocab / 32)` (checked),
        // the gather ids `vocab` (at most `vocab` ids, checked).
        check(
            unsafe { result::memcpy_htod_sync(dst, src) },
            "cuMemcpyHtoD(logits inputs)",
        )
    }
}
