//! [`CudaBackend`]: a model on one GPU, implementing [`orcd_device::Device`].
//!
//! Startup: open the GPU, compile/load the kernels, check that weights + KV cache + scratch fit
//! in free VRAM ([`VramBudget`], else [`EngineError::InsufficientVram`]), upload the weights,
//! allocate the KV page pool and the scratch once, verify every allocation's residency, and
//! build the model's [`Plan`].
//!
//! A step ([`Device::forward`]) flattens the batch into chunks of at most `max_batch_tokens`
//! tokens, uploads each chunk's metadata in one copy and queues the forward pass
//! (`crate::forward`), or replays its CUDA graph. Logits stay on the GPU; the `logits_*`
//! operations (`crate::logits`) run kernels on them and copy back a few bytes.

use std::sync::Arc;

use cudarc::driver::result;
use orcd_device::EngineError;
use orcd_device::{
    Device, DeviceInfo, LogitsWanted, SeqInput, SeqSlot, SlotExtent, validate_batch,
    validate_prefix_copy,
};
use orcd_model::quant::GgmlType;
use orcd_model::{Activation, FfnKind, Model, ModelConfig};

use crate::compile::KernelCompiler;
use crate::driver::{GpuContext, check};
use crate::error::CudaResult;
use crate::forward::{Plan, Step};
use crate::graph::GraphCache;
use crate::kernels::Kernels;
use crate::kv_cache::{PAGE_TOKENS, PagePool};
use crate::operand::Penalties;
use crate::ops::{KvGeometry, Ops};
use crate::options::{CudaOptions, VramBudget};
use crate::scratch::Scratch;
use crate::vram::{DeviceBuffer, PinnedBuffer, Purpose, VramLedger, VramReport};
use crate::weights::GpuWeights;

/// A model loaded on one GPU. Field order is drop order: device memory and modules go before
/// the context that owns them.
pub struct CudaBackend {
    pub(crate) config: ModelConfig,
    plan: Plan,
    weights: GpuWeights,
    /// Per layer K and V: (n_pages, PAGE_TOKENS) rows of kv_dim values in `kv_type` each,
    /// back to back.
    kv: DeviceBuffer,
    kv_type: orcd_model::KvType,
    /// (max_slots, pages_per_slot) i32.
    page_table: DeviceBuffer,
    pages: PagePool,
    pub(crate) scratch: Scratch,
    /// Host side of the chunk metadata copy.
    meta_host: PinnedBuffer,
    max_batch_tokens: usize,
    max_logits_rows: usize,
    /// Logits rows of the last forward.
    pub(crate) n_rows: usize,
    /// Captured forward passes by step shape; `None` when graphs are off.
    graphs: Option<GraphCache>,
    /// Whether packed matrices with many columns take the GEMM.
    gemm: bool,
    kernels: Kernels,
    ledger: Arc<VramLedger>,
    pub(crate) gpu: Arc<GpuContext>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("gpu", &self.gpu.name())
            .field("arch", &self.config.arch)
            .field("vram", &self.ledger.report())
            .finish()
    }
}

pub(crate) fn invalid(msg: String) -> EngineError {
    EngineError::InvalidInput(msg)
}

/// The shapes the CUDA kernels take, checked before anything is allocated.
fn check_shapes(c: &ModelConfig) -> Result<(), EngineError> {
    if !c.head_dim.is_multiple_of(32) || c.head_dim > crate::kernels::shape::ATT_MAX_HEAD_DIM {
        return Err(EngineError::BadMetadata {
            key: format!("{}.attention.key_length", c.arch.name()),
            problem: format!(
                "head dimension {} is not supported by the CUDA attention (multiple of 32, at most {})",
                c.head_dim,
                crate::kernels::shape::ATT_MAX_HEAD_DIM
            ),
        });
    }
    for (what, n) in [("dim", c.dim), ("ffn_dim", c.ffn_dim), ("q_dim", c.q_dim())] {
        if !n.is_multiple_of(32) {
            return Err(EngineError::BadMetadata {
                key: what.into(),
                problem: format!("{n} is not a multiple of 32"),
            });
        }
    }
    Ok(())
}

