//! Token embedding lookup (`embed.cu`), dequantizing the table's rows on the fly.

use super::{Ops, int};
use crate::error::{CudaError, CudaResult};
use crate::kernels::{Arg, launch, shape};
use crate::operand::GgufMatrix;

impl Ops<'_> {
    /// out[t][:] = dequant(W[tokens[t]][:]) * scale.
    /// W: (vocab, dim) GGUF table;  tokens: (ntok) u32 (or non-negative i32), each < vocab (the
    /// caller checks);  out: (ntok, dim) f32.
    pub fn embed(
        &self,
        table: GgufMatrix,
        tokens: u64,
        ntok: usize,
        out: u64,
        scale: f32,
    ) -> CudaResult<()> {
        let (ty, w, dim) = (table.ty, table.ptr, table.cols);
        if !dim.is_multiple_of(32) || !dim.is_multiple_of(ty.block_size()) {
            return Err(CudaError::Shape(format!(
                "embedding of width {dim} in {}",
                ty.name()
            )));
        }
        let f = self.k.for_type("embed", ty, "")?;
        launch(
            self.gpu,
            f,
            (int(ntok, "tokens")? as u32, 1, 1),
            (shape::EMBED_THREADS, 1, 1),
            &[
                Arg::Ptr(w),
                Arg::Ptr(tokens),
                Arg::Ptr(out),
                Arg::I32(int(dim, "dim")?),
                Arg::F32(scale),
            ],
            "embed",
        )
    }
}
