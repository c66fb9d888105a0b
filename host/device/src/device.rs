//! The interface every backend implements (CPU reference, CUDA, and the mock device of the
//! plugin conformance kit).
//!
//! A step takes a *batch of sequences*: each sequence contributes a run of new tokens (a prefill
//! chunk, or one token while decoding) that is appended to its KV-cache slot. The backend computes
//! the whole batch in one pass (weights are read once for all tokens) and keeps the requested
//! logits rows on the device. Samplers then ask for what they need through the `logits_*`
//! operations (argmax, top-k, penalties, or the full row), so on the GPU only a few bytes come
//! back per token.

use crate::EngineError;

/// A sequence's KV-cache slot on the device.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqSlot(pub u32);

/// Which logits a step produces for one sequence.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LogitsWanted {
    /// None (a prefill chunk that is not the prompt's last).
    None,
    /// The logits after the sequence's last new token (decode, or the end of a prompt).
    Last,
    /// The logits after every new token (teacher-forced scoring).
    All,
}

/// One sequence's part of a batched step.
#[derive(Clone, Debug)]
pub struct SeqInput<'a> {
    pub slot: SeqSlot,
    /// Position of `tokens[0]` in the sequence; equals the number of tokens already cached.
    pub start_pos: usize,
    /// The new tokens, appended to the slot's KV cache.
    pub tokens: &'a [u32],
    pub logits: LogitsWanted,
}

impl LogitsWanted {
    /// Logits rows a sequence contributing `n_tokens` new tokens produces.
    pub fn rows(self, n_tokens: usize) -> usize {
        match self {
            LogitsWanted::None => 0,
            LogitsWanted::Last => 1,
            LogitsWanted::All => n_tokens,
        }
    }
}

/// What a backend knows of one reserved slot when it checks a batch.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SlotExtent {
    /// Tokens already cached.
    pub len: usize,
    /// Positions reserved for the slot.
    pub max_tokens: usize,
}

