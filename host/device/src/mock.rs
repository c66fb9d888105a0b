//! A model-free [`Device`] for the plugin conformance kit, host tests and benchmarks.
//!
//! `MockDevice` keeps KV-cache slots (only the token ids) and, for each requested logits row,
//! computes a deterministic pseudo-random row from `(seed, tokens of the sequence so far)`: the
//! same seed and the same token sequence give the same row, on every machine. Rows are finite
//! by default; [`MockOptions`] can inject NaN or `-inf` entries at chosen ids to check how
//! samplers treat them. The logits operations are the host reference implementations of
//! [`crate::host_logits`], so the whole request path (handler, tokenizer, sampler,
//! streaming) runs without a model.

use std::collections::HashMap;

use orcd_common::SplitMix64;

use crate::host_logits;
use crate::{Device, DeviceInfo, EngineError, LogitsWanted, SeqInput, SeqSlot};

/// Largest vocabulary the mock accepts (Gemma 3's 262144).
pub const MOCK_MAX_VOCAB: usize = 262_144;

/// Knobs of a [`MockDevice`].
#[derive(Clone, Debug)]
pub struct MockOptions {
    /// Longest sequence one slot can hold.
    pub context_length: usize,
    /// KV-cache budget in tokens, shared by all slots.
    pub kv_tokens: usize,
    /// Half-width of the logits range: finite logits lie in `[-spread, spread)`.
    pub spread: f32,
    /// Token ids whose logit is NaN in every row.
    pub nan_ids: Vec<u32>,
    /// Token ids whose logit is `-inf` in every row.
    pub neg_inf_ids: Vec<u32>,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            context_length: 4096,
            kv_tokens: 4096 * 16,
            spread: 8.0,
            nan_ids: Vec::new(),
            neg_inf_ids: Vec::new(),
        }
    }
}

/// One KV-cache slot: the tokens cached so far and a running hash after each of them.
#[derive(Debug)]
struct MockSlot {
    /// Tokens reserved for this slot (its `max_tokens`).
    reserved: usize,
    /// `prefix_hash[p]` hashes the seed and tokens `0..=p`; len = cached tokens.
    prefix_hash: Vec<u64>,
}

/// A deterministic stand-in for a model on a device.
#[derive(Debug)]
pub struct MockDevice {
    vocab_size: usize,
    seed: u64,
    opts: MockOptions,
    slots: HashMap<SeqSlot, MockSlot>,
    next_slot: u32,
    /// KV tokens reserved by live slots.
    reserved: usize,
    /// Logits rows of the last step, in batch order; each row has `vocab_size` entries.
    rows: Vec<Vec<f32>>,
}

impl MockDevice {
    /// A mock with default options. Fails when `vocab_size` is 0 or above [`MOCK_MAX_VOCAB`].
    pub fn new(vocab_size: usize, seed: u64) -> Result<Self, EngineError> {
        Self::with_options(vocab_size, seed, MockOptions::default())
    }

    /// A mock with explicit options; injected ids must lie inside the vocabulary.
    pub fn with_options(
        vocab_size: usize,
        seed: u64,
        opts: MockOptions,
    ) -> Result<Self, EngineError> {
        if vocab_size == 0 || vocab_size > MOCK_MAX_VOCAB {
            return Err(EngineError::InvalidInput(format!(
                "mock vocab size {vocab_size} outside 1..={MOCK_MAX_VOCAB}"
            )));
        }
        if opts.context_length == 0 {
            return Err(EngineError::InvalidInput(
                "mock context length must be positive".into(),
            ));
        }
        if !(opts.spread.is_finite() && opts.spread > 0.0) {
            return Err(EngineError::InvalidInput(format!(
                "mock spread {} must be finite and positive",
                opts.spread
            )));
        }
        if let Some(&bad) = opts
            .nan_ids
            .iter()
            .chain(&opts.neg_inf_ids)
            .find(|&&id| id as usize >= vocab_size)
        {
            return Err(EngineError::InvalidInput(format!(
                "injected token id {bad} outside the vocabulary of {vocab_size}"
            )));
        }
        Ok(MockDevice {
            vocab_size,
            seed,
            opts,
            slots: HashMap::new(),
            next_slot: 0,
            reserved: 0,
            rows: Vec::new(),
        })
    }