/// The model features this backend does not run (a model with one is refused by name, never
/// run wrongly): a plain FFN with another activation than GELU (no such family is known), a
/// gated FFN with GPT-OSS's clamped SwiGLU outside a mixture of experts (no such family), and
/// in a mixture of experts, experts in a type `moe.cu` has no kernel for (it has MXFP4, Q8_0,
/// Q4_0 and F32; the CPU backend runs every type) or more experts per token than its routing
/// keeps. Everything else the engine loads it runs: RoPE scaling (linear, YaRN, attention
/// factor, frequency factors), sliding windows, attention sinks, fused Q/K/V and gate+up (split
/// at upload), LayerNorm, learned positions, biases and GPT-OSS's mixture of experts.
pub fn unsupported_features(model: &Model) -> Vec<&'static str> {
    let c = &model.config;
    let mut f = Vec::new();
    if c.ffn == FfnKind::Plain && c.activation != Activation::GeluTanh {
        f.push("a plain FFN without GELU");
    }
    if c.ffn != FfnKind::Moe && c.activation == Activation::SwigluOai {
        f.push("the clamped SwiGLU outside a mixture of experts");
    }
    if c.ffn == FfnKind::Moe {
        let kernel_types = [
            GgmlType::Mxfp4,
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::F32,
        ];
        let mut expert_types = model.weights.layers.iter().flat_map(|l| {
            [l.ffn_gate.as_ref(), Some(&l.ffn_up), Some(&l.ffn_down)]
                .into_iter()
                .flatten()
                .map(|t| t.ty)
        });
        if expert_types.any(|ty| !kernel_types.contains(&ty)) {
            f.push("experts of a type other than MXFP4, Q8_0, Q4_0 or F32");
        }
        if c.moe
            .is_some_and(|m| m.n_expert_used > crate::kernels::shape::MOE_MAX_USED)
        {
            f.push("more than 32 experts per token");
        }
    }
    f
}

