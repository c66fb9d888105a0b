//! Token embedding lookup (`embed.cu`), dequantizing the table's rows on the fly.

use orcd_engine::EngineError;
use orcd_engine::quant::GgmlType;

use super::{Ops, int};
use crate::kernels::{Arg, launch, shape};

impl Ops<'_> {
    /// out[t][:] = dequant(W[tokens[t]][:]) * scale.
    /// W: (vocab, dim) of type `ty`;  tokens: (ntok) u32, each < vocab (the caller checks);
    /// out: (ntok, dim) f32.
    pub fn embed(
        &self,
        ty: GgmlType,
        w: u64,
        tokens: u64,
        out: u64,
        ntok: usize,
        dim: usize,
        scale: f32,
    ) -> Result<(), EngineError> {
        if !dim.is_multiple_of(32) || !dim.is_multiple_of(ty.block_size()) {
            return Err(EngineError::InvalidInput(format!(
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
