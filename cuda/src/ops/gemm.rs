//! Packed-weight GEMM on the tensor cores (`gemm_q8.cu`): Q4_0 / Q4_1 / Q8_0 weights in the
//! packed layout ([`crate::packed`]) against Q8 activations, int8 `mma.sync`, for prefill
//! chunks and many-sequence decode steps. Every output is the canonical dot product
//! ([`crate::packed::dot_canonical`]) bit for bit, so it equals what a matrix-vector kernel over
//! the same packed weights computes, whatever the number of columns.

use orcd_engine::EngineError;
use orcd_engine::quant::GgmlType;

use super::{Ops, blocks, int};
use crate::kernels::{Arg, launch};
use crate::packed::is_packed_type;

/// The tile shapes of `gemm_q8.cu` (they must match its `GEMM_*` `#define`s).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum GemmTile {
    /// 128 weight rows x 64 activation columns a block of 8 warps: many columns (prefill).
    Large,
    /// 32 rows x 64 columns a block of 4 warps: few row tiles or columns (decode batches),
    /// 4x the blocks of [`GemmTile::Large`] to spread the weight stream over every SM.
    Small,
}

impl GemmTile {
    /// (weight rows, activation columns, warps) of a block.
    pub const fn shape(self) -> (u32, u32, u32) {
        match self {
            GemmTile::Large => (128, 64, 8),
            GemmTile::Small => (32, 64, 4),
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            GemmTile::Large => "_l",
            GemmTile::Small => "_s",
        }
    }

    /// The tile [`Ops::gemm_q8`] takes for `n` weight rows and `ncols` columns: Large once its
    /// blocks fill the GPU (132 SMs on an H100 / H200) at least once, else Small.
    pub fn for_shape(n: usize, ncols: usize) -> GemmTile {
        let (bm, bn, _) = GemmTile::Large.shape();
        if n.div_ceil(bm as usize) * ncols.div_ceil(bn as usize) >= 132 {
            GemmTile::Large
        } else {
            GemmTile::Small
        }
    }
}

impl Ops<'_> {
    /// y[c * y_stride + r] = W[r] . x[c] (`accumulate`: +=, the fused residual add) for r < n,
    /// c < ncols, the canonical dot product of [`crate::packed`] bit for bit.
    /// W: packed (n, k) of type `ty` (Q4_0, Q4_1 or Q8_0), 16-byte aligned;
    /// xq: (ncols, k) i8, 16-byte aligned;  xd: (ncols, k / 32) f32;  xsum: (ncols, k / 32) i32
    /// (the Q8 activations of [`crate::packed::quantize_acts`]);  y: (ncols, y_stride) f32,
    /// y_stride >= n; y's elements outside the n x ncols outputs are not touched.
    /// k must be a positive multiple of 32. The tile is [`GemmTile::for_shape`]'s.
    pub fn gemm_q8(
        &self,
        ty: GgmlType,
        w: u64,
        n: usize,
        k: usize,
        xq: u64,
        xd: u64,
        xsum: u64,
        ncols: usize,
        y: u64,
        y_stride: usize,
        accumulate: bool,
    ) -> Result<(), EngineError> {
        let tile = GemmTile::for_shape(n, ncols);
        self.gemm_q8_tile(
            tile, ty, w, n, k, xq, xd, xsum, ncols, y, y_stride, accumulate,
        )
    }

    /// [`Ops::gemm_q8`] with the tile chosen by the caller (tests, timings); same buffers,
    /// same results bit for bit whatever the tile.
    pub fn gemm_q8_tile(
        &self,
        tile: GemmTile,
        ty: GgmlType,
        w: u64,
        n: usize,
        k: usize,
        xq: u64,
        xd: u64,
        xsum: u64,
        ncols: usize,
        y: u64,
        y_stride: usize,
        accumulate: bool,
    ) -> Result<(), EngineError> {
        if !is_packed_type(ty) || k == 0 || !k.is_multiple_of(32) || y_stride < n {
            return Err(EngineError::InvalidInput(format!(
                "gemm_q8 of a packed {} ({n} x {k}) matrix with y stride {y_stride}",
                ty.name()
            )));
        }
        if n == 0 || ncols == 0 {
            return Ok(());
        }
        let (bm, bn, warps) = tile.shape();
        let f = self.k.for_type("gemm_q8", ty, tile.suffix())?;
        launch(
            self.gpu,
            f,
            (blocks(ncols, bn), blocks(n, bm), 1),
            (warps * 32, 1, 1),
            &[
                Arg::Ptr(w),
                Arg::I32(int(n, "rows")?),
                Arg::I32(int(k, "columns")?),
                Arg::Ptr(xq),
                Arg::Ptr(xd),
                Arg::Ptr(xsum),
                Arg::I32(int(ncols, "activation columns")?),
                Arg::Ptr(y),
                Arg::I32(int(y_stride, "output stride")?),
                Arg::I32(i32::from(accumulate)),
            ],
            "gemm_q8",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_shapes_match_the_kernel_source() {
        let src = include_str!("../../kernels/gemm_q8.cu");
        for (tile, tag) in [(GemmTile::Large, "L"), (GemmTile::Small, "S")] {
            let (bm, bn, warps) = tile.shape();
            for (name, v) in [("BM", bm), ("BN", bn), ("WARPS", warps)] {
                let line = format!("#define GEMM_{tag}_{name} {v}\n");
                assert!(src.contains(&line), "{line:?} missing from gemm_q8.cu");
            }
            let suffix = tile.suffix();
            for ty in ["q4_0", "q4_1", "q8_0"] {
                let mac = format!("GEMM_KERNEL(gemm_q8_{ty}{suffix}, ");
                assert!(src.contains(&mac), "{mac:?} missing");
                let (wm, wn) = if tile == GemmTile::Large {
                    (4, 2)
                } else {
                    (1, 4)
                };
                assert!(
                    src.contains(&format!("{mac}{}, {bm}, {bn}, {wm}, {wn},", ty_id(ty))),
                    "{mac} shape"
                );
                assert_eq!(wm * wn, warps);
            }
        }
    }

    fn ty_id(ty: &str) -> u32 {
        match ty {
            "q4_0" => 0,
            "q4_1" => 1,
            _ => 2,
        }
    }

    #[test]
    fn large_tiles_once_they_fill_the_gpu() {
        assert_eq!(GemmTile::for_shape(4096, 512), GemmTile::Large);
        assert_eq!(GemmTile::for_shape(14336, 64), GemmTile::Large);
        assert_eq!(GemmTile::for_shape(4096, 64), GemmTile::Small);
        assert_eq!(GemmTile::for_shape(896, 512), GemmTile::Small);
    }
}
