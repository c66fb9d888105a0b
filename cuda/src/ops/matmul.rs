//! Quantized matrix times activations (`mmvq.cu`): the weights stay in their GGUF blocks and
//! are dequantized on the fly, 32 weights at a time, against f32 activations.

use super::{Ops, blocks, int};
use crate::error::{CudaError, CudaResult};
use crate::kernels::{Arg, launch, shape};
use crate::operand::{GgufMatrix, Glu, Norm, OutView};

/// The width check every GGUF matrix kernel needs: k a multiple of 32 and of the block size.
fn check_width(w: &GgufMatrix, what: &str) -> CudaResult<()> {
    let k = w.cols;
    if !k.is_multiple_of(32) || !k.is_multiple_of(w.ty.block_size()) {
        return Err(CudaError::Shape(format!(
            "{what} of a {} ({} x {k}) matrix",
            w.ty.name(),
            w.rows
        )));
    }
    Ok(())
}

impl Ops<'_> {
    /// y[c][r] (+)= sum_i W[r][i] * x[c][i] for r < W.rows, c < ncols.
    /// x: (ncols, W.cols) f32, 16-byte aligned;  out: (ncols, out.stride) f32 with
    /// out.stride >= W.rows (`out.accumulate`: the residual add fused in).
    pub fn matmul(&self, w: GgufMatrix, x: u64, ncols: usize, out: OutView) -> CudaResult<()> {
        check_width(&w, "matmul")?;
        let (ty, n, k) = (w.ty, w.rows, w.cols);
        if out.stride < n {
            return Err(CudaError::Shape(format!(
                "matmul of a {} ({n} x {k}) matrix with y stride {}",
                ty.name(),
                out.stride
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
                Arg::Ptr(w.ptr),
                Arg::Ptr(x),
                Arg::Ptr(out.ptr),
                Arg::I32(int(n, "rows")?),
                Arg::I32(int(k, "columns")?),
                Arg::I32(int(ncols, "activation columns")?),
                Arg::I32(int(out.stride, "output stride")?),
                Arg::I32(i32::from(out.accumulate)),
            ],
            "mmv",
        )
    }

    /// Up to three matrices of one type and width k against the same activations, one launch:
    /// parts[i] = (W_i: (n_i, k), y_i: (ncols, n_i) f32); parts with no rows are skipped. With
    /// `norm`, x: (ncols, k) f32 is RMS-normalized on the fly.
    pub fn matmul3(
        &self,
        parts: [(GgufMatrix, u64); 3],
        x: u64,
        ncols: usize,
        norm: Option<Norm>,
    ) -> CudaResult<()> {
        let (ty, k) = (parts[0].0.ty, parts[0].0.cols);
        if parts
            .iter()
            .any(|(w, _)| w.rows > 0 && (w.ty != ty || w.cols != k))
        {
            return Err(CudaError::shape(
                "matmul3 of matrices of different types or widths",
            ));
        }
        check_width(&parts[0].0, "matmul3")?;
        let f = self.k.for_type("mmv3", ty, "_f32")?;
        let rows: usize = parts.iter().map(|p| p.0.rows).sum();
        let mut args = Vec::with_capacity(12);
        for (w, y) in parts {
            args.extend([Arg::Ptr(w.ptr), Arg::Ptr(y), Arg::I32(int(w.rows, "rows")?)]);
        }
        let Norm { weight, eps } = norm.unwrap_or(Norm {
            weight: 0,
            eps: 0.0,
        });
        args.extend([
            Arg::Ptr(x),
            Arg::I32(int(k, "columns")?),
            Arg::I32(int(ncols, "activation columns")?),
            Arg::Ptr(weight),
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

    /// out[c][r] = act(Wg[r] . x[c]) * (Wu[r] . x[c]).  Wg, Wu: (n, k) of one type;
    /// x: (ncols, k) f32;  out: (ncols, n) f32. With `norm`, x is RMS-normalized on the fly.
    pub fn matmul_glu(
        &self,
        glu: Glu<GgufMatrix>,
        x: u64,
        ncols: usize,
        out: u64,
        norm: Option<Norm>,
    ) -> CudaResult<()> {
        let Glu { gate, up, act } = glu;
        if gate.ty != up.ty || gate.rows != up.rows || gate.cols != up.cols {
            return Err(CudaError::shape(
                "matmul_glu of gate and up matrices that differ",
            ));
        }
        check_width(&gate, "matmul_glu")?;
        let (n, k) = (gate.rows, gate.cols);
        let f = self.k.for_type("mmv_glu", gate.ty, "_f32")?;
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
                Arg::Ptr(gate.ptr),
                Arg::Ptr(up.ptr),
                Arg::Ptr(x),
                Arg::Ptr(out),
                Arg::I32(int(n, "rows")?),
                Arg::I32(int(k, "columns")?),
                Arg::I32(int(ncols, "activation columns")?),
                Arg::I32(act.gelu_flag()),
                Arg::Ptr(norm.map_or(0, |n| n.weight)),
                Arg::F32(norm.map_or(0.0, |n| n.eps)),
            ],
            "mmv_glu",
        )
    }
}
