//! Longer than 600 lines with its unit tests (the code is the first 300): the tests drive the
//! backend through the `Device` trait next to the code they check.
//!
//! [`CpuBackend`]: the reference implementation of [`Device`], running the quantized weights in
//! place from the mapped GGUF file on a rayon pool of its own.

use crate::forward::{CpuWeights, RunState, forward};
use crate::kv_cache::KvCache;
use crate::matmul::DotPath;
use orcd_device::EngineError;
use orcd_device::{
    Device, DeviceInfo, SeqInput, SeqSlot, SlotExtent, host_logits, validate_batch,
    validate_prefix_copy,
};
use orcd_model::KvType;
use orcd_model::Model;

/// KV-cache positions a backend reserves by default (all slots together).
pub const DEFAULT_KV_TOKENS: usize = 16_384;

/// How to run the CPU backend.
#[derive(Clone, Debug)]
pub struct CpuOptions {
    /// Worker threads of the backend's rayon pool (0: one per available core).
    pub threads: usize,
    /// KV-cache positions all slots together may reserve, each at the cost of a position on
    /// every layer (a slot's sliding-window layers cost less: more positions then fit).
    pub kv_tokens_budget: usize,
    /// The KV-cache budget in bytes (overrides `kv_tokens_budget`).
    pub kv_cache_bytes: Option<u64>,
    /// How the KV cache keeps its rows.
    pub kv_type: KvType,
    /// Sliding-window layers keep only their window (on by default); off: every position, the
    /// reference the trimmed cache is tested against.
    pub trim_windows: bool,
    /// Exact f32 dot products instead of llama.cpp-style 8-bit quantized activations.
    pub exact: bool,
}

impl Default for CpuOptions {
    fn default() -> Self {
        CpuOptions {
            threads: 0,
            kv_tokens_budget: DEFAULT_KV_TOKENS,
            kv_cache_bytes: None,
            kv_type: KvType::default(),
            trim_windows: true,
            exact: false,
        }
    }
}

/// A model loaded for the CPU.
pub struct CpuBackend {
    model: Model,
    weights: CpuWeights,
    kv: KvCache,
    state: RunState,
    /// Logits rows of the last step.
    n_rows: usize,
    path: DotPath,
    pool: rayon::ThreadPool,
}

impl std::fmt::Debug for CpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuBackend")
            .field("arch", &self.model.config.arch)
            .field("threads", &self.pool.current_num_threads())
            .field("path", &self.path)
            .finish()
    }
}

impl CpuBackend {
    pub fn new(model: Model, opts: CpuOptions) -> Result<CpuBackend, EngineError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.threads)
            .thread_name(|i| format!("orcd-cpu-{i}"))
            .build()
            .map_err(|e| EngineError::BackendUnavailable(format!("CPU thread pool: {e}")))?;
        let c = &model.config;
        opts.kv_type.check(c.kv_dim())?;
        let kept = (0..c.n_layers)
            .map(|l| c.layer_plan(l).window.filter(|_| opts.trim_windows))
            .collect();
        let budget_bytes = match opts.kv_cache_bytes {
            Some(b) => usize::try_from(b).unwrap_or(usize::MAX),
            None => opts
                .kv_tokens_budget
                .saturating_mul(opts.kv_type.bytes_per_token(c.n_layers, c.kv_dim())),
        };
        let kv = KvCache::new(
            opts.kv_type,
            c.kv_dim(),
            kept,
            c.context_length,
            budget_bytes,
        );
        Ok(CpuBackend {
            weights: CpuWeights::new(&model),
            kv,
            state: RunState::default(),
            n_rows: 0,
            path: if opts.exact {
                DotPath::Exact
            } else {
                DotPath::Q8
            },
            pool,
            model,
        })
    }

    /// The model this backend runs.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The dot-product path in use.
    pub fn dot_path(&self) -> DotPath {
        self.path
    }

    /// Per token row of the last step (batch order), the smallest routing margin of a mixture
    /// of experts over its layers (infinite without experts): see `RunState::route_margin`.
    pub fn route_margins(&self) -> &[f32] {
        &self.state.route_margin
    }

    /// How the KV cache keeps its rows.
    pub fn kv_type(&self) -> KvType {
        self.kv.kv_type()
    }

    /// Bytes a sequence of `max_tokens` positions reserves in the KV cache.
    pub fn kv_slot_bytes(&self, max_tokens: usize) -> usize {
        self.kv.slot_bytes(max_tokens)
    }

    /// Threads of the backend's pool.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Check a batch against the model and the slots before anything is computed; returns the
    /// logits rows the step will produce.
    fn validate(&self, batch: &[SeqInput<'_>]) -> Result<usize, EngineError> {
        validate_batch(batch, self.model.config.vocab_size, |slot| {
            self.extent(slot)
        })
    }

    fn extent(&self, slot: SeqSlot) -> Option<SlotExtent> {
        self.kv.get(slot).map(|c| SlotExtent {
            len: c.len,
            max_tokens: c.max_tokens,
        })
    }

    fn row(&self, row: usize) -> Result<&[f32], EngineError> {
        if row >= self.n_rows {
            return Err(invalid(format!(
                "logits row {row} of a step that produced {}",
                self.n_rows
            )));
        }
        let v = self.model.config.vocab_size;
        Ok(&self.state.logits[row * v..(row + 1) * v])
    }
}

