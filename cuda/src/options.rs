//! [`CudaOptions`]: how the backend is started, and [`VramBudget`]: what the model needs of
//! the device's free memory (weights, scratch, KV cache) and how large the KV cache is made.

use std::path::PathBuf;

use orcd_device::EngineError;
use orcd_model::KvType;
use orcd_model::{Model, ModelConfig};

use crate::compile::default_cache_dir;
use crate::kv_cache::PAGE_TOKENS;
use crate::scratch::Scratch;
use crate::weights::weights_bytes;

/// Default tokens per chunk of a step.
pub const DEFAULT_MAX_BATCH_TOKENS: usize = 512;
/// Default KV-cache positions (all slots together) when no budget is given.
pub const DEFAULT_KV_TOKENS: usize = 65_536;
/// Default number of sequences that can hold a KV slot at once.
pub const DEFAULT_MAX_SLOTS: usize = 256;
/// Share of the VRAM left after weights and scratch that an automatic KV budget may take.
const AUTO_KV_SHARE: f64 = 0.5;

/// How to start the CUDA backend.
#[derive(Clone, Debug)]
pub struct CudaOptions {
    /// GPU index.
    pub gpu: usize,
    /// KV-cache budget in bytes; `None`: [`DEFAULT_KV_TOKENS`] positions, or less when that
    /// would take more than half of the VRAM left after weights and scratch.
    pub kv_cache_bytes: Option<u64>,
    /// KV-cache budget in positions (overrides `kv_cache_bytes`).
    pub kv_tokens_budget: Option<usize>,
    /// How the KV cache keeps its rows (the bytes a position costs follow from it).
    pub kv_type: KvType,
    /// Tokens per chunk of a step (a larger batch is run in several chunks).
    pub max_batch_tokens: usize,
    /// Logits rows one forward may produce.
    pub max_logits_rows: usize,
    /// Sequences holding a KV slot at once.
    pub max_slots: usize,
    /// Where compiled kernels are cached; `None`: [`default_cache_dir`].
    pub kernel_cache_dir: Option<PathBuf>,
    /// Replay small steps (decode) as CUDA graphs captured once per step shape.
    pub cuda_graphs: bool,
    /// Fused kernels (q/k/v in one matrix launch, norm + RoPE + KV store, gate/up with the
    /// activation, residual add with the next norm); off: one launch per op, the reference.
    pub fused: bool,
    /// Q4_0 / Q4_1 / Q8_0 weights in the packed layout (`crate::packed`), their matrices
    /// computed by the integer kernels on Q8 activations (the canonical dot product); off: GGUF
    /// layout and the f32-activation kernels (the A/B reference). Default on; the environment
    /// variable `ORCD_PACKED=0` turns the default off.
    pub packed: bool,
    /// Packed matrices against more than [`crate::linear::GEMM_MIN_COLS`] - 1 activation columns (prefill,
    /// batches) go through the tensor-core GEMM (`gemm_q8.cu`), which computes the same
    /// canonical dot product bit for bit; off: the matrix-vector kernels in tiles of 8 columns.
    /// Default on; `ORCD_GEMM=0` turns the default off.
    pub gemm: bool,
}

impl Default for CudaOptions {
    fn default() -> Self {
        CudaOptions {
            gpu: 0,
            kv_cache_bytes: None,
            kv_tokens_budget: None,
            kv_type: KvType::default(),
            max_batch_tokens: DEFAULT_MAX_BATCH_TOKENS,
            max_logits_rows: DEFAULT_MAX_BATCH_TOKENS,
            max_slots: DEFAULT_MAX_SLOTS,
            kernel_cache_dir: None,
            cuda_graphs: true,
            fused: true,
            packed: std::env::var("ORCD_PACKED").map_or(true, |v| v != "0"),
            gemm: std::env::var("ORCD_GEMM").map_or(true, |v| v != "0"),
        }
    }
}

impl CudaOptions {
    /// Where compiled kernels are cached.
    pub fn cache_dir(&self) -> PathBuf {
        self.kernel_cache_dir
            .clone()
            .unwrap_or_else(default_cache_dir)
    }

    /// The options checked: every count positive.
    pub fn check(&self) -> Result<(), EngineError> {
        if self.max_batch_tokens == 0 || self.max_logits_rows == 0 || self.max_slots == 0 {
            return Err(EngineError::InvalidInput(
                "max_batch_tokens, max_logits_rows and max_slots must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// The device memory a model takes with these options.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct VramBudget {
    pub weights_bytes: u64,
    pub scratch_bytes: u64,
    /// A whole number of KV pages.
    pub kv_bytes: u64,
    pub n_pages: usize,
}

impl VramBudget {
    /// Size the KV cache for `model` under `opts` against `free` device bytes: the budget in
    /// positions or bytes the options give, else [`DEFAULT_KV_TOKENS`] positions or less when
    /// that would take more than [`AUTO_KV_SHARE`] of the VRAM left after weights and scratch.
    /// Fails with [`EngineError::InsufficientVram`] when not even one page fits.
    pub fn plan(model: &Model, opts: &CudaOptions, free: u64) -> Result<VramBudget, EngineError> {
        let c: &ModelConfig = &model.config;
        let w_bytes = weights_bytes(model, opts.packed)?;
        let s_bytes = Scratch::bytes(c, opts.max_batch_tokens, opts.max_logits_rows);
        opts.kv_type.check(c.kv_dim())?;
        let kv_token_bytes = opts.kv_type.bytes_per_token(c.n_layers, c.kv_dim()) as u64;
        let page_bytes = kv_token_bytes * PAGE_TOKENS as u64;
        let kv_bytes = match (opts.kv_tokens_budget, opts.kv_cache_bytes) {
            (Some(tokens), _) => tokens.div_ceil(PAGE_TOKENS) as u64 * page_bytes,
            (None, Some(bytes)) => bytes / page_bytes * page_bytes,
            (None, None) => {
                let want = DEFAULT_KV_TOKENS as u64 / PAGE_TOKENS as u64 * page_bytes;
                let room = free.saturating_sub(w_bytes + s_bytes) as f64 * AUTO_KV_SHARE;
                want.min((room as u64) / page_bytes * page_bytes)
            }
        };
        let n_pages = (kv_bytes / page_bytes) as usize;
        let required = w_bytes + s_bytes + kv_bytes;
        if n_pages == 0 || required > free {
            return Err(EngineError::InsufficientVram {
                required: required.max(w_bytes + s_bytes + page_bytes),
                available: free,
            });
        }
        Ok(VramBudget {
            weights_bytes: w_bytes,
            scratch_bytes: s_bytes,
            kv_bytes,
            n_pages,
        })
    }
}
