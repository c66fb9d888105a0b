//! Log-probabilities of sampled tokens (OpenAI `logprobs` / `top_logprobs`), under the model's
//! raw distribution: the log-softmax of the row as the forward produced it, before penalties,
//! the constraint mask, temperature and the sampler (what OpenAI reports and vLLM's default
//! `raw_logprobs`). On the device: the row's log-sum-exp and its top k are read before the row
//! is changed; the sampled token's own logit is read after sampling, from the row (the mask
//! never touches an allowed token) or, for a token the sampler penalized, from the value saved
//! just before the penalty. Nothing of the row but a few floats crosses to the host.

use orcd_device::{Device, DeviceInfo, EngineError, SeqInput, SeqSlot};

use crate::job::TokenLogprob;

/// What is read of a row before anything changes it.
pub(crate) struct RawRow {
    /// log(sum(exp(logits))).
    lse: f32,
    /// The k best (id, raw logit), best first.
    top: Vec<(u32, f32)>,
}

impl RawRow {
    /// Read `row`'s normaliser and its `k` best logits (before the mask and the sampler).
    pub fn read(device: &dyn Device, row: usize, k: u32) -> Result<RawRow, EngineError> {
        let lse = device.logits_logsumexp(row)?;
        let top = if k == 0 {
            Vec::new()
        } else {
            device.logits_top_k(row, k as usize)?
        };
        Ok(RawRow { lse, top })
    }

    /// The entry of `token`, sampled from `row`; `saved` are raw logits kept from before the
    /// sampler's penalties. `offset`: where the token's text starts in the output.
    pub fn entry(
        &self,
        device: &dyn Device,
        row: usize,
        token: u32,
        saved: &[(u32, f32)],
        offset: usize,
    ) -> Result<TokenLogprob, EngineError> {
        let known = self
            .top
            .iter()
            .chain(saved)
            .find(|(id, _)| *id == token)
            .map(|&(_, v)| v);
        let raw = match known {
            Some(v) => v,
            None => device.logits_gather(row, &[token])?[0],
        };
        Ok(TokenLogprob {
            id: token,
            logprob: raw - self.lse,
            top: self.top.iter().map(|&(id, v)| (id, v - self.lse)).collect(),
            offset: offset as u32,
        })
    }
}

/// The device as a sampler sees it while log-probabilities are wanted: every call goes
/// through, and before a penalty changes logits of `row` their raw values are saved.
pub(crate) struct SavingPenalized<'a> {
    pub inner: &'a mut dyn Device,
    pub row: usize,
    /// (id, raw logit) of every token a penalty touched, first value only.
    pub saved: Vec<(u32, f32)>,
}

impl Device for SavingPenalized<'_> {
    fn info(&self) -> DeviceInfo {
        self.inner.info()
    }
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }
    fn context_length(&self) -> usize {
        self.inner.context_length()
    }
    fn alloc_seq(&mut self, max_tokens: usize) -> Result<SeqSlot, EngineError> {
        self.inner.alloc_seq(max_tokens)
    }
    fn free_seq(&mut self, slot: SeqSlot) {
        self.inner.free_seq(slot)
    }
    fn free_kv_tokens(&self) -> usize {
        self.inner.free_kv_tokens()
    }
    fn copy_kv_prefix(
        &mut self,
        from: SeqSlot,
        to: SeqSlot,
        n_tokens: usize,
    ) -> Result<(), EngineError> {
        self.inner.copy_kv_prefix(from, to, n_tokens)
    }
    fn kv_prefix_kept(&self, from: SeqSlot, n_tokens: usize, to_max_tokens: usize) -> bool {
        self.inner.kv_prefix_kept(from, n_tokens, to_max_tokens)
    }
    fn forward(&mut self, batch: &[SeqInput<'_>]) -> Result<usize, EngineError> {
        self.inner.forward(batch)
    }
    fn logits_argmax(&self, row: usize) -> Result<(u32, f32), EngineError> {
        self.inner.logits_argmax(row)
    }
    fn logits_top_k(&self, row: usize, k: usize) -> Result<Vec<(u32, f32)>, EngineError> {
        self.inner.logits_top_k(row, k)
    }
    fn logits_row(&self, row: usize) -> Result<Vec<f32>, EngineError> {
        self.inner.logits_row(row)
    }
    fn logits_penalize(
        &mut self,
        row: usize,
        history: &[u32],
        repeat: f32,
        frequency: f32,
        presence: f32,
    ) -> Result<(), EngineError> {
        if row == self.row {
            let mut fresh: Vec<u32> = history
                .iter()
                .copied()
                .filter(|t| !self.saved.iter().any(|(id, _)| id == t))
                .collect();
            fresh.sort_unstable();
            fresh.dedup();
            let values = self.inner.logits_gather(row, &fresh)?;
            self.saved.extend(fresh.into_iter().zip(values));
        }
        self.inner
            .logits_penalize(row, history, repeat, frequency, presence)
    }
    fn logits_mask(&mut self, row: usize, allowed: &[u32]) -> Result<(), EngineError> {
        self.inner.logits_mask(row, allowed)
    }
    fn logits_logsumexp(&self, row: usize) -> Result<f32, EngineError> {
        self.inner.logits_logsumexp(row)
    }
    fn logits_gather(&self, row: usize, ids: &[u32]) -> Result<Vec<f32>, EngineError> {
        self.inner.logits_gather(row, ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orcd_device::LogitsWanted;
    use orcd_device::host_logits;
    use orcd_device::mock::MockDevice;

    /// A mock device with one logits row after a 3-token prompt.
    fn device() -> MockDevice {
        let mut d = MockDevice::new(300, 5).unwrap();
        let slot = d.alloc_seq(8).unwrap();
        let tokens = [3, 1, 4];
        d.forward(&[SeqInput {
            slot,
            start_pos: 0,
            tokens: &tokens,
            logits: LogitsWanted::Last,
        }])
        .unwrap();
        d
    }

    #[test]
    fn a_penalized_token_reports_its_raw_logprob() {
        let mut d = device();
        let raw = d.logits_row(0).unwrap();
        let lse = host_logits::logsumexp(&raw);
        let before = RawRow::read(&d, 0, 3).unwrap();
        assert_eq!(before.top.len(), 3);
        // The best token is penalized hard, as a sampler would, then "sampled".
        let best = before.top[0].0;
        let other = if best == 7 { 8 } else { 7 };
        let mut saving = SavingPenalized {
            inner: &mut d,
            row: 0,
            saved: Vec::new(),
        };
        saving
            .logits_penalize(0, &[best, other, other], 1.5, 1.0, 5.0)
            .unwrap();
        let saved = std::mem::take(&mut saving.saved);
        assert_eq!(saved.len(), 2);
        let after = d.logits_row(0).unwrap();
        assert_ne!(
            after[other as usize], raw[other as usize],
            "the penalty applied"
        );
        let plain = (0..300).find(|t| ![best, other].contains(t)).unwrap();
        for token in [best, other, plain] {
            let e = before.entry(&d, 0, token, &saved, 0).unwrap();
            assert_eq!(e.logprob, raw[token as usize] - lse, "token {token}");
        }
        // Top entries are raw log-probabilities, best first, summing below 1 in probability.
        let e = before.entry(&d, 0, best, &saved, 0).unwrap();
        assert_eq!(e.top[0], (best, raw[best as usize] - lse));
        assert!(e.top.windows(2).all(|w| w[0].1 >= w[1].1));
        let p: f32 = e.top.iter().map(|(_, lp)| lp.exp()).sum();
        assert!(p < 1.0 + 1e-6);
    }
}
