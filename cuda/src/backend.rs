//! [`CudaBackend`]: a model on one GPU, implementing [`orcd_engine::Device`].
//!
//! Startup: open the GPU, compile/load the kernels, check that weights + KV cache + scratch fit
//! in free VRAM (else [`EngineError::InsufficientVram`]), upload the weights, allocate the KV
//! page pool and the scratch once, and verify every allocation's residency.
//!
//! A step ([`Device::forward`]) flattens the batch into chunks of at most `max_batch_tokens`
//! tokens, uploads each chunk's metadata in one copy and queues the forward pass, which reads
//! like the CPU one (`orcd_engine::cpu::forward`): a list of launches, no host synchronization
//! and no allocation. Logits stay on the GPU; the `logits_*` operations run kernels on them
//! and copy back a few bytes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use cudarc::driver::result;
use orcd_engine::EngineError;
use orcd_engine::device::{
    Device, DeviceInfo, LogitsWanted, SeqInput, SeqSlot, SlotExtent, validate_batch,
};
use orcd_engine::model::{Activation, Model, ModelConfig};

use crate::compile::{KernelCompiler, default_cache_dir};
use crate::driver::{GpuContext, check};
use crate::graph::GraphCache;
use crate::kernels::Kernels;
use crate::kv_cache::{PAGE_TOKENS, PagePool};
use crate::ops::{ActsQ8Dev, KvGeometry, Ops, PkKernel, RopeStyle};
use crate::scratch::Scratch;
use crate::vram::{DeviceBuffer, PinnedBuffer, Purpose, VramLedger, VramReport};
use crate::weights::{DevTensor, GpuWeights, weights_bytes};

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
    /// Packed matrices against more than [`GEMM_MIN_COLS`] - 1 activation columns (prefill,
    /// batches) go through the tensor-core GEMM (`gemm_q8.cu`), which computes the same
    /// canonical dot product bit for bit; off: the matrix-vector kernels in tiles of 8 columns.
    /// Default on; `ORCD_GEMM=0` turns the default off.
    pub gemm: bool,
}

/// Fewest activation columns a packed matrix takes the GEMM for (with [`CudaOptions::gemm`]):
/// the matrix-vector kernels read the weights once per 8 columns.
pub const GEMM_MIN_COLS: usize = 9;

