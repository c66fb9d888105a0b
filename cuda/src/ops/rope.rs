//! Rotary position embedding (`rope.cu`).

use orcd_engine::EngineError;

use super::{Ops, int};
use crate::kernels::{Arg, launch, shape};

/// Which elements form a rotated pair.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// (2i, 2i+1): llama in GGUF.
    Norm,
    /// (i, i + n_rot/2): qwen2, gemma3.
    Neox,
}

impl Ops<'_> {
    /// Rotate x in place.  x: (ntok, heads, head_dim) f32;  pos: (ntok) i32.
    pub fn rope(
        &self,
        x: u64,
        pos: u64,
        ntok: usize,
        heads: usize,
        head_dim: usize,
        n_rot: usize,
        base: f32,
        style: RopeStyle,
    ) -> Result<(), EngineError> {
        if n_rot > head_dim || !n_rot.is_multiple_of(2) {
            return Err(EngineError::InvalidInput(format!(
                "rope over {n_rot} of {head_dim} dims"
            )));
        }
        let f = self.k.get("rope_f32")?;
        launch(
            self.gpu,
            f,
            (int(ntok, "tokens")? as u32, int(heads, "heads")? as u32, 1),
            (shape::ROPE_THREADS, 1, 1),
            &[
                Arg::Ptr(x),
                Arg::Ptr(pos),
                Arg::I32(int(heads, "heads")?),
                Arg::I32(int(head_dim, "head_dim")?),
                Arg::I32(int(n_rot, "n_rot")?),
                // s = base^(-2 / n_rot), in f32 as the CPU computes it.
                Arg::F32(base.powf(-2.0 / n_rot as f32)),
                Arg::I32(i32::from(style == RopeStyle::Neox)),
            ],
            "rope_f32",
        )
    }
}