    /// The row the mock produces after a sequence whose running hash is `h`.
    fn make_row(&self, h: u64) -> Vec<f32> {
        let scale = 2.0 * self.opts.spread / (1u64 << 24) as f32;
        let mut row: Vec<f32> = (0..self.vocab_size as u64)
            .map(|i| {
                let bits = SplitMix64::hash(h ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 40;
                bits as f32 * scale - self.opts.spread
            })
            .collect();
        for &id in &self.opts.nan_ids {
            row[id as usize] = f32::NAN;
        }
        for &id in &self.opts.neg_inf_ids {
            row[id as usize] = f32::NEG_INFINITY;
        }
        row
    }

    fn row(&self, row: usize) -> Result<&[f32], EngineError> {
        self.rows.get(row).map(Vec::as_slice).ok_or_else(|| {
            EngineError::InvalidInput(format!(
                "logits row {row} out of range ({} rows)",
                self.rows.len()
            ))
        })
    }

    /// Check one sequence of a batch against its slot without changing anything.
    fn check_input(&self, input: &SeqInput<'_>) -> Result<(), EngineError> {
        let slot = self.slots.get(&input.slot).ok_or_else(|| {
            EngineError::InvalidInput(format!("unknown KV slot {}", input.slot.0))
        })?;
        let cached = slot.prefix_hash.len();
        if input.start_pos != cached {
            return Err(EngineError::InvalidInput(format!(
                "slot {}: start position {} but {cached} tokens cached",
                input.slot.0, input.start_pos
            )));
        }
        let end = cached + input.tokens.len();
        if end > slot.reserved.min(self.opts.context_length) {
            return Err(EngineError::InvalidInput(format!(
                "slot {}: {end} tokens exceed its reservation of {} (context {})",
                input.slot.0, slot.reserved, self.opts.context_length
            )));
        }
        if let Some(&bad) = input
            .tokens
            .iter()
            .find(|&&t| t as usize >= self.vocab_size)
        {
            return Err(EngineError::InvalidInput(format!(
                "token id {bad} outside the vocabulary of {}",
                self.vocab_size
            )));
        }
        if input.logits != LogitsWanted::None && input.tokens.is_empty() {
            return Err(EngineError::InvalidInput(format!(
                "slot {}: logits wanted for an empty run of tokens",
                input.slot.0
            )));
        }
        Ok(())
    }
}

impl Device for MockDevice {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            backend: "mock",
            name: format!("mock (vocab {}, seed {})", self.vocab_size, self.seed),
            ..DeviceInfo::default()
        }
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn context_length(&self) -> usize {
        self.opts.context_length
    }

    fn alloc_seq(&mut self, max_tokens: usize) -> Result<SeqSlot, EngineError> {
        let free = self.free_kv_tokens();
        if max_tokens > free {
            return Err(EngineError::KvCacheExhausted {
                needed_tokens: max_tokens,
                free_tokens: free,
            });
        }
        let slot = SeqSlot(self.next_slot);
        self.next_slot = self.next_slot.wrapping_add(1);
        self.reserved += max_tokens;
        self.slots.insert(
            slot,
            MockSlot {
                reserved: max_tokens,
                prefix_hash: Vec::new(),
            },
        );
        Ok(slot)
    }

    fn free_seq(&mut self, slot: SeqSlot) {
        if let Some(s) = self.slots.remove(&slot) {
            self.reserved -= s.reserved;
        }
    }

    fn free_kv_tokens(&self) -> usize {
        self.opts.kv_tokens.saturating_sub(self.reserved)
    }

    fn copy_kv_prefix(
        &mut self,
        from: SeqSlot,
        to: SeqSlot,
        n_tokens: usize,
    ) -> Result<(), EngineError> {
        crate::validate_prefix_copy(from, to, n_tokens, |s| {
            self.slots.get(&s).map(|m| crate::SlotExtent {
                len: m.prefix_hash.len(),
                max_tokens: m.reserved,
            })
        })?;
        // The running hashes after each token are the mock's whole "KV cache".
        let prefix = self.slots[&from].prefix_hash[..n_tokens].to_vec();
        if let Some(dst) = self.slots.get_mut(&to) {
            dst.prefix_hash = prefix;
        }
        Ok(())
    }

