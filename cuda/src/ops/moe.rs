//! Mixture of experts (`moe.cu`, GPT-OSS): routing on the device, the chosen experts'
//! projections straight from their stacked GGUF tensors (MXFP4 stays MXFP4), the clamped
//! SwiGLU and the weighted combine into the residual stream. No readback.

use orcd_model::quant::GgmlType;

use super::{Ops, blocks, int};
use crate::error::{CudaError, CudaResult};
use crate::kernels::{Arg, launch, shape};

/// The stacked experts of one projection: `n_expert` matrices of (`rows`, `cols`) of type
/// `ty` at `ptr`, back to back (expert `e` is rows `e * rows..` of the GGUF tensor), and their
/// biases, (n_expert, rows) f32 at `bias` (0: none).
#[derive(Copy, Clone, Debug)]
pub struct Experts {
    pub ptr: u64,
    pub ty: GgmlType,
    pub n_expert: usize,
    pub rows: usize,
    pub cols: usize,
    pub bias: u64,
}

/// The (token, choice) pairs of a step: `ids` (ntok, k) i32, each token's chosen experts
/// (pair p = t * k + j).
#[derive(Copy, Clone, Debug)]
pub struct Pairs {
    pub ids: u64,
    pub ntok: usize,
    pub k: usize,
}

/// Which kernel computes the experts' projections; both give the same bits for a pair.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MoeKernel {
    /// [`MoeKernel::Grouped`] when the step has at least as many pairs as there are experts
    /// (each expert then serves a pair on average), else [`MoeKernel::PerPair`].
    Auto,
    /// `moe_mmv_<type>_f32`: a block per (rows, pair); only the chosen experts are read, each
    /// once per pair that chose it (decode).
    PerPair,
    /// `moe_mmv_grouped_<type>_f32`: a block per (rows, expert) over every pair that chose it;
    /// each expert read once per step (prefill, batches).
    Grouped,
}

impl Ops<'_> {
    /// The top `pairs.k` experts of each of `pairs.ntok` tokens by router logits (+ `bias`, 0:
    /// none), written to `pairs.ids` (ntok, k) i32, highest first (the lower index on a tie), and
    /// `w` (ntok, k) f32, the softmax over the chosen logits. logits: (ntok, n_expert) f32.
    pub fn moe_route(
        &self,
        logits: u64,
        bias: u64,
        n_expert: usize,
        pairs: Pairs,
        w: u64,
    ) -> CudaResult<()> {
        let Pairs { ids, ntok, k } = pairs;
        if k == 0 || k > shape::MOE_MAX_USED || k > n_expert {
            return Err(CudaError::shape(format!(
                "{k} experts per token of {n_expert} (at most {})",
                shape::MOE_MAX_USED
            )));
        }
        let f = self.k.get("moe_route_f32")?;
        launch(
            self.gpu,
            f,
            (int(ntok, "tokens")? as u32, 1, 1),
            (32, 1, 1),
            &[
                Arg::Ptr(logits),
                Arg::Ptr(bias),
                Arg::Ptr(ids),
                Arg::Ptr(w),
                Arg::I32(int(n_expert, "experts")?),
                Arg::I32(int(k, "experts per token")?),
            ],
            "moe_route_f32",
        )
    }

    /// y[p] = W_{ids[p]} x_p + b_{ids[p]} for every pair p = t * k + j of the `pairs`' tokens
    /// and their chosen experts: x_p = x[t] (`x_per_pair` false: gate and up) or x[p] (true:
    /// down), through `kernel`. x: (ntok or ntok * k, e.cols) f32; y: (ntok * k, e.rows) f32;
    /// every id below `e.n_expert`.
    pub fn moe_matmul(
        &self,
        e: Experts,
        x: u64,
        x_per_pair: bool,
        pairs: Pairs,
        y: u64,
        kernel: MoeKernel,
    ) -> CudaResult<()> {
        if !e.cols.is_multiple_of(32)
            || !e.cols.is_multiple_of(e.ty.block_size())
            || e.rows == 0
            || e.n_expert == 0
        {
            return Err(CudaError::shape(format!(
                "{} experts of {} ({} x {})",
                e.n_expert,
                e.ty.name(),
                e.rows,
                e.cols
            )));
        }
        let n_pairs = pairs.ntok * pairs.k;
        if n_pairs == 0 {
            return Ok(());
        }
        let grouped = match kernel {
            MoeKernel::Auto => n_pairs >= e.n_expert,
            MoeKernel::PerPair => false,
            MoeKernel::Grouped => true,
        };
        let mut args = vec![
            Arg::Ptr(e.ptr),
            Arg::Ptr(e.bias),
            Arg::Ptr(x),
            Arg::I32(i32::from(x_per_pair)),
            Arg::Ptr(pairs.ids),
            Arg::Ptr(y),
            Arg::I32(int(e.rows, "rows")?),
            Arg::I32(int(e.cols, "columns")?),
            Arg::I32(int(pairs.k, "experts per token")?),
        ];
        let (name, grid_y) = if grouped {
            args.push(Arg::I32(int(n_pairs, "token-expert pairs")?));
            ("moe_mmv_grouped", e.n_expert)
        } else {
            ("moe_mmv", n_pairs)
        };
        let f = self.k.for_type(name, e.ty, "_f32")?;
        launch(
            self.gpu,
            f,
            (
                blocks(e.rows, shape::MOE_ROWS_PER_BLOCK),
                int(grid_y, "blocks")? as u32,
                1,
            ),
            (shape::MOE_ROWS_PER_BLOCK * 32, 1, 1),
            &args,
            name,
        )
    }

    /// gate = swiglu_oai(gate, up), elementwise over n f32 (GPT-OSS's clamped SwiGLU).
    pub fn moe_swiglu_oai(&self, gate: u64, up: u64, n: usize) -> CudaResult<()> {
        let f = self.k.get("moe_swiglu_oai_f32")?;
        launch(
            self.gpu,
            f,
            (blocks(n, shape::MOE_THREADS), 1, 1),
            (shape::MOE_THREADS, 1, 1),
            &[Arg::Ptr(gate), Arg::Ptr(up), Arg::I32(int(n, "n")?)],
            "moe_swiglu_oai_f32",
        )
    }

    /// x[t] += sum_j w[t][j] y[t * k + j] (j ascending) for `ntok` tokens: x (ntok, dim),
    /// y (ntok * k, dim), w (ntok, k) f32.
    pub fn moe_combine(
        &self,
        x: u64,
        y: u64,
        w: u64,
        ntok: usize,
        dim: usize,
        k: usize,
    ) -> CudaResult<()> {
        let f = self.k.get("moe_combine_f32")?;
        launch(
            self.gpu,
            f,
            (int(ntok, "tokens")? as u32, 1, 1),
            (shape::MOE_THREADS, 1, 1),
            &[
                Arg::Ptr(x),
                Arg::Ptr(y),
                Arg::Ptr(w),
                Arg::I32(int(dim, "dim")?),
                Arg::I32(int(k, "experts per token")?),
            ],
            "moe_combine_f32",
        )
    }
}