impl CudaBackend {
    /// Load `model` onto GPU `opts.gpu`.
    pub fn new(model: Model, opts: CudaOptions) -> Result<CudaBackend, EngineError> {
        let c = model.config.clone();
        opts.check()?;
        check_shapes(&c)?;
        let unsupported = unsupported_features(&model);
        if !unsupported.is_empty() {
            return Err(EngineError::UnsupportedArchitecture(format!(
                "{} with {} (CUDA backend: not yet; the CPU backend runs it)",
                c.arch.name(),
                unsupported.join(", ")
            )));
        }
        let gpu = Arc::new(GpuContext::new(opts.gpu)?);
        let (cc_major, cc_minor) = gpu.compute_capability();
        let dir = opts.cache_dir();
        let compiler = KernelCompiler::new((cc_major, cc_minor), &dir)?;
        let kernels = Kernels::load(&gpu, &compiler)?;
        tracing::info!(
            gpu = gpu.name(),
            sm = %format!("{cc_major}.{cc_minor}"),
            cached_modules = kernels.cache_hits,
            cache = %dir.display(),
            "CUDA kernels ready"
        );

        // What the model needs, against what the device has free.
        let (t, r) = (opts.max_batch_tokens, opts.max_logits_rows);
        let (free, _total) = gpu.mem_info()?;
        let budget = VramBudget::plan(&model, &opts, free)?;

        if opts.gemm {
            // The GEMM's shared-memory limits are raised now, not inside a graph capture.
            Ops::new(&gpu, &kernels).gemm_q8_prepare()?;
        }
        let ledger = VramLedger::new(Arc::clone(&gpu));
        let load_start = std::time::Instant::now();
        let weights = GpuWeights::upload(&model, &ledger, opts.packed.then_some(&kernels))?;
        tracing::info!(
            packed = opts.packed,
            secs = load_start.elapsed().as_secs_f64(),
            "weights uploaded"
        );
        let pages = PagePool::new(budget.n_pages, opts.max_slots, c.context_length);
        let kv = ledger.alloc(budget.kv_bytes, Purpose::KvCache)?;
        let page_table = ledger.alloc(
            (opts.max_slots * pages.pages_per_slot() * 4) as u64,
            Purpose::KvCache,
        )?;
        page_table.fill_sync(0)?;
        let scratch = Scratch::new(&c, t, r, &ledger)?;
        let meta_host = PinnedBuffer::new(&gpu, scratch.meta_bytes)?;
        let checked = ledger.verify_residency()?;
        let report = ledger.report();
        tracing::info!(
            event = "model_load_complete",
            weights_bytes = report.weights_bytes,
            kv_cache_bytes = report.kv_cache_bytes,
            scratch_bytes = report.scratch_bytes,
            kv_tokens = budget.n_pages * PAGE_TOKENS,
            allocations_verified = checked,
            "model resident in VRAM"
        );
        Ok(CudaBackend {
            plan: Plan::for_model(&c, opts.fused),
            config: c,
            weights,
            kv,
            kv_type: opts.kv_type,
            page_table,
            pages,
            scratch,
            meta_host,
            max_batch_tokens: t,
            max_logits_rows: r,
            n_rows: 0,
            graphs: opts.cuda_graphs.then(GraphCache::default),
            gemm: opts.gemm,
            kernels,
            ledger,
            gpu,
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The ops every layer runs.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// How the KV cache keeps its rows.
    pub fn kv_type(&self) -> orcd_model::KvType {
        self.kv_type
    }

    /// Device bytes held per purpose (for `/health`).
    pub fn vram_report(&self) -> VramReport {
        self.ledger.report()
    }

    /// Check with the driver that every allocation is plain device memory (spec 1012).
    pub fn verify_residency(&self) -> Result<usize, EngineError> {
        Ok(self.ledger.verify_residency()?)
    }

    /// The GPU's name, e.g. "NVIDIA H100 80GB HBM3".
    pub fn gpu_name(&self) -> &str {
        self.gpu.name()
    }

    /// Step shapes captured as CUDA graphs so far.
    pub fn graphs_captured(&self) -> usize {
        self.graphs.as_ref().map_or(0, GraphCache::len)
    }

    /// Wait for all queued work (for benchmarks; the `logits_*` calls synchronize themselves).
    pub fn synchronize(&self) -> Result<(), EngineError> {
        Ok(self.gpu.synchronize()?)
    }

    pub(crate) fn ops(&self) -> Ops<'_> {
        Ops::new(&self.gpu, &self.kernels)
    }

    /// What a chunk's forward pass reads.
    fn step(&self) -> Step<'_> {
        let c = &self.config;
        Step {
            ops: self.ops(),
            c,
            plan: &self.plan,
            w: &self.weights,
            s: &self.scratch,
            kv: &self.kv,
            layer_kv_bytes: (self.pages.n_pages()
                * PAGE_TOKENS
                * self.kv_type.row_bytes(c.kv_dim())) as u64,
            geo: KvGeometry {
                kv_type: self.kv_type,
                page_table: self.page_table.ptr(),
                pages_per_slot: self.pages.pages_per_slot(),
                page_tokens: PAGE_TOKENS,
                n_heads: c.n_heads,
                n_kv_heads: c.n_kv_heads,
                head_dim: c.head_dim,
            },
            gemm: self.gemm,
        }
    }

    /// Check a batch against the model and the slots before anything is queued.
    fn validate(&self, batch: &[SeqInput<'_>]) -> Result<usize, EngineError> {
        let rows = validate_batch(batch, self.config.vocab_size, |slot| {
            self.pages.get(slot).map(|p| SlotExtent {
                len: p.len,
                max_tokens: p.max_tokens,
            })
        })?;
        if rows > self.max_logits_rows {
            return Err(invalid(format!(
                "the step asks for {rows} logits rows; this backend keeps at most {}",
                self.max_logits_rows
            )));
        }
        Ok(rows)
    }

    /// Queue one chunk: `tokens`, `pos`, `slot` per token, `out_rows` = chunk-local indices of
    /// the tokens whose logits go to rows `row0..row0 + out_rows.len()`.
    fn run_chunk(
        &mut self,
        tokens: &[u32],
        pos: &[i32],
        slot: &[i32],
        out_rows: &[i32],
        row0: usize,
    ) -> CudaResult<()> {
        let n = tokens.len();
        let t = self.max_batch_tokens;
        // Metadata: four arrays of T 4-byte values, one copy. The pinned buffer is reused, so
        // the previous chunk's copy out of it must be done.
        self.gpu.synchronize()?;
        {
            let m = self.meta_host.as_mut_slice();
            let put = |m: &mut [u8], at: usize, vals: &mut dyn Iterator<Item = [u8; 4]>| {
                for (i, b) in vals.enumerate() {
                    m[(at + i) * 4..(at + i) * 4 + 4].copy_from_slice(&b);
                }
            };
            put(m, 0, &mut tokens.iter().map(|v| v.to_le_bytes()));
            put(m, t, &mut pos.iter().map(|v| v.to_le_bytes()));
            put(m, 2 * t, &mut slot.iter().map(|v| v.to_le_bytes()));
            put(m, 3 * t, &mut out_rows.iter().map(|v| v.to_le_bytes()));
        }
        // SAFETY: the scratch's metadata block is `meta_bytes` long, the pinned source too, and
        // it is not written again before the next synchronize.
        check(
            unsafe {
                result::memcpy_htod_async(
                    self.scratch.meta,
                    &self.meta_host.as_slice()[..self.scratch.meta_bytes],
                    self.gpu.stream(),
                )
            },
            "cuMemcpyHtoDAsync(step metadata)",
        )?;
        let shape = (n, out_rows.len(), row0);
        let mut graphs = self.graphs.take();
        let step = self.step();
        let r = match graphs.as_mut() {
            Some(g) if g.eligible(shape) => {
                g.run(&self.gpu, shape, || step.forward(n, shape.1, row0))
            }
            _ => step.forward(n, shape.1, row0),
        };
        self.graphs = graphs;
        r
    }
}

impl Device for CudaBackend {
    fn info(&self) -> DeviceInfo {
        let r = self.ledger.report();
        let (maj, min) = self.gpu.compute_capability();
        let v = self.gpu.driver_version();
        DeviceInfo {
            backend: "cuda",
            name: self.gpu.name().to_string(),
            weights_bytes: r.weights_bytes,
            kv_cache_bytes: r.kv_cache_bytes,
            scratch_bytes: r.scratch_bytes,
            sm: Some(format!("{maj}.{min}")),
            runtime_version: Some(format!("{}.{}", v / 1000, (v % 1000) / 10)),
        }
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn context_length(&self) -> usize {
        self.config.context_length
    }

    fn alloc_seq(&mut self, max_tokens: usize) -> Result<SeqSlot, EngineError> {
        let ctx = self.config.context_length;
        if max_tokens == 0 || max_tokens > ctx {
            return Err(invalid(format!(
                "a sequence of {max_tokens} tokens: must be 1..={ctx} (the model's context)"
            )));
        }
        let (slot, pages) = self.pages.alloc(max_tokens)?;
        let page_list = pages.pages.clone();
        let row = self.pages.table_row(&page_list);
        let at = (slot.0 as usize * self.pages.pages_per_slot() * 4) as u64;
        if let Err(e) = self.page_table.write_sync(at, &row) {
            self.pages.free(slot);
            return Err(e.into());
        }
        Ok(slot)
    }

    fn free_seq(&mut self, slot: SeqSlot) {
        self.pages.free(slot);
    }

    fn free_kv_tokens(&self) -> usize {
        self.pages.free_tokens()
    }

    fn copy_kv_prefix(
        &mut self,
        from: SeqSlot,
        to: SeqSlot,
        n_tokens: usize,
    ) -> Result<(), EngineError> {
        self.gpu.bind()?;
        validate_prefix_copy(from, to, n_tokens, |slot| {
            self.pages.get(slot).map(|p| SlotExtent {
                len: p.len,
                max_tokens: p.max_tokens,
            })
        })?;
        // One launch over every layer's K and V; queued on the stream, so the next step's
        // kernels (same stream) read the copied rows.
        let step = self.step();
        step.ops.kv_copy_prefix(
            &step.geo,
            self.kv.ptr(),
            2 * self.config.n_layers,
            step.layer_kv_bytes,
            (from.0, to.0),
            n_tokens,
        )?;
        if let Some(s) = self.pages.get_mut(to) {
            s.len = n_tokens;
        }
        Ok(())
    }

    fn kv_prefix_kept(&self, from: SeqSlot, n_tokens: usize, _to_max_tokens: usize) -> bool {
        // Every layer keeps every position here (no trimmed windows on this backend yet).
        self.pages.get(from).is_some_and(|p| n_tokens <= p.len)
    }

    fn forward(&mut self, batch: &[SeqInput<'_>]) -> Result<usize, EngineError> {
        self.n_rows = 0;
        self.gpu.bind()?;
        let rows = self.validate(batch)?;
        let t = self.max_batch_tokens;
        let (mut tokens, mut pos, mut slot, mut out_rows) = (
            Vec::with_capacity(t),
            Vec::with_capacity(t),
            Vec::with_capacity(t),
            Vec::new(),
        );
        let mut row0 = 0usize;
        for seq in batch {
            for (j, &tok) in seq.tokens.iter().enumerate() {
                let last = j + 1 == seq.tokens.len();
                let wants = match seq.logits {
                    LogitsWanted::None => false,
                    LogitsWanted::Last => last,
                    LogitsWanted::All => true,
                };
                if wants {
                    out_rows.push(tokens.len() as i32);
                }
                tokens.push(tok);
                pos.push((seq.start_pos + j) as i32);
                slot.push(seq.slot.0 as i32);
                if tokens.len() == t {
                    self.run_chunk(&tokens, &pos, &slot, &out_rows, row0)?;
                    row0 += out_rows.len();
                    tokens.clear();
                    pos.clear();
                    slot.clear();
                    out_rows.clear();
                }
            }
        }
        if !tokens.is_empty() {
            self.run_chunk(&tokens, &pos, &slot, &out_rows, row0)?;
            row0 += out_rows.len();
        }
        debug_assert_eq!(row0, rows);
        for seq in batch {
            if let Some(s) = self.pages.get_mut(seq.slot) {
                s.len += seq.tokens.len();
            }
        }
        self.n_rows = rows;
        Ok(rows)
    }

    // The logits operations: `crate::logits`.
    fn logits_argmax(&self, row: usize) -> Result<(u32, f32), EngineError> {
        self.argmax_of_row(row)
    }

    fn logits_top_k(&self, row: usize, k: usize) -> Result<Vec<(u32, f32)>, EngineError> {
        self.top_k_of_row(row, k)
    }

    fn logits_row(&self, row: usize) -> Result<Vec<f32>, EngineError> {
        self.copy_row(row)
    }

    fn logits_penalize(
        &mut self,
        row: usize,
        history: &[u32],
        repeat: f32,
        frequency: f32,
        presence: f32,
    ) -> Result<(), EngineError> {
        let p = Penalties {
            repeat,
            frequency,
            presence,
        };
        self.penalize_row(row, history, p)
    }

    fn logits_mask(&mut self, row: usize, allowed: &[u32]) -> Result<(), EngineError> {
        self.mask_row(row, allowed)
    }

    fn logits_logsumexp(&self, row: usize) -> Result<f32, EngineError> {
        self.logsumexp_of_row(row)
    }

    fn logits_gather(&self, row: usize, ids: &[u32]) -> Result<Vec<f32>, EngineError> {
        self.gather_of_row(row, ids)
    }
}
