//! Quantized matrix times activations (`mmvq.cu`): the weights stay in their GGUF blocks and
//! are dequantized on the fly, 32 weights at a time, against f32 activations.

use orcd_engine::EngineError;
use orcd_engine::quant::GgmlType;

use super::{Ops, blocks, int};
use crate::kernels::{Arg, launch, shape};

impl Ops<'_> {
    /// y[c][r] = sum_i W[r][i] * x[c][i] for r < n, c < ncols.
    /// W: (n, k) of type `ty`, rows of `ty.row_bytes(k)` bytes;  x: (ncols, k) f32, 16-byte
    /// aligned;  y: (ncols, y_stride) f32 with y_stride >= n.  k must be a multiple of 32 and
    /// of the type's block size.
    pub fn matmul(
        &self,
        ty: GgmlType,
        w: u64,
        x: u64,
        y: u64,
        n: usize,
        k: usize,
        ncols: usize,
        y_stride: usize,
    ) -> Result<(), EngineError> {
        if !k.is_multiple_of(32) || !k.is_multiple_of(ty.block_size()) || y_stride < n {
            return Err(EngineError::InvalidInput(format!(
                "matmul of a {} ({n} x {k}) matrix with y stride {y_stride}",
                ty.name()
            )));
        }
        let f = self.k.for_type("mmv", ty, "_f32")?;
        launch(
            self.gpu,
            f,
            (
                blocks(n, shape::MMV_ROWS_PER_BLOCK),
                blocks(ncols, shape::MMV_COLS),
                1,
            ),
            (shape::MMV_ROWS_PER_BLOCK * 32, 1, 1),
            &[
                Arg::Ptr(w),
                Arg::Ptr(x),
                Arg::Ptr(y),
                Arg::I32(int(n, "rows")?),
                Arg::I32(int(k, "columns")?),
                Arg::I32(int(ncols, "activation columns")?),
                Arg::I32(int(y_stride, "output stride")?),
            ],
            "mmv",
        )
    }
}
