//! Typed operands of the launchers ([`crate::ops`]): a weight matrix knows its type, layout and
//! shape, Q8 activations are one value, an output is a view with its stride and whether it is
//! added to, and the per-step token arrays travel together. A launcher takes a handful of these
//! rather than a list of raw device addresses and sizes whose order only its comment tells.
//!
//! Addresses are device addresses (`u64`, `CUdeviceptr`); every buffer named here is owned
//! elsewhere (the weights, the scratch, the KV cache, a test's buffers) and outlives the step.

use orcd_model::quant::GgmlType;

use crate::error::{CudaError, CudaResult};
use crate::packed::is_packed_type;

/// A weight matrix in GGUF blocks: `rows` rows of `cols` values of type `ty`, each row
/// `ty.row_bytes(cols)` bytes, rows contiguous.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct GgufMatrix {
    pub ptr: u64,
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
}

impl GgufMatrix {
    /// Rows `r0..r0 + n` of this matrix (GGUF rows are contiguous, so a row range is one).
    pub fn row_range(&self, r0: usize, n: usize) -> CudaResult<GgufMatrix> {
        if r0 + n > self.rows {
            return Err(CudaError::shape(format!(
                "rows {r0}..{} of a {}-row matrix",
                r0 + n,
                self.rows
            )));
        }
        let row_bytes = self
            .ty
            .row_bytes(self.cols)
            .map_err(|e| CudaError::shape(e.to_string()))?;
        Ok(GgufMatrix {
            ptr: self.ptr + (r0 * row_bytes) as u64,
            rows: n,
            ..*self
        })
    }
}

/// A weight matrix in the packed layout of [`crate::packed`] (Q4_0, Q4_1 or Q8_0): `rows` rows
/// of `cols` values, `cols` a multiple of 32.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PackedMatrix {
    pub ptr: u64,
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
}

impl PackedMatrix {
    /// A packed matrix, checked to be of a packed type and width.
    pub fn new(ptr: u64, ty: GgmlType, rows: usize, cols: usize) -> CudaResult<PackedMatrix> {
        if !is_packed_type(ty) || cols == 0 || !cols.is_multiple_of(32) {
            return Err(CudaError::shape(format!(
                "a packed {} matrix of width {cols}",
                ty.name()
            )));
        }
        Ok(PackedMatrix {
            ptr,
            ty,
            rows,
            cols,
        })
    }
}

/// Q8 activations of up to some number of columns of width k (`crate::packed`):
/// q: (ncols, k) i8;  d: (ncols, k / 32) f32;  sum: (ncols, k / 32) i32.
#[derive(Copy, Clone, Debug)]
pub struct Q8Acts {
    pub q: u64,
    pub d: u64,
    pub sum: u64,
}

/// Where a matrix writes: column c's `rows` outputs at `ptr + 4 * c * stride` (f32), stride at
/// least the matrix's rows; `accumulate`: added to what is there (a fused residual add).
#[derive(Copy, Clone, Debug)]
pub struct OutView {
    pub ptr: u64,
    pub stride: usize,
    pub accumulate: bool,
}

impl OutView {
    /// y = W x into (ncols, stride) f32 at `ptr`.
    pub fn write(ptr: u64, stride: usize) -> OutView {
        OutView {
            ptr,
            stride,
            accumulate: false,
        }
    }

    /// y += W x into (ncols, stride) f32 at `ptr`.
    pub fn add(ptr: u64, stride: usize) -> OutView {
        OutView {
            ptr,
            stride,
            accumulate: true,
        }
    }
}

/// An RMS norm applied to a matrix's input on the fly (or by a norm launch):
/// weight: (width) f32.
#[derive(Copy, Clone, Debug)]
pub struct Norm {
    pub weight: u64,
    pub eps: f32,
}

/// The activation of a gated FFN: `act(gate) * up`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum GateAct {
    Silu,
    GeluTanh,
    /// GPT-OSS's clamped SwiGLU: its experts only (the dense FFN's fused kernels never see it).
    SwigluOai,
}

impl GateAct {
    /// The kernels' `gelu` flag.
    pub(crate) fn gelu_flag(self) -> i32 {
        i32::from(self == GateAct::GeluTanh)
    }
}

/// A gated pair of matrices of one type and shape: out = act(gate x) * (up x).
#[derive(Copy, Clone, Debug)]
pub struct Glu<M> {
    pub gate: M,
    pub up: M,
    pub act: GateAct,
}

/// The step's per-token arrays on the device: pos, slot: (n) i32.
#[derive(Copy, Clone, Debug)]
pub struct Tokens {
    pub n: usize,
    pub pos: u64,
    pub slot: u64,
}

/// One layer's KV cache: k, v: (n_pages, page_tokens) rows of kv_dim values each, in the
/// cache's type (`orcd_model::KvType::row_bytes` a row).
#[derive(Copy, Clone, Debug)]
pub struct KvLayer {
    pub k: u64,
    pub v: u64,
}

/// One row of a logits buffer (rows, vocab) f32.
#[derive(Copy, Clone, Debug)]
pub struct LogitsRow {
    pub logits: u64,
    pub row: usize,
    pub vocab: usize,
}

/// Where top-k writes: ids (k) u32, vals (k) f32, count 1 u32.
#[derive(Copy, Clone, Debug)]
pub struct TopKOut {
    pub ids: u64,
    pub vals: u64,
    pub count: u64,
}

/// The sampling penalties of one row (OpenAI's frequency and presence, and the repetition
/// penalty).
#[derive(Copy, Clone, Debug)]
pub struct Penalties {
    pub repeat: f32,
    pub frequency: f32,
    pub presence: f32,
}