impl Default for CudaOptions {
    fn default() -> Self {
        CudaOptions {
            gpu: 0,
            kv_cache_bytes: None,
            kv_tokens_budget: None,
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

/// A model loaded on one GPU. Field order is drop order: device memory and modules go before
/// the context that owns them.
pub struct CudaBackend {
    config: ModelConfig,
    weights: GpuWeights,
    /// Per layer K and V: (n_pages, PAGE_TOKENS, kv_dim) f32 each, back to back.
    kv: DeviceBuffer,
    /// (max_slots, pages_per_slot) i32.
    page_table: DeviceBuffer,
    pages: PagePool,
    scratch: Scratch,
    /// Host side of the chunk metadata copy.
    meta_host: PinnedBuffer,
    max_batch_tokens: usize,
    max_logits_rows: usize,
    /// Logits rows of the last forward.
    n_rows: usize,
    /// Captured forward passes by step shape; `None` when graphs are off.
    graphs: Option<GraphCache>,
    fused: bool,
    /// Whether packed matrices with many columns take the GEMM.
    gemm: bool,
    kernels: Kernels,
    ledger: Arc<VramLedger>,
    gpu: Arc<GpuContext>,
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

fn invalid(msg: String) -> EngineError {
    EngineError::InvalidInput(msg)
}

impl CudaBackend {
    /// Load `model` onto GPU `opts.gpu`.
    pub fn new(model: Model, opts: CudaOptions) -> Result<CudaBackend, EngineError> {
        let c = model.config.clone();
        let extended = model.extended_features();
        if !extended.is_empty() {
            return Err(EngineError::UnsupportedArchitecture(format!(
                "{} with {} (CUDA backend: not yet; the CPU backend runs it)",
                c.arch.name(),
                extended.join(", ")
            )));
        }
        if opts.max_batch_tokens == 0 || opts.max_logits_rows == 0 || opts.max_slots == 0 {
            return Err(invalid(
                "max_batch_tokens, max_logits_rows and max_slots must be positive".into(),
            ));
        }
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
        let gpu = Arc::new(GpuContext::new(opts.gpu)?);
        let (cc_major, cc_minor) = gpu.compute_capability();
        let dir = opts
            .kernel_cache_dir
            .clone()
            .unwrap_or_else(default_cache_dir);
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
        let t = opts.max_batch_tokens;
        let r = opts.max_logits_rows;
        let w_bytes = weights_bytes(&model, opts.packed);
        let s_bytes = Scratch::bytes(&c, t, r);
        let kv_token_bytes = (c.n_layers * 2 * c.kv_dim() * 4) as u64;
        let page_bytes = kv_token_bytes * PAGE_TOKENS as u64;
        let (free, _total) = gpu.mem_info()?;
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
        let pages = PagePool::new(n_pages, opts.max_slots, c.context_length);
        let kv = ledger.alloc(kv_bytes, Purpose::KvCache)?;
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
            kv_tokens = n_pages * PAGE_TOKENS,
            allocations_verified = checked,
            "model resident in VRAM"
        );
        Ok(CudaBackend {
            config: c,
            weights,
            kv,
            page_table,
            pages,
            scratch,
            meta_host,
            max_batch_tokens: t,
            max_logits_rows: r,
            n_rows: 0,
            graphs: opts.cuda_graphs.then(GraphCache::default),
            fused: opts.fused,
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

    /// Device bytes held per purpose (for `/health`).
    pub fn vram_report(&self) -> VramReport {
        self.ledger.report()
    }

    /// Check with the driver that every allocation is plain device memory (spec 1012).
    pub fn verify_residency(&self) -> Result<usize, EngineError> {
        self.ledger.verify_residency()
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
        self.gpu.synchronize()
    }

    fn ops(&self) -> Ops<'_> {
        Ops::new(&self.gpu, &self.kernels)
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
    ) -> Result<(), EngineError> {
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
        match self.graphs.take() {
            Some(mut graphs) if graphs.eligible(shape) => {
                let r = graphs.run(&self.gpu, shape, || self.queue_forward(n, shape.1, row0));
                self.graphs = Some(graphs);
                r
            }
            other => {
                self.graphs = other;
                self.queue_forward(n, out_rows.len(), row0)
            }
        }
    }

    /// The forward pass of `n` tokens whose metadata is on the device; `r` logits rows go to
    /// rows `row0..` of the logits buffer.
    fn queue_forward(&self, n: usize, r: usize, row0: usize) -> Result<(), EngineError> {
        let c = &self.config;
        let s = &self.scratch;
        let w = &self.weights;
        let ops = self.ops();
        let (dim, kv_dim, hd) = (c.dim, c.kv_dim(), c.head_dim);
        let eps = c.rms_eps;
        let style = match c.rope_style {
            orcd_engine::model::RopeStyle::Normal => RopeStyle::Norm,
            orcd_engine::model::RopeStyle::Neox => RopeStyle::Neox,
        };
        let geo = KvGeometry {
            page_table: self.page_table.ptr(),
            pages_per_slot: self.pages.pages_per_slot(),
            page_tokens: PAGE_TOKENS,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
        };
        let layer_kv_bytes = (self.pages.n_pages() * PAGE_TOKENS * kv_dim * 4) as u64;

        // token embedding (scaled on Gemma)
        let e = &w.token_embd;
        if e.packed {
            let vocab = e.rows;
            ops.embed_packed(e.ty, e.ptr, vocab, s.tokens, s.x, n, dim, c.embed_scale)?;
        } else {
            ops.embed(e.ty, e.ptr, s.tokens, s.x, n, dim, c.embed_scale)?;
        }
        // the transformer blocks
        if self.fused {
            self.queue_layers_fused(n, &geo, layer_kv_bytes, style)?;
        } else {
            self.queue_layers(n, &geo, layer_kv_bytes, style)?;
        }
        if r > 0 {
            // final norm of the rows that want logits
            ops.gather_rows(s.x, s.out_rows, s.out_x, r, dim)?;
            let out = &w.output;
            let dst = s.logits + (row0 * c.vocab_size * 4) as u64;
            if out.packed {
                // the norm on the fly in the quantization, then the classifier
                ops.quantize_q8(s.out_x, dim, r, Some((w.output_norm.ptr, eps)), s.acts)?;
                self.linear_q8(out, s.acts, r, dst, c.vocab_size, false)?;
            } else {
                ops.rms_norm(s.out_x, w.output_norm.ptr, s.out_x, r, dim, eps)?;
                // classifier into logits rows row0..row0 + r
                ops.matmul(
                    out.ty,
                    out.ptr,
                    s.out_x,
                    dst,
                    c.vocab_size,
                    dim,
                    r,
                    c.vocab_size,
                )?;
            }
        }
        Ok(())
    }

    /// y (+)= W x for a weight tensor of any layout: a packed W quantizes x: (ncols, W.cols)
    /// into the scratch's Q8 activations first. y: (ncols, y_stride) f32.
    fn linear(
        &self,
        wt: &DevTensor,
        x: u64,
        ncols: usize,
        y: u64,
        y_stride: usize,
        accumulate: bool,
    ) -> Result<(), EngineError> {
        let ops = self.ops();
        if wt.packed {
            ops.quantize_q8(x, wt.cols, ncols, None, self.scratch.acts)?;
            self.linear_q8(wt, self.scratch.acts, ncols, y, y_stride, accumulate)
        } else if accumulate {
            ops.matmul_add(wt.ty, wt.ptr, x, y, wt.rows, wt.cols, ncols, y_stride)
        } else {
            ops.matmul(wt.ty, wt.ptr, x, y, wt.rows, wt.cols, ncols, y_stride)
        }
    }

    /// y (+)= W x for a packed W and Q8 activations already in `acts` (ncols columns). With
    /// [`Self::qkv_q8`] and [`Self::glu_q8`], the dispatch points of the packed matrices: a
    /// prefill GEMM (same canonical results) joins each as one branch on `ncols`.
    fn linear_q8(
        &self,
        wt: &DevTensor,
        acts: ActsQ8Dev,
        ncols: usize,
        y: u64,
        y_stride: usize,
        accumulate: bool,
    ) -> Result<(), EngineError> {
        if self.use_gemm(ncols) {
            return self.ops().gemm_q8(
                wt.ty, wt.ptr, wt.rows, wt.cols, acts.q, acts.d, acts.sum, ncols, y, y_stride,
                accumulate,
            );
        }
        self.ops().linear_packed(
            wt.ty, wt.ptr, wt.rows, wt.cols, acts, ncols, y, y_stride, accumulate,
        )
    }

    /// Whether a packed matrix against `ncols` activation columns takes the GEMM.
    fn use_gemm(&self, ncols: usize) -> bool {
        self.gemm && ncols >= GEMM_MIN_COLS
    }

    /// q, k, v (packed, one type) from the same Q8 activations in one launch: parts[i] =
    /// (W_i, y_i: (ncols, rows_i) f32), plus the optional biases b_i (rows_i) f32 (Qwen2),
    /// added as `add_bias` does (fused into the launch). With many columns: a GEMM per part,
    /// then `add_bias` per bias (the same f32 add).
    fn qkv_q8(
        &self,
        w: [&DevTensor; 3],
        y: [u64; 3],
        bias: [Option<&DevTensor>; 3],
        acts: ActsQ8Dev,
        ncols: usize,
    ) -> Result<(), EngineError> {
        if self.use_gemm(ncols) {
            for ((wt, y), b) in w.into_iter().zip(y).zip(bias) {
                self.linear_q8(wt, acts, ncols, y, wt.rows, false)?;
                if let Some(b) = b {
                    self.ops().add_bias(y, b.ptr, ncols, wt.rows)?;
                }
            }
            return Ok(());
        }
        let parts = [0, 1, 2].map(|i| (w[i].ptr, y[i], w[i].rows));
        let biases = bias.map(|b| b.map_or(0, |t| t.ptr));
        self.ops().matmul3_packed(
            w[0].ty,
            parts,
            biases,
            w[0].cols,
            acts,
            ncols,
            PkKernel::default_choice(),
        )
    }

    /// out = act(Wg x) * (Wu x) (packed, one type; act GELU-tanh or SiLU) from the same Q8
    /// activations in one launch. out: (ncols, Wg.rows) f32. With many columns: the GEMM of
    /// Wg into out and of Wu into `spare` (as large), then the gated activation (the same float
    /// operations as the fused kernel's epilogue).
    fn glu_q8(
        &self,
        g: &DevTensor,
        u: &DevTensor,
        acts: ActsQ8Dev,
        ncols: usize,
        out: u64,
        spare: u64,
        gelu: bool,
    ) -> Result<(), EngineError> {
        if self.use_gemm(ncols) {
            self.linear_q8(g, acts, ncols, out, g.rows, false)?;
            self.linear_q8(u, acts, ncols, spare, u.rows, false)?;
            let n = ncols * g.rows;
            return if gelu {
                self.ops().gelu_tanh_mul(out, spare, out, n)
            } else {
                self.ops().silu_mul(out, spare, out, n)
            };
        }
        self.ops().matmul_glu_packed(
            g.ty,
            g.ptr,
            u.ptr,
            g.rows,
            g.cols,
            acts,
            ncols,
            out,
            gelu,
            PkKernel::default_choice(),
        )
    }

    /// The blocks, one launch per op (the reference for the fused path).
    fn queue_layers(
        &self,
        n: usize,
        geo: &KvGeometry,
        layer_kv_bytes: u64,
        style: RopeStyle,
    ) -> Result<(), EngineError> {
        let c = &self.config;
        let s = &self.scratch;
        let w = &self.weights;
        let ops = self.ops();
        let (dim, q_dim, kv_dim, hd, ffn) = (c.dim, c.q_dim(), c.kv_dim(), c.head_dim, c.ffn_dim);
        let eps = c.rms_eps;
        for (l, lw) in w.layers.iter().enumerate() {
            let kc = self.kv.ptr_at(2 * l as u64 * layer_kv_bytes)?;
            let vc = self.kv.ptr_at((2 * l as u64 + 1) * layer_kv_bytes)?;
            // attention norm
            ops.rms_norm(s.x, lw.attn_norm.ptr, s.xb, n, dim, eps)?;
            // q, k, v projections
            self.linear(&lw.attn_q, s.xb, n, s.q, q_dim, false)?;
            self.linear(&lw.attn_k, s.xb, n, s.k, kv_dim, false)?;
            self.linear(&lw.attn_v, s.xb, n, s.v, kv_dim, false)?;
            // projection biases (Qwen2)
            if let Some(b) = &lw.attn_q_bias {
                ops.add_bias(s.q, b.ptr, n, q_dim)?;
            }
            if let Some(b) = &lw.attn_k_bias {
                ops.add_bias(s.k, b.ptr, n, kv_dim)?;
            }
            if let Some(b) = &lw.attn_v_bias {
                ops.add_bias(s.v, b.ptr, n, kv_dim)?;
            }
            // per-head query/key norms (Gemma 3)
            if let Some(qn) = &lw.attn_q_norm {
                ops.rms_norm(s.q, qn.ptr, s.q, n * c.n_heads, hd, eps)?;
            }
            if let Some(kn) = &lw.attn_k_norm {
                ops.rms_norm(s.k, kn.ptr, s.k, n * c.n_kv_heads, hd, eps)?;
            }
            // RoPE on queries and keys
            let base = c.rope_base_of(l);
            let fs = c.rope_freq_scale_of(l);
            ops.rope(s.q, s.pos, n, c.n_heads, hd, c.rope_dims, base, fs, style)?;
            ops.rope(
                s.k,
                s.pos,
                n,
                c.n_kv_heads,
                hd,
                c.rope_dims,
                base,
                fs,
                style,
            )?;
            // append the new keys and values to the cache
            ops.kv_write(geo, s.k, s.v, kc, vc, s.slot, s.pos, n)?;
            // attention of every new token over its slot (causal, windowed on sliding layers)
            let window = c.window_of(l).unwrap_or(0);
            ops.attention(
                geo,
                s.q,
                kc,
                vc,
                s.slot,
                s.pos,
                s.att,
                n,
                window,
                c.attn_scale,
            )?;
            // output projection
            self.linear(&lw.attn_output, s.att, n, s.xb2, dim, false)?;
            // post-attention norm (Gemma 3)
            if let Some(pn) = &lw.post_attention_norm {
                ops.rms_norm(s.xb2, pn.ptr, s.xb2, n, dim, eps)?;
            }
            // residual
            ops.add(s.x, s.xb2, n * dim)?;

            // FFN norm
            ops.rms_norm(s.x, lw.ffn_norm.ptr, s.xb, n, dim, eps)?;
            // gate and up projections
            self.linear(&lw.ffn_gate, s.xb, n, s.hb, ffn, false)?;
            self.linear(&lw.ffn_up, s.xb, n, s.hb2, ffn, false)?;
            // gated activation: act(gate) * up
            match c.activation {
                Activation::Silu => ops.silu_mul(s.hb, s.hb2, s.hb, n * ffn)?,
                Activation::GeluTanh => ops.gelu_tanh_mul(s.hb, s.hb2, s.hb, n * ffn)?,
            }
            // down projection
            self.linear(&lw.ffn_down, s.hb, n, s.xb2, dim, false)?;
            // post-FFN norm (Gemma 3)
            if let Some(pn) = &lw.post_ffw_norm {
                ops.rms_norm(s.xb2, pn.ptr, s.xb2, n, dim, eps)?;
            }
            // residual
            ops.add(s.x, s.xb2, n * dim)?;
        }
        Ok(())
    }

    /// The blocks with fused kernels, per layer: q/k/v in one launch reading the residual
    /// stream through the attention norm on the fly; q/k norm + RoPE + KV store; attention;
    /// the output projection adding into the residual stream; gate/up with the FFN norm on the
    /// fly and the activation; the down projection adding into the residual stream. Six
    /// launches per llama layer. Where q/k/v (or gate/up) differ in type, or a post-norm
    /// (Gemma 3) sits before a residual add, that step falls back to separate launches.
    fn queue_layers_fused(
        &self,
        n: usize,
        geo: &KvGeometry,
        layer_kv_bytes: u64,
        style: RopeStyle,
    ) -> Result<(), EngineError> {
        let c = &self.config;
        let s = &self.scratch;
        let w = &self.weights;
        let ops = self.ops();
        let (dim, q_dim, kv_dim, ffn) = (c.dim, c.q_dim(), c.kv_dim(), c.ffn_dim);
        let eps = c.rms_eps;
        for (l, lw) in w.layers.iter().enumerate() {
            let kc = self.kv.ptr_at(2 * l as u64 * layer_kv_bytes)?;
            let vc = self.kv.ptr_at((2 * l as u64 + 1) * layer_kv_bytes)?;
            // attention norm and q, k, v projections
            let (q, k, v) = (&lw.attn_q, &lw.attn_k, &lw.attn_v);
            let parts = [
                (q.ptr, s.q, q_dim),
                (k.ptr, s.k, kv_dim),
                (v.ptr, s.v, kv_dim),
            ];
            let biases = [&lw.attn_q_bias, &lw.attn_k_bias, &lw.attn_v_bias];
            let qkv_packed = q.packed && k.packed && v.packed && q.ty == k.ty && k.ty == v.ty;
            if qkv_packed {
                ops.quantize_q8(s.x, dim, n, Some((lw.attn_norm.ptr, eps)), s.acts)?;
                let b = biases.map(|b| b.as_ref());
                self.qkv_q8([q, k, v], [s.q, s.k, s.v], b, s.acts, n)?;
            } else if !(q.packed || k.packed || v.packed) && q.ty == k.ty && k.ty == v.ty {
                ops.matmul3(q.ty, parts, s.x, dim, n, Some((lw.attn_norm.ptr, eps)))?;
            } else {
                ops.rms_norm(s.x, lw.attn_norm.ptr, s.xb, n, dim, eps)?;
                self.linear(q, s.xb, n, s.q, q_dim, false)?;
                self.linear(k, s.xb, n, s.k, kv_dim, false)?;
                self.linear(v, s.xb, n, s.v, kv_dim, false)?;
            }
            // projection biases (Qwen2; the packed q/k/v launch added them)
            for (b, y, len) in [
                (biases[0], s.q, q_dim),
                (biases[1], s.k, kv_dim),
                (biases[2], s.v, kv_dim),
            ] {
                if let Some(b) = b
                    && !qkv_packed
                {
                    ops.add_bias(y, b.ptr, n, len)?;
                }
            }
            // per-head q/k norms (Gemma 3), RoPE, and the store of keys and values
            let norms = (
                lw.attn_q_norm.as_ref().map_or(0, |t| t.ptr),
                lw.attn_k_norm.as_ref().map_or(0, |t| t.ptr),
            );
            let base = c.rope_base_of(l);
            ops.rope_qk_store(
                geo,
                s.q,
                s.k,
                s.v,
                kc,
                vc,
                s.slot,
                s.pos,
                norms,
                eps,
                n,
                c.rope_dims,
                base,
                c.rope_freq_scale_of(l),
                style,
            )?;
            // attention of every new token over its slot (causal, windowed on sliding layers)
            let window = c.window_of(l).unwrap_or(0);
            ops.attention(
                geo,
                s.q,
                kc,
                vc,
                s.slot,
                s.pos,
                s.att,
                n,
                window,
                c.attn_scale,
            )?;
            // output projection, (post-attention norm on Gemma 3,) residual
            let o = &lw.attn_output;
            match &lw.post_attention_norm {
                Some(pn) => {
                    self.linear(o, s.att, n, s.xb2, dim, false)?;
                    ops.rms_norm(s.xb2, pn.ptr, s.xb2, n, dim, eps)?;
                    ops.add(s.x, s.xb2, n * dim)?;
                }
                None => self.linear(o, s.att, n, s.x, dim, true)?,
            }
            // FFN norm, gate and up projections with the activation
            let (g, u) = (&lw.ffn_gate, &lw.ffn_up);
            let gelu = c.activation == Activation::GeluTanh;
            if g.packed && u.packed && g.ty == u.ty {
                ops.quantize_q8(s.x, dim, n, Some((lw.ffn_norm.ptr, eps)), s.acts)?;
                self.glu_q8(g, u, s.acts, n, s.hb, s.hb2, gelu)?;
            } else if !(g.packed || u.packed) && g.ty == u.ty {
                let norm = Some((lw.ffn_norm.ptr, eps));
                ops.matmul_glu(g.ty, g.ptr, u.ptr, s.x, s.hb, ffn, dim, n, gelu, norm)?;
            } else {
                ops.rms_norm(s.x, lw.ffn_norm.ptr, s.xb, n, dim, eps)?;
                self.linear(g, s.xb, n, s.hb, ffn, false)?;
                self.linear(u, s.xb, n, s.hb2, ffn, false)?;
                if gelu {
                    ops.gelu_tanh_mul(s.hb, s.hb2, s.hb, n * ffn)?;
                } else {
                    ops.silu_mul(s.hb, s.hb2, s.hb, n * ffn)?;
                }
            }
            // down projection, (post-FFN norm on Gemma 3,) residual
            let d = &lw.ffn_down;
            match &lw.post_ffw_norm {
                Some(pn) => {
                    self.linear(d, s.hb, n, s.xb2, dim, false)?;
                    ops.rms_norm(s.xb2, pn.ptr, s.xb2, n, dim, eps)?;
                    ops.add(s.x, s.xb2, n * dim)?;
                }
                None => self.linear(d, s.hb, n, s.x, dim, true)?,
            }
        }
        Ok(())
    }

    fn check_row(&self, row: usize) -> Result<(), EngineError> {
        if row >= self.n_rows {
            return Err(invalid(format!(
                "logits row {row} of a step that produced {}",
                self.n_rows
            )));
        }
        Ok(())
    }

    /// Copy `dst.len()` values from device address `src` after the queued work.
    fn download<T: Copy>(&self, src: u64, dst: &mut [T]) -> Result<(), EngineError> {
        self.gpu.synchronize()?;
        // SAFETY: every caller passes an address inside the scratch with room for `dst`.
        check(
            unsafe { result::memcpy_dtoh_sync(dst, src) },
            "cuMemcpyDtoH",
        )
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
            return Err(e);
        }
        Ok(slot)
    }

    fn free_seq(&mut self, slot: SeqSlot) {
        self.pages.free(slot);
    }

    fn free_kv_tokens(&self) -> usize {
        self.pages.free_tokens()
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

    fn logits_argmax(&self, row: usize) -> Result<(u32, f32), EngineError> {
        self.check_row(row)?;
        self.gpu.bind()?;
        let s = &self.scratch;
        self.ops()
            .argmax(s.logits, row, self.config.vocab_size, s.argmax)?;
        let mut out = [0u32; 2];
        self.download(s.argmax, &mut out)?;
        Ok((out[0], f32::from_bits(out[1])))
    }

    fn logits_top_k(&self, row: usize, k: usize) -> Result<Vec<(u32, f32)>, EngineError> {
        self.check_row(row)?;
        let vocab = self.config.vocab_size;
        let k = k.min(vocab);
        if k == 0 {
            return Ok(Vec::new());
        }
        self.gpu.bind()?;
        let s = &self.scratch;
        self.ops().top_k(
            s.logits,
            row,
            vocab,
            k,
            s.topk_ids,
            s.topk_vals,
            s.topk_count,
        )?;
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

    fn logits_row(&self, row: usize) -> Result<Vec<f32>, EngineError> {
        self.check_row(row)?;
        self.gpu.bind()?;
        let vocab = self.config.vocab_size;
        let mut out = vec![0f32; vocab];
        self.download(self.scratch.logits + (row * vocab * 4) as u64, &mut out)?;
        Ok(out)
    }

    fn logits_penalize(
        &mut self,
        row: usize,
        history: &[u32],
        repeat: f32,
        frequency: f32,
        presence: f32,
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
        self.ops().penalize(
            s.logits,
            row,
            vocab,
            s.pen_ids,
            s.pen_counts,
            ids.len(),
            repeat,
            frequency,
            presence,
        )
    }
}

impl CudaBackend {
    /// Copy `src` to device address `dst` (inside the scratch) after the queued work.
    fn upload(&self, dst: u64, src: &[u32]) -> Result<(), EngineError> {
        self.gpu.synchronize()?;
        // SAFETY: `dst` is a scratch array of `vocab` u32 and `src` holds distinct ids < vocab.
        check(
            unsafe { result::memcpy_htod_sync(dst, src) },
            "cuMemcpyHtoD(penalties)",
        )
    }
}