fn invalid(msg: String) -> EngineError {
    EngineError::InvalidInput(msg)
}

impl Device for CpuBackend {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            backend: "cpu",
            name: format!("CPU ({} threads)", self.threads()),
            weights_bytes: self.model.weights.total_bytes(),
            kv_cache_bytes: self.kv.reserved_bytes() as u64,
            scratch_bytes: 0,
            sm: None,
            runtime_version: None,
        }
    }

    fn vocab_size(&self) -> usize {
        self.model.config.vocab_size
    }

    fn context_length(&self) -> usize {
        self.model.config.context_length
    }

    fn alloc_seq(&mut self, max_tokens: usize) -> Result<SeqSlot, EngineError> {
        let ctx = self.context_length();
        if max_tokens == 0 || max_tokens > ctx {
            return Err(invalid(format!(
                "a sequence of {max_tokens} tokens: must be 1..={ctx} (the model's context)"
            )));
        }
        self.kv.alloc(max_tokens)
    }

    fn free_seq(&mut self, slot: SeqSlot) {
        self.kv.free(slot);
    }

    fn free_kv_tokens(&self) -> usize {
        self.kv.free_tokens()
    }

    fn copy_kv_prefix(
        &mut self,
        from: SeqSlot,
        to: SeqSlot,
        n_tokens: usize,
    ) -> Result<(), EngineError> {
        validate_prefix_copy(from, to, n_tokens, |slot| self.extent(slot))?;
        self.kv.copy_prefix(from, to, n_tokens)
    }

    fn kv_prefix_kept(&self, from: SeqSlot, n_tokens: usize, to_max_tokens: usize) -> bool {
        self.kv.prefix_kept(from, n_tokens, to_max_tokens)
    }

    fn forward(&mut self, batch: &[SeqInput<'_>]) -> Result<usize, EngineError> {
        self.n_rows = 0;
        let expected_rows = self.validate(batch)?;
        let (model, weights, kv, state, path) = (
            &self.model,
            &self.weights,
            &mut self.kv,
            &mut self.state,
            self.path,
        );
        let rows = self
            .pool
            .install(|| forward(model, weights, kv, state, batch, path))?;
        for seq in batch {
            if let Some(slot) = self.kv.get_mut(seq.slot) {
                slot.len += seq.tokens.len();
            }
        }
        debug_assert_eq!(rows, expected_rows);
        self.n_rows = rows;
        Ok(rows)
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
        let v = self.model.config.vocab_size;
        let r = &mut self.state.logits[row * v..(row + 1) * v];
        host_logits::penalize(r, history, repeat, frequency, presence);
        Ok(())
    }

    fn logits_mask(&mut self, row: usize, allowed: &[u32]) -> Result<(), EngineError> {
        self.row(row)?;
        let v = self.model.config.vocab_size;
        if !host_logits::mask_fits(v, allowed) {
            return Err(invalid(format!(
                "a mask of {} words for a vocabulary of {v}",
                allowed.len()
            )));
        }
        host_logits::mask(&mut self.state.logits[row * v..(row + 1) * v], allowed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orcd_device::LogitsWanted;
    use orcd_model::tiny::{self, TinySpec};

    fn backend(arch: &'static str, exact: bool) -> CpuBackend {
        with_kv(arch, exact, KvType::default(), true)
    }

    fn with_kv(arch: &'static str, exact: bool, kv_type: KvType, trim: bool) -> CpuBackend {
        let model = Model::load(TinySpec::new(arch).build().unwrap()).unwrap();
        let opts = CpuOptions {
            threads: 2,
            kv_tokens_budget: 128,
            kv_type,
            trim_windows: trim,
            exact,
            ..CpuOptions::default()
        };
        CpuBackend::new(model, opts).unwrap()
    }

    /// Every logits row of `SEQ` fed in steps of `chunk` tokens.
    fn chunked_rows(dev: &mut CpuBackend, chunk: usize) -> Vec<f32> {
        let s = dev.alloc_seq(SEQ.len()).unwrap();
        let mut rows = Vec::new();
        for (i, part) in SEQ.chunks(chunk).enumerate() {
            let n = step(dev, s, i * chunk, part, LogitsWanted::All).unwrap();
            for r in 0..n {
                rows.extend(dev.logits_row(r).unwrap());
            }
        }
        dev.free_seq(s);
        rows
    }

    fn step(
        dev: &mut CpuBackend,
        slot: SeqSlot,
        start_pos: usize,
        tokens: &[u32],
        logits: LogitsWanted,
    ) -> Result<usize, EngineError> {
        dev.forward(&[SeqInput {
            slot,
            start_pos,
            tokens,
            logits,
        }])
    }

    /// The last logits row after feeding `tokens` in one step.
    fn last_row(dev: &mut CpuBackend, tokens: &[u32]) -> Vec<f32> {
        let s = dev.alloc_seq(tokens.len()).unwrap();
        step(dev, s, 0, tokens, LogitsWanted::Last).unwrap();
        let row = dev.logits_row(0).unwrap();
        dev.free_seq(s);
        row
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    const SEQ: [u32; 10] = [1, 17, 5, 90, 33, 33, 7, 64, 12, 3];

    #[test]
    fn bad_inputs_are_invalid_input_errors() {
        let mut dev = backend("llama", false);
        let s = dev.alloc_seq(4).unwrap();
        let invalid =
            |r: Result<usize, EngineError>| matches!(r, Err(EngineError::InvalidInput(_)));
        let vocab = tiny::VOCAB as u32;
        assert!(invalid(step(&mut dev, s, 0, &[vocab], LogitsWanted::Last)));
        assert!(invalid(step(
            &mut dev,
            SeqSlot(99),
            0,
            &[1],
            LogitsWanted::Last
        )));
        assert!(invalid(step(&mut dev, s, 1, &[1], LogitsWanted::Last)));
        assert!(invalid(step(&mut dev, s, 0, &[], LogitsWanted::Last)));
        assert!(invalid(step(&mut dev, s, 0, &[1; 5], LogitsWanted::Last)));
        let twice = [
            SeqInput {
                slot: s,
                start_pos: 0,
                tokens: &[1],
                logits: LogitsWanted::Last,
            },
            SeqInput {
                slot: s,
                start_pos: 0,
                tokens: &[1],
                logits: LogitsWanted::Last,
            },
        ];
        assert!(matches!(
            dev.forward(&twice),
            Err(EngineError::InvalidInput(_))
        ));
        // A failed step leaves the slot usable, and no logits rows behind.
        assert!(dev.logits_row(0).is_err());
        assert_eq!(
            step(&mut dev, s, 0, &[1, 2, 3, 4], LogitsWanted::All).unwrap(),
            4
        );
        assert!(dev.logits_top_k(3, 5).is_ok());
        assert!(matches!(
            dev.logits_argmax(4),
            Err(EngineError::InvalidInput(_))
        ));
        assert!(invalid(step(&mut dev, s, 4, &[1], LogitsWanted::Last)));
        assert!(matches!(
            dev.alloc_seq(tiny::CONTEXT + 1),
            Err(EngineError::InvalidInput(_))
        ));
        assert!(matches!(
            dev.alloc_seq(0),
            Err(EngineError::InvalidInput(_))
        ));
        assert!(matches!(
            dev.alloc_seq(64).and_then(|_| dev.alloc_seq(64)),
            Err(EngineError::KvCacheExhausted { .. })
        ));
    }

    #[test]
    fn step_by_step_equals_one_prefill_on_every_architecture() {
        // (gpt-oss: one product per expert over the tokens routed to it, in a prefill)
        for arch in ["llama", "qwen2", "gemma3", "gpt-oss"] {
            let mut dev = backend(arch, false);
            let s = dev.alloc_seq(SEQ.len()).unwrap();
            assert_eq!(
                step(&mut dev, s, 0, &SEQ, LogitsWanted::All).unwrap(),
                SEQ.len()
            );
            let all: Vec<Vec<f32>> = (0..SEQ.len()).map(|r| dev.logits_row(r).unwrap()).collect();
            assert!(all.iter().flatten().all(|v| v.is_finite()), "{arch}");
            dev.free_seq(s);
            let s = dev.alloc_seq(SEQ.len()).unwrap();
            for (p, &t) in SEQ.iter().enumerate() {
                assert_eq!(step(&mut dev, s, p, &[t], LogitsWanted::Last).unwrap(), 1);
                let d = max_diff(&dev.logits_row(0).unwrap(), &all[p]);
                assert!(d < 1e-4, "{arch}: position {p} differs by {d}");
            }
            // LogitsWanted::None produces no rows.
            let s2 = dev.alloc_seq(2).unwrap();
            assert_eq!(
                step(&mut dev, s2, 0, &[4, 5], LogitsWanted::None).unwrap(),
                0
            );
        }
    }

    #[test]
    fn sliding_window_hides_tokens_beyond_its_reach() {
        // Two sliding layers of window 4: the last position sees at most 2 * 3 positions back.
        let mut changed = SEQ;
        changed[0] = 50;
        changed[1] = 51;
        let mut gemma = backend("gemma3", false);
        let d = max_diff(&last_row(&mut gemma, &SEQ), &last_row(&mut gemma, &changed));
        assert_eq!(d, 0.0, "gemma3 saw a token outside its window");
        // Inside the reach (and on a model without a window) the change shows.
        let mut near = SEQ;
        near[5] = 50;
        let d = max_diff(&last_row(&mut gemma, &SEQ), &last_row(&mut gemma, &near));
        assert!(d > 1e-3);
        let mut llama = backend("llama", false);
        let d = max_diff(&last_row(&mut llama, &SEQ), &last_row(&mut llama, &changed));
        assert!(d > 1e-3, "llama attends to the whole sequence");
    }

    #[test]
    fn a_trimmed_window_gives_the_bits_of_a_full_cache_with_every_kv_type() {
        // Gemma 3's sliding layers (window 4) keep 4 rows as a ring; chunks of 1, 3 and 10
        // wrap it between and inside steps.
        for kv_type in KvType::ALL {
            for chunk in [1, 3, 10] {
                let full = chunked_rows(&mut with_kv("gemma3", false, kv_type, false), chunk);
                let mut dev = with_kv("gemma3", false, kv_type, true);
                let trimmed = chunked_rows(&mut dev, chunk);
                assert!(
                    full.iter()
                        .zip(&trimmed)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{kv_type}, chunks of {chunk}: {}",
                    max_diff(&full, &trimmed)
                );
                // Both layers of the tiny Gemma 3 slide: 4 rows each, not SEQ.len().
                let row_pair = 2 * kv_type.row_bytes(tiny::KV_HEADS * tiny::HEAD_DIM);
                assert_eq!(dev.kv_slot_bytes(SEQ.len()), 2 * 4 * row_pair);
            }
        }
    }

    /// The rows of `SEQ[n..]` in a slot whose first `n` positions were copied from a slot that
    /// computed `SEQ[..src_len]` in chunks of 3.
    fn rows_after_copy(dev: &mut CpuBackend, n: usize, src_len: usize) -> Vec<f32> {
        let src = dev.alloc_seq(SEQ.len()).unwrap();
        for (i, part) in SEQ[..src_len].chunks(3).enumerate() {
            step(dev, src, i * 3, part, LogitsWanted::None).unwrap();
        }
        let dst = dev.alloc_seq(SEQ.len()).unwrap();
        assert!(dev.kv_prefix_kept(src, n, SEQ.len()));
        dev.copy_kv_prefix(src, dst, n).unwrap();
        let rows = step(dev, dst, n, &SEQ[n..], LogitsWanted::All).unwrap();
        let out = (0..rows).flat_map(|r| dev.logits_row(r).unwrap()).collect();
        dev.free_seq(src);
        dev.free_seq(dst);
        out
    }

    #[test]
    fn a_copied_prefix_gives_the_bits_of_computing_it() {
        let v = tiny::VOCAB;
        for arch in ["llama", "qwen2", "gemma3", "gpt-oss"] {
            for kv_type in KvType::ALL {
                let mut dev = with_kv(arch, false, kv_type, true);
                let free = dev.free_kv_tokens();
                // The whole sequence in one step: the reference.
                let full = chunked_rows(&mut dev, SEQ.len());
                // Gemma 3's and GPT-OSS's trimmed windows (4) keep what a source of n
                // positions leaves, not what a longer source overwrote.
                for (n, src_len) in [(1, 1), (5, 5), (7, 9), (9, 9)] {
                    if matches!(arch, "gemma3" | "gpt-oss") && src_len != n {
                        continue;
                    }
                    let got = rows_after_copy(&mut dev, n, src_len);
                    let want = &full[n * v..];
                    assert!(
                        got.iter()
                            .zip(want)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{arch} {kv_type}, prefix {n} of {src_len}: {}",
                        max_diff(&got, want)
                    );
                }
                assert_eq!(dev.free_kv_tokens(), free, "{arch}: every slot freed");
            }
        }
        // A trimmed window that moved past the prefix refuses the copy (nothing copied).
        let mut gemma = with_kv("gemma3", false, KvType::F16, true);
        let src = gemma.alloc_seq(SEQ.len()).unwrap();
        step(&mut gemma, src, 0, &SEQ, LogitsWanted::None).unwrap();
        let dst = gemma.alloc_seq(SEQ.len()).unwrap();
        assert!(!gemma.kv_prefix_kept(src, 5, SEQ.len()));
        assert!(matches!(
            gemma.copy_kv_prefix(src, dst, 5),
            Err(EngineError::InvalidInput(_))
        ));
        assert!(gemma.kv_prefix_kept(src, SEQ.len(), SEQ.len()));
        // Bad requests: into itself, too long, into a slot that holds tokens, unknown slots.
        let invalid = |r: Result<(), EngineError>| matches!(r, Err(EngineError::InvalidInput(_)));
        assert!(invalid(gemma.copy_kv_prefix(src, src, 1)));
        assert!(invalid(gemma.copy_kv_prefix(src, dst, SEQ.len() + 1)));
        assert!(invalid(gemma.copy_kv_prefix(src, dst, 0)));
        assert!(invalid(gemma.copy_kv_prefix(SeqSlot(77), dst, 1)));
        assert!(invalid(gemma.copy_kv_prefix(src, SeqSlot(77), 1)));
        step(&mut gemma, dst, 0, &[3], LogitsWanted::None).unwrap();
        assert!(invalid(gemma.copy_kv_prefix(src, dst, 1)));
    }

    #[test]
    fn kv_types_agree_within_their_precision() {
        for arch in ["llama", "qwen2", "gemma3"] {
            let exact = chunked_rows(&mut with_kv(arch, true, KvType::F32, true), 3);
            for (kv_type, tol) in [(KvType::F16, 0.01), (KvType::Q8_0, 0.1)] {
                let got = chunked_rows(&mut with_kv(arch, true, kv_type, true), 3);
                let d = max_diff(&exact, &got);
                assert!(d < tol, "{arch} {kv_type}: {d}");
                assert!(
                    d > 0.0,
                    "{arch} {kv_type}: rounding the cache changed nothing"
                );
            }
        }
    }

    #[test]
    fn quantized_activations_stay_close_to_exact() {
        for arch in ["llama", "qwen2", "gemma3", "gpt-oss"] {
            let exact = last_row(&mut backend(arch, true), &SEQ);
            let fast = last_row(&mut backend(arch, false), &SEQ);
            let d = max_diff(&exact, &fast);
            assert!(d < 0.05, "{arch}: Q8 path differs from exact by {d}");
        }
    }

    #[test]
    fn info_reports_kv_reservations() {
        let mut dev = backend("qwen2", false);
        assert_eq!(dev.info().backend, "cpu");
        assert_eq!(dev.info().kv_cache_bytes, 0);
        let s = dev.alloc_seq(10).unwrap();
        // f16 by default: 2 bytes a value.
        let per_token = 2 * tiny::LAYERS * tiny::KV_HEADS * tiny::HEAD_DIM * 2;
        assert_eq!(dev.info().kv_cache_bytes, (10 * per_token) as u64);
        assert_eq!(dev.free_kv_tokens(), 118);
        dev.free_seq(s);
        assert_eq!(dev.free_kv_tokens(), 128);
    }
}
