//! Launchers, one file per kernel family (`cuda/kernels/<family>.cu`). Each takes device
//! addresses and sizes, states the shapes it expects, checks what it can on the host, and
//! queues the kernel on the GPU's stream (no host synchronization, no allocation: a step's
//! launches can be captured into a CUDA graph).

mod activation;
mod attention;
mod embed;
mod gemm;
mod logits;
mod matmul;
mod moe;
mod norm;
mod packed;
mod rope;

pub use attention::{ATT_DECODE_MAX_TOKENS, AttnKernel, AttnParams, KvGeometry};
pub use gemm::{GEMM_TILES, GemmTile};
pub use moe::{Experts, MoeKernel, Pairs};
pub use packed::{PackedPart, PkKernel};
pub use rope::RopeStyle;
pub use rope::{QkNorm, Qkv, Rope, RopeScale};

use crate::driver::GpuContext;
use crate::error::{CudaError, CudaResult};
use crate::kernels::Kernels;

/// The kernels of one GPU, ready to launch.
#[derive(Copy, Clone, Debug)]
pub struct Ops<'a> {
    pub(crate) gpu: &'a GpuContext,
    pub(crate) k: &'a Kernels,
}

impl<'a> Ops<'a> {
    pub fn new(gpu: &'a GpuContext, k: &'a Kernels) -> Ops<'a> {
        Ops { gpu, k }
    }
}

/// Blocks of `per_block` covering `n` items.
pub(crate) fn blocks(n: usize, per_block: u32) -> u32 {
    n.div_ceil(per_block as usize) as u32
}

/// A size as the kernels' `int`, or an error when it does not fit.
pub(crate) fn int(n: usize, what: &str) -> CudaResult<i32> {
    i32::try_from(n)
        .map_err(|_| CudaError::Shape(format!("{what} = {n} is too large for a kernel")))
}