    fn kv_prefix_kept(&self, from: SeqSlot, n_tokens: usize, _to_max_tokens: usize) -> bool {
        self.slots
            .get(&from)
            .is_some_and(|s| n_tokens <= s.prefix_hash.len())
    }

    fn forward(&mut self, batch: &[SeqInput<'_>]) -> Result<usize, EngineError> {
        // Validate the whole batch first so a bad sequence leaves every slot unchanged.
        for (i, input) in batch.iter().enumerate() {
            self.check_input(input)?;
            if batch[..i].iter().any(|b| b.slot == input.slot) {
                return Err(EngineError::InvalidInput(format!(
                    "slot {} appears twice in one batch",
                    input.slot.0
                )));
            }
        }
        let mut wanted: Vec<u64> = Vec::new();
        for input in batch {
            let seed = self.seed;
            let slot = self.slots.get_mut(&input.slot).expect("slot checked above");
            for &t in input.tokens {
                let prev = slot.prefix_hash.last().copied().unwrap_or(seed);
                slot.prefix_hash
                    .push(SplitMix64::hash(prev ^ (u64::from(t) + 1)));
            }
            let hashes = &slot.prefix_hash[slot.prefix_hash.len() - input.tokens.len()..];
            match input.logits {
                LogitsWanted::None => {}
                LogitsWanted::Last => wanted.extend(hashes.last()),
                LogitsWanted::All => wanted.extend_from_slice(hashes),
            }
        }
        self.rows = wanted.iter().map(|&h| self.make_row(h)).collect();
        Ok(self.rows.len())
    }

    fn logits_logsumexp(&self, row: usize) -> Result<f32, EngineError> {
        Ok(host_logits::logsumexp(self.row(row)?))
    }

    fn logits_gather(&self, row: usize, ids: &[u32]) -> Result<Vec<f32>, EngineError> {
        host_logits::gather(self.row(row)?, ids).map_err(|id| {
            EngineError::InvalidInput(format!("token id {id} is outside the vocabulary"))
        })
    }

    fn logits_argmax(&self, row: usize) -> Result<(u32, f32), EngineError> {
        Ok(host_logits::argmax(self.row(row)?))
    }

    fn logits_top_k(&self, row: usize, k: usize) -> Result<Vec<(u32, f32)>, EngineError> {
        Ok(host_logits::top_k(self.row(row)?, k))
    }

    fn logits_row(&self, row: usize) -> Result<Vec<f32>, EngineError> {
        Ok(self.row(row)?.to_vec())
    }

    fn logits_penalize(
        &mut self,
        row: usize,
        history: &[u32],
        repeat: f32,
        frequency: f32,
        presence: f32,
    ) -> Result<(), EngineError> {
        self.row(row)?;
        host_logits::penalize(&mut self.rows[row], history, repeat, frequency, presence);
        Ok(())
    }

    fn logits_mask(&mut self, row: usize, allowed: &[u32]) -> Result<(), EngineError> {
        let vocab = self.row(row)?.len();
        if !host_logits::mask_fits(vocab, allowed) {
            return Err(EngineError::InvalidInput(format!(
                "a mask of {} words for a vocabulary of {vocab}",
                allowed.len()
            )));
        }
        host_logits::mask(&mut self.rows[row], allowed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(dev: &mut MockDevice, slot: SeqSlot, pos: usize, tokens: &[u32]) -> Vec<f32> {
        let n = dev
            .forward(&[SeqInput {
                slot,
                start_pos: pos,
                tokens,
                logits: LogitsWanted::Last,
            }])
            .unwrap();
        assert_eq!(n, 1);
        dev.logits_row(0).unwrap()
    }

    #[test]
    fn a_copied_prefix_continues_like_the_source() {
        let mut d = MockDevice::new(1000, 7).unwrap();
        let a = d.alloc_seq(16).unwrap();
        step(&mut d, a, 0, &[1, 2, 3, 4]);
        let want = step(&mut d, a, 4, &[5]);
        let b = d.alloc_seq(8).unwrap();
        assert!(d.kv_prefix_kept(a, 5, 8) && !d.kv_prefix_kept(a, 6, 8));
        d.copy_kv_prefix(a, b, 4).unwrap();
        assert_eq!(step(&mut d, b, 4, &[5]), want);
        let c = d.alloc_seq(2).unwrap();
        assert!(d.copy_kv_prefix(a, c, 3).is_err(), "longer than the slot");
        assert!(d.copy_kv_prefix(a, b, 1).is_err(), "the slot is not empty");
    }

    #[test]
    fn rows_depend_on_seed_and_tokens_only() {
        let mut a = MockDevice::new(1000, 7).unwrap();
        let mut b = MockDevice::new(1000, 7).unwrap();
        let sa = a.alloc_seq(16).unwrap();
        let _other = b.alloc_seq(4).unwrap();
        let sb = b.alloc_seq(16).unwrap();
        // One prefill of three tokens equals three single-token steps.
        let ra = step(&mut a, sa, 0, &[1, 2, 3]);
        step(&mut b, sb, 0, &[1]);
        step(&mut b, sb, 1, &[2]);
        let rb = step(&mut b, sb, 2, &[3]);
        assert_eq!(ra, rb);
        assert!(ra.iter().all(|v| v.is_finite() && v.abs() <= 8.0));
        let mut c = MockDevice::new(1000, 8).unwrap();
        let sc = c.alloc_seq(16).unwrap();
        assert_ne!(step(&mut c, sc, 0, &[1, 2, 3]), ra);
        let rd = step(&mut a, sa, 3, &[4]);
        assert_ne!(rd, ra);
    }

    #[test]
    fn all_rows_match_last_rows() {
        let mut a = MockDevice::new(500, 1).unwrap();
        let s = a.alloc_seq(8).unwrap();
        let n = a
            .forward(&[SeqInput {
                slot: s,
                start_pos: 0,
                tokens: &[5, 6],
                logits: LogitsWanted::All,
            }])
            .unwrap();
        assert_eq!(n, 2);
        let first = a.logits_row(0).unwrap();
        let mut b = MockDevice::new(500, 1).unwrap();
        let t = b.alloc_seq(8).unwrap();
        assert_eq!(step(&mut b, t, 0, &[5]), first);
    }

    #[test]
    fn injected_values_and_operations() {
        let opts = MockOptions {
            nan_ids: vec![3],
            neg_inf_ids: vec![4],
            ..MockOptions::default()
        };
        let mut d = MockDevice::with_options(64, 2, opts).unwrap();
        let s = d.alloc_seq(4).unwrap();
        let row = step(&mut d, s, 0, &[1]);
        assert!(row[3].is_nan());
        assert_eq!(row[4], f32::NEG_INFINITY);
        let (best, logit) = d.logits_argmax(0).unwrap();
        assert_eq!((best, logit), host_logits::argmax(&row));
        assert_eq!(d.logits_top_k(0, 5).unwrap(), host_logits::top_k(&row, 5));
        d.logits_penalize(0, &[best, best], 2.0, 0.5, 0.25).unwrap();
        let after = d.logits_row(0).unwrap();
        assert!(after[best as usize] < logit);
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        assert!(MockDevice::new(0, 0).is_err());
        assert!(MockDevice::new(MOCK_MAX_VOCAB + 1, 0).is_err());
        let opts = MockOptions {
            nan_ids: vec![10],
            ..MockOptions::default()
        };
        assert!(MockDevice::with_options(10, 0, opts).is_err());
        let mut d = MockDevice::new(10, 0).unwrap();
        let s = d.alloc_seq(2).unwrap();
        let bad = |tokens: &'static [u32], pos| SeqInput {
            slot: s,
            start_pos: pos,
            tokens,
            logits: LogitsWanted::Last,
        };
        assert!(d.forward(&[bad(&[10], 0)]).is_err());
        assert!(d.forward(&[bad(&[1], 1)]).is_err());
        assert!(d.forward(&[bad(&[1, 2, 3], 0)]).is_err());
        assert!(d.logits_row(0).is_err());
        assert!(matches!(
            d.alloc_seq(1_000_000),
            Err(EngineError::KvCacheExhausted { .. })
        ));
        d.free_seq(s);
        assert_eq!(d.free_kv_tokens(), MockOptions::default().kv_tokens);
    }
}
