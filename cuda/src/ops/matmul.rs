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
        self.mmv(ty, w, x, y, n, k, ncols, y_stride, false)
    }

    /// y[c][r] += W[r] . x[c]: [`Ops::matmul`] with the residual add fused in.
    pub fn matmul_add(
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
        self.mmv(ty, w, x, y, n, k, ncols, y_stride, true)
    }

    fn mmv(
        &self,
        ty: GgmlType,
        w: u64,
        x: u64,
        y: u64,
        n: usize,
        k: usize,
        ncols: usize,
        y_stride: usize,
        accumulate: bool,
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
                Arg::I32(i32::from(accumulate)),
            ],
            "mmv",
        )
    }

    /// Up to three matrices of one type and width k against the same activations, one launch:
    /// parts[i] = (W: (n_i, k), y: (ncols, n_i) f32); parts with n = 0 are skipped. With
    /// `norm` = Some((weights (k) f32, eps)), x is RMS-normalized on the fly.
    pub fn matmul3(
        &self,
        ty: GgmlType,
        parts: [(u64, u64, usize); 3],
        x: u64,
        k: usize,
        ncols: usize,
        norm: Option<(u64, f32)>,
    ) -> Result<(), EngineError> {
        if !k.is_multiple_of(32) || !k.is_multiple_of(ty.block_size()) {
            return Err(EngineError::InvalidInput(format!(
                "matmul3 of {} rows of {k}",
                ty.name()
            )));
        }
        let f = self.k.for_type("mmv3", ty, "_f32")?;
        let rows: usize = parts.iter().map(|p| p.2).sum();
        let mut args = Vec::with_capacity(12);
        for (w, y, n) in parts {
            args.extend([Arg::Ptr(w), Arg::Ptr(y), Arg::I32(int(n, "rows")?)]);
        }
        let (nw, eps) = norm.unwrap_or((0, 0.0));
        args.extend([
            Arg::Ptr(x),
            Arg::I32(int(k, "columns")?),
            Arg::I32(int(ncols, "activation columns")?),
            Arg::Ptr(nw),
            Arg::F32(eps),
        ]);
        launch(
            self.gpu,
            f,
            (
                blocks(rows, shape::MMV_ROWS_PER_BLOCK),
                blocks(ncols, shape::MMV_COLS),
                1,
            ),
            (shape::MMV_ROWS_PER_BLOCK * 32, 1, 1),
            &args,
            "mmv3",
        )
    }

    /// out[c][r] = act(Wg[r] . x[c]) * (Wu[r] . x[c]), act SiLU or GELU-tanh (`gelu`).
    /// Wg, Wu: (n, k) of type `ty`;  x: (ncols, k) f32;  out: (ncols, n) f32. With `norm` =
    /// Some((weights (k) f32, eps)), x is RMS-normalized on the fly.
    pub fn matmul_glu(
        &self,
        ty: GgmlType,
        wg: u64,
        wu: u64,
        x: u64,
        out: u64,
        n: usize,
        k: usize,
        ncols: usize,
        gelu: bool,
        norm: Option<(u64, f32)>,
    ) -> Result<(), EngineError> {
        if !k.is_multiple_of(32) || !k.is_multiple_of(ty.block_size()) {
            return Err(EngineError::InvalidInput(format!(
                "matmul_glu of {} rows of {k}",
                ty.name()
            )));
        }
        let f = self.k.for_type("mmv_glu", ty, "_f32")?;
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
                Arg::Ptr(wg),
                Arg::Ptr(wu),
                Arg::Ptr(x),
                Arg::Ptr(out),
                Arg::I32(int(n, "rows")?),
                Arg::I32(int(k, "columns")?),
                Arg::I32(int(ncols, "activation columns")?),
                Arg::I32(i32::from(gelu)),
                Arg::Ptr(norm.map_or(0, |n| n.0)),
                Arg::F32(norm.map_or(0.0, |n| n.1)),
            ],
            "mmv_glu",
        )
    }
}