/// Check a batch before anything is computed: every slot known and used once, at least one new
/// token each, `start_pos` equal to the cached length, no overflow of the slot's reservation,
/// every token id inside the vocabulary. `slot` looks a slot up in the backend's KV cache.
/// Returns the number of logits rows the step produces.
pub fn validate_batch(
    batch: &[SeqInput<'_>],
    vocab_size: usize,
    slot: impl Fn(SeqSlot) -> Option<SlotExtent>,
) -> Result<usize, EngineError> {
    let invalid = |msg: String| EngineError::InvalidInput(msg);
    let mut seen = std::collections::BTreeSet::new();
    let mut rows = 0usize;
    for seq in batch {
        let id = seq.slot.0;
        if !seen.insert(seq.slot) {
            return Err(invalid(format!("slot {id} appears twice in one batch")));
        }
        let extent = slot(seq.slot).ok_or_else(|| invalid(format!("unknown KV slot {id}")))?;
        if seq.tokens.is_empty() {
            return Err(invalid(format!("slot {id}: no new tokens")));
        }
        if seq.start_pos != extent.len {
            return Err(invalid(format!(
                "slot {id}: start_pos {} but {} tokens are cached",
                seq.start_pos, extent.len
            )));
        }
        if seq.start_pos + seq.tokens.len() > extent.max_tokens {
            return Err(invalid(format!(
                "slot {id}: {} + {} tokens overflow the slot's {} positions",
                seq.start_pos,
                seq.tokens.len(),
                extent.max_tokens
            )));
        }
        if let Some(&t) = seq.tokens.iter().find(|&&t| t as usize >= vocab_size) {
            return Err(invalid(format!(
                "token id {t} is outside the vocabulary of {vocab_size}"
            )));
        }
        rows += seq.logits.rows(seq.tokens.len());
    }
    Ok(rows)
}

/// Check a prefix copy (see [`Device::copy_kv_prefix`]) before anything is copied: both slots
/// known and distinct, `to` empty and reserving at least `n_tokens`, `from` holding at least
/// `n_tokens`, and `n_tokens` positive. `slot` looks a slot up in the backend's KV cache.
pub fn validate_prefix_copy(
    from: SeqSlot,
    to: SeqSlot,
    n_tokens: usize,
    slot: impl Fn(SeqSlot) -> Option<SlotExtent>,
) -> Result<(), EngineError> {
    let invalid = |msg: String| EngineError::InvalidInput(msg);
    let (f, t) = (from.0, to.0);
    if from == to {
        return Err(invalid(format!("KV prefix copy from slot {f} into itself")));
    }
    let src = slot(from).ok_or_else(|| invalid(format!("unknown KV slot {f}")))?;
    let dst = slot(to).ok_or_else(|| invalid(format!("unknown KV slot {t}")))?;
    if n_tokens == 0 {
        return Err(invalid("a KV prefix copy of 0 tokens".into()));
    }
    if n_tokens > src.len {
        return Err(invalid(format!(
            "slot {f}: a prefix of {n_tokens} tokens, but {} are cached",
            src.len
        )));
    }
    if dst.len != 0 {
        return Err(invalid(format!(
            "slot {t}: a prefix copy into a slot that already caches {} tokens",
            dst.len
        )));
    }
    if n_tokens > dst.max_tokens {
        return Err(invalid(format!(
            "slot {t}: a prefix of {n_tokens} tokens overflows its {} positions",
            dst.max_tokens
        )));
    }
    Ok(())
}

/// Static facts about a backend, for `/health` and logs.
#[derive(Clone, Debug, Default)]
pub struct DeviceInfo {
    /// "cpu", "cuda" or "mock".
    pub backend: &'static str,
    /// Human name, e.g. "NVIDIA H100 80GB HBM3" or "CPU (2 threads)".
    pub name: String,
    /// Bytes held for weights, KV cache and scratch (device memory on CUDA, RAM on CPU).
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    pub scratch_bytes: u64,
    /// Compute capability, e.g. "9.0" (CUDA only).
    pub sm: Option<String>,
    pub runtime_version: Option<String>,
}

/// A model loaded on a backend, ready to run batched steps.
///
/// Logits rows are numbered in batch order: for each [`SeqInput`] with `Last` one row, with
/// `All` one row per new token, with `None` nothing. They stay valid until the next `forward`.
pub trait Device: Send {
    fn info(&self) -> DeviceInfo;
    /// Vocabulary size (length of a logits row).
    fn vocab_size(&self) -> usize;
    /// Longest sequence (prompt + generated tokens) one slot can hold.
    fn context_length(&self) -> usize;

    /// Reserve a KV-cache slot for a sequence of up to `max_tokens` tokens.
    /// Fails with [`EngineError::KvCacheExhausted`] when the KV budget cannot hold it; nothing is
    /// left allocated then.
    fn alloc_seq(&mut self, max_tokens: usize) -> Result<SeqSlot, EngineError>;
    /// Release a slot. Releasing an unknown slot is a no-op.
    fn free_seq(&mut self, slot: SeqSlot);
    /// KV-cache tokens not yet reserved by any slot.
    fn free_kv_tokens(&self) -> usize;

    /// Copy the keys and values of positions `0..n_tokens` of slot `from` into slot `to`, which
    /// then caches `n_tokens` positions exactly as if it had computed them itself (same bits):
    /// prefix caching, where a new sequence starting with tokens another slot already holds
    /// copies their KV instead of recomputing it. `from` is left as it is. `to` must be empty
    /// and reserve at least `n_tokens`; `from` must cache at least `n_tokens` and still keep
    /// what `to` needs of them ([`Device::kv_prefix_kept`]). Anything else is an `InvalidInput`
    /// error and copies nothing.
    fn copy_kv_prefix(
        &mut self,
        from: SeqSlot,
        to: SeqSlot,
        n_tokens: usize,
    ) -> Result<(), EngineError>;
    /// Whether slot `from` still keeps everything a new slot of `to_max_tokens` positions needs
    /// of its first `n_tokens` positions (false for an unknown slot or one caching fewer).
    /// A cache that keeps every position always does; a sliding-window layer that keeps only
    /// its window (a ring) has overwritten positions older than its window once the slot grew
    /// past it, and a prefix that ends before them cannot be copied.
    fn kv_prefix_kept(&self, from: SeqSlot, n_tokens: usize, to_max_tokens: usize) -> bool;

    /// Run one step over the batch and return the number of logits rows produced.
    fn forward(&mut self, batch: &[SeqInput<'_>]) -> Result<usize, EngineError>;

    /// The best token of a row and its logit (ties go to the lower id).
    fn logits_argmax(&self, row: usize) -> Result<(u32, f32), EngineError>;
    /// The `k` best tokens of a row with their logits, best first (ties: lower id first).
    fn logits_top_k(&self, row: usize, k: usize) -> Result<Vec<(u32, f32)>, EngineError>;
    /// The whole row, copied to the host.
    fn logits_row(&self, row: usize) -> Result<Vec<f32>, EngineError>;
    /// Apply repetition / presence / frequency penalties in place, llama.cpp's way: for each
    /// distinct token in `history` with count c, a positive logit is divided by `repeat` (a
    /// negative one multiplied), then `c * frequency + presence` is subtracted.
    fn logits_penalize(
        &mut self,
        row: usize,
        history: &[u32],
        repeat: f32,
        frequency: f32,
        presence: f32,
    ) -> Result<(), EngineError>;
    /// Keep only the tokens of `allowed` in a row (constrained decoding): every other logit
    /// becomes -inf in place, on the device, before argmax / top-k / the sampler read it.
    /// `allowed`: `(ceil(vocab / 32),)` words, token `i` allowed when bit `i % 32` of word
    /// `i / 32` is set; another length is an `InvalidInput` error.
    fn logits_mask(&mut self, row: usize, allowed: &[u32]) -> Result<(), EngineError>;
    /// The log of the sum of `exp` over a row (NaN skipped): the log-softmax's normaliser, so
    /// that a token's log-probability is its logit minus this (OpenAI `logprobs`). `-inf` for a
    /// row with no finite entry.
    fn logits_logsumexp(&self, row: usize) -> Result<f32, EngineError>;
    /// The logits of `ids` in a row, in order; an id outside the vocabulary is `InvalidInput`.
    fn logits_gather(&self, row: usize, ids: &[u32]) -> Result<Vec<f32>, EngineError>;
}

/// Reference implementations of the logits operations over a host row; backends that keep
/// logits on the host use them directly, the others test against them.
pub mod host_logits {
    /// Best token and logit; NaN never wins; ties go to the lower id.
    pub fn argmax(row: &[f32]) -> (u32, f32) {
        let mut best = (0u32, f32::NEG_INFINITY);
        let mut found = false;
        for (i, &v) in row.iter().enumerate() {
            if v.is_nan() {
                continue;
            }
            if !found || v > best.1 {
                best = (i as u32, v);
                found = true;
            }
        }
        best
    }

    /// The order of [`top_k`]: higher logit first, then lower id.
    fn best_first(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
        b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
    }

    /// The `k` best of `cands` (no NaN among them), sorted [`best_first`].
    fn k_best(mut cands: Vec<(u32, f32)>, k: usize) -> Vec<(u32, f32)> {
        let k = k.min(cands.len());
        if k < cands.len() && k > 0 {
            cands.select_nth_unstable_by(k - 1, best_first);
        }
        cands.truncate(k);
        cands.sort_by(best_first);
        cands
    }

    /// The `k` best (id, logit) pairs, best first, ties by lower id, NaN excluded: the
    /// reference (every logit into one list, then a selection), which [`top_k`] must equal.
    pub fn top_k_reference(row: &[f32], k: usize) -> Vec<(u32, f32)> {
        let all: Vec<(u32, f32)> = row
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_nan())
            .map(|(i, &v)| (i as u32, v))
            .collect();
        k_best(all, k)
    }

    /// Lanes of the block-maximum pass (a multiple of the SIMD width, so the per-lane maxima
    /// compile to vector max instructions).
    const LANES: usize = 16;
    /// Logits per test of the filtering pass (one comparison per logit, OR-ed: vectorised).
    const FILTER_CHUNK: usize = 64;

    /// The same as [`top_k_reference`] (ties and NaN included), in two passes over the row
    /// that only compare: the row is cut into at least `k` blocks, and the smallest block
    /// maximum is a bar no higher than the k-th best logit (at least `k` logits, the maxima,
    /// reach it); only the logits at or above the bar (about `k ln k` of a random 128k row, not
    /// the whole row) are collected and selected from.
    pub fn top_k(row: &[f32], k: usize) -> Vec<(u32, f32)> {
        let n = row.len();
        if k == 0 || n < 4 * k.max(LANES) {
            return top_k_reference(row, k);
        }
        let bar = smallest_block_max(row, n / k);
        let mut survivors: Vec<(u32, f32)> = Vec::with_capacity(4 * k);
        let mut base = 0;
        for chunk in row.chunks(FILTER_CHUNK) {
            // NaN compares false: never collected.
            if chunk.iter().fold(false, |hit, &v| hit | (v >= bar)) {
                for (j, &v) in chunk.iter().enumerate() {
                    if v >= bar {
                        survivors.push(((base + j) as u32, v));
                    }
                }
            }
            base += chunk.len();
        }
        k_best(survivors, k)
    }

    /// The smallest of the maxima of `row`'s blocks of `block` logits (NaN ignored; a block
    /// without a number gives -inf, a bar every number clears).
    fn smallest_block_max(row: &[f32], block: usize) -> f32 {
        let mut smallest = f32::INFINITY;
        for b in row.chunks(block) {
            let mut lanes = [f32::NEG_INFINITY; LANES];
            let mut tail = b.chunks_exact(LANES);
            for c in &mut tail {
                for (m, &v) in lanes.iter_mut().zip(c) {
                    // `>` is false for NaN, so NaN never becomes a maximum.
                    *m = if v > *m { v } else { *m };
                }
            }
            let mut max = f32::NEG_INFINITY;
            for &v in lanes.iter().chain(tail.remainder()) {
                max = if v > max { v } else { max };
            }
            smallest = smallest.min(max);
        }
        smallest
    }

    /// See [`super::Device::logits_mask`]; `allowed` must have `ceil(row.len() / 32)` words.
    pub fn mask(row: &mut [f32], allowed: &[u32]) {
        debug_assert_eq!(allowed.len(), row.len().div_ceil(32));
        for (i, v) in row.iter_mut().enumerate() {
            if allowed[i / 32] >> (i % 32) & 1 == 0 {
                *v = f32::NEG_INFINITY;
            }
        }
    }

    /// See [`super::Device::logits_logsumexp`]: the maximum, then the sum of `exp(x - max)` in
    /// f64 (the reference the f32 device reductions are compared with).
    pub fn logsumexp(row: &[f32]) -> f32 {
        let max = row
            .iter()
            .filter(|v| !v.is_nan())
            .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        if max.is_infinite() {
            return max;
        }
        let sum: f64 = row
            .iter()
            .filter(|v| !v.is_nan())
            .map(|&v| f64::from(v - max).exp())
            .sum();
        (f64::from(max) + sum.ln()) as f32
    }

    /// See [`super::Device::logits_gather`]; `None` names the first id outside the row.
    pub fn gather(row: &[f32], ids: &[u32]) -> Result<Vec<f32>, u32> {
        ids.iter()
            .map(|&id| row.get(id as usize).copied().ok_or(id))
            .collect()
    }

    /// Whether `allowed` has the length of a mask over a `vocab`-token row.
    pub fn mask_fits(vocab: usize, allowed: &[u32]) -> bool {
        allowed.len() == vocab.div_ceil(32)
    }

    /// See [`super::Device::logits_penalize`].
    pub fn penalize(row: &mut [f32], history: &[u32], repeat: f32, frequency: f32, presence: f32) {
        let mut counts: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        for &t in history {
            if (t as usize) < row.len() {
                *counts.entry(t).or_default() += 1;
            }
        }
        for (&t, &c) in &counts {
            let v = &mut row[t as usize];
            if repeat != 1.0 && repeat > 0.0 {
                *v = if *v > 0.0 { *v / repeat } else { *v * repeat };
            }
            *v -= c as f32 * frequency + presence;
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use orcd_common::SplitMix64;

        #[test]
        fn argmax_skips_nan_and_prefers_lower_id() {
            assert_eq!(argmax(&[f32::NAN, 1.0, 3.0, 3.0]), (2, 3.0));
            assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]).0, 0);
        }

        #[test]
        fn top_k_orders_best_first() {
            let r = [0.5, 2.0, f32::NAN, 2.0, -1.0];
            assert_eq!(top_k(&r, 3), vec![(1, 2.0), (3, 2.0), (0, 0.5)]);
            assert_eq!(top_k(&r, 10).len(), 4);
        }

        /// Rows of several shapes: smooth, coarse (many ties), with NaN, -inf and +inf
        /// sprinkled in, all NaN, all -inf, rising and falling.
        fn rows(n: usize, seed: u64) -> Vec<Vec<f32>> {
            let mut s = SplitMix64(seed);
            let mut out = Vec::new();
            let smooth: Vec<f32> = (0..n)
                .map(|_| (s.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 20.0 - 10.0)
                .collect();
            let coarse: Vec<f32> = (0..n).map(|_| (s.next_u64() % 7) as f32).collect();
            let mut special = smooth.clone();
            for _ in 0..n / 10 {
                let i = (s.next_u64() % n as u64) as usize;
                special[i] = match s.next_u64() % 4 {
                    0 | 1 => f32::NAN,
                    2 => f32::NEG_INFINITY,
                    _ => f32::INFINITY,
                };
            }
            let mut mostly_nan = vec![f32::NAN; n];
            for _ in 0..5 {
                mostly_nan[(s.next_u64() % n as u64) as usize] = 1.0;
            }
            out.extend([smooth, coarse, special, mostly_nan]);
            out.push(vec![f32::NAN; n]);
            out.push(vec![f32::NEG_INFINITY; n]);
            out.push((0..n).map(|i| i as f32).collect());
            out.push((0..n).map(|i| -(i as f32)).collect());
            out
        }

        #[test]
        fn fast_top_k_equals_the_reference() {
            for (n, seed) in [(1usize, 1u64), (63, 2), (1000, 3), (4099, 4), (131_072, 5)] {
                for row in rows(n, seed) {
                    for k in [0, 1, 2, 40, 256, 1024, n / 4, n - 1, n, n + 5] {
                        assert_eq!(
                            top_k(&row, k),
                            top_k_reference(&row, k),
                            "n {n}, k {k}, row starting {:?}",
                            &row[..row.len().min(4)]
                        );
                    }
                }
            }
        }

        #[test]
        fn mask_keeps_only_the_allowed_bits() {
            let mut r = [1.0f32; 40];
            // Tokens 0, 5, 33 and 39 allowed.
            let allowed = [1u32 | 1 << 5, 1 << 1 | 1 << 7];
            assert!(mask_fits(40, &allowed) && !mask_fits(65, &allowed));
            mask(&mut r, &allowed);
            for (i, v) in r.iter().enumerate() {
                assert_eq!(*v == 1.0, [0, 5, 33, 39].contains(&i), "{i}");
            }
            assert_eq!(argmax(&r), (0, 1.0));
        }

        #[test]
        fn logsumexp_normalises_and_skips_nan() {
            let r = [1.0f32, 2.0, f32::NAN, f32::NEG_INFINITY, 3.0];
            let lse = logsumexp(&r);
            let want = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln() as f32;
            assert!((lse - want).abs() < 1e-6, "{lse} vs {want}");
            let total: f32 = [1.0f32, 2.0, 3.0].iter().map(|v| (v - lse).exp()).sum();
            assert!((total - 1.0).abs() < 1e-6);
            assert_eq!(logsumexp(&[f32::NEG_INFINITY, f32::NAN]), f32::NEG_INFINITY);
            // Large logits do not overflow.
            assert!((logsumexp(&[1000.0, 1000.0]) - (1000.0 + 2f32.ln())).abs() < 1e-3);
            assert_eq!(gather(&r, &[4, 0]), Ok(vec![3.0, 1.0]));
            assert_eq!(gather(&r, &[1, 5]), Err(5));
        }

        #[test]
        fn penalties_follow_llama_cpp() {
            let mut r = [2.0, -2.0, 1.0];
            penalize(&mut r, &[0, 1, 1], 2.0, 0.5, 0.25);
            assert_eq!(r, [2.0 / 2.0 - 0.75, -2.0 * 2.0 - 1.25, 1.0]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(slot: u32, start_pos: usize, tokens: &[u32], logits: LogitsWanted) -> SeqInput<'_> {
        SeqInput {
            slot: SeqSlot(slot),
            start_pos,
            tokens,
            logits,
        }
    }

    #[test]
    fn validate_batch_counts_rows_and_names_the_fault() {
        let extent = |s: SeqSlot| {
            (s.0 < 2).then_some(SlotExtent {
                len: 3,
                max_tokens: 8,
            })
        };
        let ok = [
            seq(0, 3, &[1, 2], LogitsWanted::All),
            seq(1, 3, &[4], LogitsWanted::Last),
        ];
        assert_eq!(validate_batch(&ok, 10, extent).unwrap(), 3);
        let message = |batch: &[SeqInput<'_>]| match validate_batch(batch, 10, extent) {
            Err(EngineError::InvalidInput(m)) => m,
            other => panic!("expected InvalidInput, got {other:?}"),
        };
        let twice = [
            seq(0, 3, &[1], LogitsWanted::None),
            seq(0, 3, &[1], LogitsWanted::None),
        ];
        assert!(message(&twice).contains("twice"));
        assert!(message(&[seq(5, 0, &[1], LogitsWanted::Last)]).contains("unknown KV slot 5"));
        assert!(message(&[seq(0, 3, &[], LogitsWanted::Last)]).contains("no new tokens"));
        assert!(message(&[seq(0, 2, &[1], LogitsWanted::Last)]).contains("start_pos 2"));
        assert!(message(&[seq(0, 3, &[1; 6], LogitsWanted::Last)]).contains("overflow"));
        assert!(message(&[seq(1, 3, &[10], LogitsWanted::Last)]).contains("token id 10"));
    }
}
