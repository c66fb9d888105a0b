//! Gated activations (`activation.cu`).

use orcd_engine::EngineError;

use super::{Ops, blocks, int};
use crate::kernels::{Arg, launch, shape};

impl Ops<'_> {
    /// out = silu(gate) * up, elementwise over n f32 (out may be gate).
    pub fn silu_mul(&self, gate: u64, up: u64, out: u64, n: usize) -> Result<(), EngineError> {
        self.gated("silu_mul_f32", gate, up, out, n)
    }

    /// out = gelu_tanh(gate) * up, elementwise over n f32 (out may be gate).
    pub fn gelu_tanh_mul(&self, gate: u64, up: u64, out: u64, n: usize) -> Result<(), EngineError> {
        self.gated("gelu_tanh_mul_f32", gate, up, out, n)
    }

    fn gated(&self, name: &str, gate: u64, up: u64, out: u64, n: usize) -> Result<(), EngineError> {
        let f = self.k.get(name)?;
        launch(
            self.gpu,
            f,
            (blocks(n, shape::ACT_THREADS), 1, 1),
            (shape::ACT_THREADS, 1, 1),
            &[
                Arg::Ptr(gate),
                Arg::Ptr(up),
                Arg::Ptr(out),
                Arg::I32(int(n, "n")?),
            ],
            name,
        )
    }
}
