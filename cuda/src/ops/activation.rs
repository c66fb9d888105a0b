//! Gated activations (`activation.cu`).

use super::{Ops, blocks, int};
use crate::error::CudaResult;
use crate::kernels::{Arg, launch, shape};

impl Ops<'_> {
    /// out = silu(gate) * up, elementwise over n f32 (out may be gate).
    pub fn silu_mul(&self, gate: u64, up: u64, out: u64, n: usize) -> CudaResult<()> {
        self.gated("silu_mul_f32", gate, up, out, n)
    }

    /// out = gelu_tanh(gate) * up, elementwise over n f32 (out may be gate).
    pub fn gelu_tanh_mul(&self, gate: u64, up: u64, out: u64, n: usize) -> CudaResult<()> {
        self.gated("gelu_tanh_mul_f32", gate, up, out, n)
    }

    /// x = gelu_tanh(x), elementwise over n f32 in place (GPT-2's plain FFN).
    pub fn gelu_tanh(&self, x: u64, n: usize) -> CudaResult<()> {
        let f = self.k.get("gelu_tanh_f32")?;
        launch(
            self.gpu,
            f,
            (blocks(n, shape::ACT_THREADS), 1, 1),
            (shape::ACT_THREADS, 1, 1),
            &[Arg::Ptr(x), Arg::I32(int(n, "n")?)],
            "gelu_tanh_f32",
        )
    }

    fn gated(&self, name: &str, gate: u64, up: u64, out: u64, n: usize) -> CudaResult<()> {
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
