//! The matrix dispatch of a step: which kernel computes `y (+)= W x` for a weight tensor of
//! either layout. A GGUF-layout W takes the f32-activation kernels (`mmvq.cu`); a packed W
//! takes Q8 activations and the canonical dot product, through the matrix-vector kernels
//! (`mmvq_packed.cu`) for few columns or the tensor-core GEMM (`gemm_q8.cu`) for many, which
//! compute the same bits. [`Step::qkv_q8`] and [`Step::glu_q8`] are the fused forms of three
//! projections and of a gated pair.

use crate::error::{CudaError, CudaResult};
use crate::forward::Step;
use crate::operand::{GateAct, Glu, OutView, PackedMatrix, Q8Acts};
use crate::ops::{PackedPart, PkKernel};
use crate::weights::{DevTensor, Matrix};

/// Fewest activation columns a packed matrix takes the GEMM for (with
/// [`crate::CudaOptions::gemm`]): the matrix-vector kernels read the weights once per 8 columns.
pub const GEMM_MIN_COLS: usize = 9;

impl Step<'_> {
    /// out (+)= W x for a weight tensor of any layout; x: (ncols, W.cols) f32. A packed W
    /// quantizes x into the scratch's Q8 activations first.
    pub(crate) fn linear(
        &self,
        wt: &DevTensor,
        x: u64,
        ncols: usize,
        out: OutView,
    ) -> CudaResult<()> {
        match wt.matrix() {
            Matrix::Packed(w) => {
                self.ops.quantize_q8(x, w.cols, ncols, None, self.s.acts)?;
                self.linear_q8(w, self.s.acts, ncols, out)
            }
            Matrix::Gguf(w) => self.ops.matmul(w, x, ncols, out),
        }
    }

    /// Whether a packed matrix against `ncols` activation columns takes the GEMM.
    fn use_gemm(&self, ncols: usize) -> bool {
        self.gemm && ncols >= GEMM_MIN_COLS
    }

    /// out (+)= W x for a packed W and Q8 activations already in `acts` (ncols columns).
    pub(crate) fn linear_q8(
        &self,
        w: PackedMatrix,
        acts: Q8Acts,
        ncols: usize,
        out: OutView,
    ) -> CudaResult<()> {
        if self.use_gemm(ncols) {
            return self.ops.gemm_q8(w, acts, ncols, out);
        }
        self.ops.linear_packed(w, acts, ncols, out)
    }

    /// q, k, v (packed, one type) from the same Q8 activations in one launch: parts[i].w into
    /// parts[i].y: (ncols, rows_i) f32, plus the optional bias (Qwen2) added as `add_bias` does
    /// (fused into the launch). With many columns: a GEMM per part, then `add_bias` per bias
    /// (the same f32 add).
    pub(crate) fn qkv_q8(
        &self,
        parts: [PackedPart; 3],
        acts: Q8Acts,
        ncols: usize,
    ) -> CudaResult<()> {
        if self.use_gemm(ncols) {
            for p in parts {
                self.linear_q8(p.w, acts, ncols, OutView::write(p.y, p.w.rows))?;
                if p.bias != 0 {
                    self.ops.add_bias(p.y, p.bias, ncols, p.w.rows)?;
                }
            }
            return Ok(());
        }
        self.ops
            .matmul3_packed(parts, acts, ncols, PkKernel::default_choice())
    }

    /// out = act(Wg x) * (Wu x) (packed, one type) from the same Q8 activations in one launch.
    /// out: (ncols, Wg.rows) f32. With many columns: the GEMM of Wg into out and of Wu into
    /// `spare` (as large), then the gated activation (the same float operations as the fused
    /// kernel's epilogue).
    pub(crate) fn glu_q8(
        &self,
        glu: Glu<PackedMatrix>,
        acts: Q8Acts,
        ncols: usize,
        out: u64,
        spare: u64,
    ) -> CudaResult<()> {
        if self.use_gemm(ncols) {
            let (g, u) = (glu.gate, glu.up);
            self.linear_q8(g, acts, ncols, OutView::write(out, g.rows))?;
            self.linear_q8(u, acts, ncols, OutView::write(spare, u.rows))?;
            return self.gated(glu.act, out, spare, ncols * g.rows);
        }
        self.ops
            .matmul_glu_packed(glu, acts, ncols, out, PkKernel::default_choice())
    }

    /// gate = act(gate) * up, elementwise over n f32.
    pub(crate) fn gated(&self, act: GateAct, gate: u64, up: u64, n: usize) -> CudaResult<()> {
        match act {
            GateAct::Silu => self.ops.silu_mul(gate, up, gate, n),
            GateAct::GeluTanh => self.ops.gelu_tanh_mul(gate, up, gate, n),
            GateAct::SwigluOai => Err(CudaError::shape("the clamped SwiGLU has no kernel yet")),
        }
    }
}
