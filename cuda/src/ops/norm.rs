//! RMS norm, residual add, bias add and row gather (`norm.cu`).

use super::{Ops, blocks, int};
use crate::error::CudaResult;
use crate::kernels::{Arg, launch, shape};
use crate::operand::Norm;

impl Ops<'_> {
    /// out[r][:] = x[r][:] / sqrt(mean(x[r]^2) + eps) * w[:].
    /// x, out: (rows, n) f32 (out may be x);  w: (n) f32.
    pub fn rms_norm(
        &self,
        x: u64,
        w: u64,
        out: u64,
        rows: usize,
        n: usize,
        eps: f32,
    ) -> CudaResult<()> {
        let f = self.k.get("rms_norm_f32")?;
        launch(
            self.gpu,
            f,
            (int(rows, "rows")? as u32, 1, 1),
            (shape::NORM_THREADS, 1, 1),
            &[
                Arg::Ptr(x),
                Arg::Ptr(w),
                Arg::Ptr(out),
                Arg::I32(int(n, "n")?),
                Arg::F32(eps),
            ],
            "rms_norm_f32",
        )
    }

    /// LayerNorm: out[r][:] = (x[r] - mean) / sqrt(var + eps) * w (+ b).
    /// x, out: (rows, n) f32 (out may be x);  norm.weight, bias: (n) f32, bias 0 for none.
    pub fn layer_norm(
        &self,
        x: u64,
        norm: Norm,
        bias: u64,
        out: u64,
        rows: usize,
        n: usize,
    ) -> CudaResult<()> {
        let f = self.k.get("layer_norm_f32")?;
        launch(
            self.gpu,
            f,
            (int(rows, "rows")? as u32, 1, 1),
            (shape::NORM_THREADS, 1, 1),
            &[
                Arg::Ptr(x),
                Arg::Ptr(norm.weight),
                Arg::Ptr(bias),
                Arg::Ptr(out),
                Arg::I32(int(n, "n")?),
                Arg::F32(norm.eps),
            ],
            "layer_norm_f32",
        )
    }

    /// x[i] += y[i] for i < n (f32).
    pub fn add(&self, x: u64, y: u64, n: usize) -> CudaResult<()> {
        let f = self.k.get("add_f32")?;
        launch(
            self.gpu,
            f,
            (blocks(n, shape::NORM_THREADS), 1, 1),
            (shape::NORM_THREADS, 1, 1),
            &[Arg::Ptr(x), Arg::Ptr(y), Arg::I32(int(n, "n")?)],
            "add_f32",
        )
    }

    /// x[t][i] += b[i].  x: (ntok, n) f32;  b: (n) f32.
    pub fn add_bias(&self, x: u64, b: u64, ntok: usize, n: usize) -> CudaResult<()> {
        let f = self.k.get("add_bias_f32")?;
        let total = ntok * n;
        launch(
            self.gpu,
            f,
            (blocks(total, shape::NORM_THREADS), 1, 1),
            (shape::NORM_THREADS, 1, 1),
            &[
                Arg::Ptr(x),
                Arg::Ptr(b),
                Arg::I32(int(n, "n")?),
                Arg::I32(int(total, "elements")?),
            ],
            "add_bias_f32",
        )
    }

    /// out[r][:] = x[rows[r]][:].  x: (ntok, n) f32;  rows: (nrows) i32, each < ntok;
    /// out: (nrows, n) f32.
    pub fn gather_rows(
        &self,
        x: u64,
        rows: u64,
        out: u64,
        nrows: usize,
        n: usize,
    ) -> CudaResult<()> {
        let f = self.k.get("gather_rows_f32")?;
        launch(
            self.gpu,
            f,
            (int(nrows, "rows")? as u32, 1, 1),
            (shape::NORM_THREADS, 1, 1),
            &[
                Arg::Ptr(x),
                Arg::Ptr(rows),
                Arg::Ptr(out),
                Arg::I32(int(n, "n")?),
            ],
            "gather_rows_f32",
        )
    }

    /// x[r] += y[r], then out[r] = rmsnorm(x[r]) * norm.weight.  x, y, out: (rows, n) f32;
    /// norm.weight: (n) f32.
    pub fn add_rms_norm(
        &self,
        x: u64,
        y: u64,
        out: u64,
        rows: usize,
        n: usize,
        norm: Norm,
    ) -> CudaResult<()> {
        let Norm { weight: w, eps } = norm;
        let f = self.k.get("add_rms_norm_f32")?;
        launch(
            self.gpu,
            f,
            (int(rows, "rows")? as u32, 1, 1),
            (shape::NORM_THREADS, 1, 1),
            &[
                Arg::Ptr(x),
                Arg::Ptr(y),
                Arg::Ptr(w),
                Arg::Ptr(out),
                Arg::I32(int(n, "n")?),
                Arg::F32(eps),
            ],
            "add_rms_norm_f32",
        )
    }
}
