//! Packed-weight GEMM on the tensor cores (`gemm_q8.cu`): Q4_0 / Q4_1 / Q8_0 weights in the
//! packed layout ([`crate::packed`]) against Q8 activations, int8 `mma.sync`, for prefill
//! chunks and many-sequence decode steps. Every output is the canonical dot product
//! ([`crate::packed::dot_canonical`]) bit for bit, so it equals what a matrix-vector kernel over
//! the same packed weights computes, whatever the number of columns.

use orcd_model::quant::GgmlType;

use super::{Ops, blocks, int};
use crate::error::{CudaError, CudaResult};
use crate::kernels::{Arg, allow_dynamic_smem, launch_smem};
use crate::operand::{OutView, PackedMatrix, Q8Acts};
use crate::packed::{SEG_BLOCKS, is_packed_type};

/// Pipeline depth of `gemm_q8.cu` (`GEMM_STAGES`, `GEMM_D_STAGES` for the split-k tile): k
/// stages in shared memory at once.
const STAGES: u32 = 4;
const D_STAGES: u32 = 3;

/// Split-k workspace of `gemm_q8.cu` (`GEMM_KS_WS_FLOATS`, `GEMM_KS_TILES`): static device
/// arrays of the module (32 MiB of floats, 64 KiB of counters), allocated when the module loads.
const KS_WS_FLOATS: usize = 8 * 1024 * 1024;
const KS_TILES: usize = 16384;

/// CTAs a split tile aims at (about 2 an SM for the 8-warp tile, 4 for the 4-warp one, on the
/// H200's 132 SMs).
const KS_TARGET_LARGE: usize = 264;
const KS_TARGET_SMALL: usize = 512;

/// The tile shapes of `gemm_q8.cu` (they must match its `GEMM_*` `#define`s).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum GemmTile {
    /// 128 weight rows x 64 activation columns a block of 8 warps: many columns (prefill).
    Large,
    /// 32 rows x 64 columns a block of 4 warps: few row tiles and short k (small models),
    /// 4x the blocks of [`GemmTile::Large`] to spread the weight stream over every SM.
    Small,
    /// The Small tile with k split over 4 groups of 4 warps inside the block (16 warps; the
    /// groups' segment sums are folded in order): few row tiles and long k (decode batches of
    /// large models).
    Decode,
    /// The Large tile with k split over several CTAs along segment boundaries (grid z; the
    /// segment sums meet in a static workspace and the last CTA of a tile folds them in order):
    /// few row tiles, mid columns.
    SplitLarge,
    /// The Small tile split over CTAs the same way.
    SplitSmall,
}

/// Every tile, for [`Ops::gemm_q8_prepare`] and the tests.
pub const GEMM_TILES: [GemmTile; 5] = [
    GemmTile::Large,
    GemmTile::Small,
    GemmTile::Decode,
    GemmTile::SplitLarge,
    GemmTile::SplitSmall,
];

impl GemmTile {
    /// (weight rows, activation columns, warps) of a block.
    pub const fn shape(self) -> (u32, u32, u32) {
        match self {
            GemmTile::Large | GemmTile::SplitLarge => (128, 64, 8),
            GemmTile::Small | GemmTile::SplitSmall => (32, 64, 4),
            GemmTile::Decode => (32, 64, 16),
        }
    }

    /// Groups of warps that split k inside a block.
    const fn groups(self) -> u32 {
        match self {
            GemmTile::Decode => 4,
            _ => 1,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            GemmTile::Large => "_l",
            GemmTile::Small => "_s",
            GemmTile::Decode => "_d",
            GemmTile::SplitLarge => "_lk",
            GemmTile::SplitSmall => "_sk",
        }
    }

    /// Whether k is split over several CTAs a tile.
    pub const fn is_split(self) -> bool {
        matches!(self, GemmTile::SplitLarge | GemmTile::SplitSmall)
    }

    /// The unsplit tile of a split one (itself for the others).
    const fn base(self) -> GemmTile {
        match self {
            GemmTile::SplitLarge => GemmTile::Large,
            GemmTile::SplitSmall => GemmTile::Small,
            t => t,
        }
    }

    /// CTAs the k of one tile is split over for this shape: 1 for the unsplit tiles; else enough
    /// to reach the tile's CTA target, at most one a segment, and fewer where the workspace
    /// (tiles x BM x BN x (segments - segments a CTA + 1) floats) would not fit.
    pub fn splits(self, n: usize, k: usize, ncols: usize) -> usize {
        let target = match self {
            GemmTile::SplitLarge => KS_TARGET_LARGE,
            GemmTile::SplitSmall => KS_TARGET_SMALL,
            _ => return 1,
        };
        let (bm, bn, _) = self.shape();
        let tiles = n.div_ceil(bm as usize) * ncols.div_ceil(bn as usize);
        let nseg = (k / 32).div_ceil(SEG_BLOCKS);
        if tiles == 0 || tiles > KS_TILES {
            return 1;
        }
        let mut want = target.div_ceil(tiles).clamp(1, nseg);
        while want > 1 {
            let spc = nseg.div_ceil(want);
            let s = nseg.div_ceil(spc);
            if tiles * (bm * bn) as usize * (nseg - spc + 1) <= KS_WS_FLOATS {
                return s;
            }
            want -= 1;
        }
        1
    }

    /// Dynamic shared memory of a block: `GEMM_STAGES` x `gemm_stage_bytes` of `gemm_q8.cu`
    /// (the kernel traps if it gets less).
    pub fn shared_bytes(self, ty: GgmlType) -> u32 {
        let (bm, bn, _) = self.shape();
        // (quant bytes per block, blocks per stage, scale bytes per row of a stage)
        let (qb, kb) = if ty == GgmlType::Q8_0 {
            (32, 2)
        } else {
            (16, 4)
        };
        let w_row = if ty == GgmlType::Q4_1 {
            kb * 4
        } else {
            (kb / 2 + 1) * 4
        };
        let stage = bm * (kb * qb + 16) + bn * (kb * 32 + 16) + bm * w_row + 2 * kb * bn * 4;
        let groups = self.base().groups();
        let stages = if groups > 1 { D_STAGES } else { STAGES };
        stages * groups * stage + (groups - 1) * bm * bn * 4
    }

    /// The tile [`Ops::gemm_q8`] takes for `n` weight rows, `k` and `ncols` columns, a rule
    /// fitted to the H200 timings of `tests/gemm.rs` (2026-11-27, `gemm_timings`): Large for
    /// more than 32 columns once it has 100 blocks or more (about one an SM), or for any columns
    /// once it has 500 (output heads); else Small when that has 264 blocks or more (2 an SM);
    /// else, for k of 4 segments or more (k >= 2048), k split over CTAs: SplitLarge for more
    /// than 32 columns when its split reaches 200 CTAs, else SplitSmall; else Small.
    pub fn for_shape(n: usize, k: usize, ncols: usize) -> GemmTile {
        let (bm, bn, _) = GemmTile::Large.shape();
        let (sm, _, _) = GemmTile::Small.shape();
        let col_tiles = ncols.div_ceil(bn as usize);
        let large_tiles = n.div_ceil(bm as usize) * col_tiles;
        let nseg = (k / 32).div_ceil(SEG_BLOCKS);
        if !split_tiles_on() {
            // The rule before the split tiles (the configuration of the last end-to-end run).
            return if ncols > 32 && large_tiles >= 100 {
                GemmTile::Large
            } else if n.div_ceil(sm as usize) * col_tiles >= 264 {
                GemmTile::Small
            } else if nseg >= 8 {
                GemmTile::Decode
            } else {
                GemmTile::Small
            };
        }
        if (ncols > 32 && large_tiles >= 100) || large_tiles >= 500 {
            GemmTile::Large
        } else if n.div_ceil(sm as usize) * col_tiles >= 264 {
            GemmTile::Small
        } else if nseg >= 4 {
            if ncols > 32 && large_tiles * GemmTile::SplitLarge.splits(n, k, ncols) >= 200 {
                GemmTile::SplitLarge
            } else {
                GemmTile::SplitSmall
            }
        } else {
            GemmTile::Small
        }
    }
}

/// Whether [`GemmTile::for_shape`] may pick the split-k tiles: on unless `ORCD_GEMM_SPLIT=0`.
fn split_tiles_on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("ORCD_GEMM_SPLIT").map_or(true, |v| v != "0"))
}

impl Ops<'_> {
    /// Raise every gemm_q8 kernel's dynamic shared memory limit now (it is otherwise done at a
    /// kernel's first launch): call once before capturing launches into a CUDA graph.
    pub fn gemm_q8_prepare(&self) -> CudaResult<()> {
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            for tile in GEMM_TILES {
                let f = self.k.for_type("gemm_q8", ty, tile.suffix())?;
                allow_dynamic_smem(f, tile.shared_bytes(ty), "gemm_q8")?;
            }
        }
        Ok(())
    }

    /// y[c * out.stride + r] (+)= W[r] . x[c] for r < W.rows, c < ncols, the canonical dot
    /// product of [`crate::packed`] bit for bit.
    /// W: packed (n, k) (Q4_0, Q4_1 or Q8_0), 16-byte aligned;  acts: the Q8 activations of x
    /// ([`crate::packed::quantize_acts`]; q 16-byte aligned);  out: (ncols, out.stride) f32,
    /// out.stride >= n; its elements outside the n x ncols outputs are not touched.
    /// k must be a positive multiple of 32. The tile is [`GemmTile::for_shape`]'s. The split
    /// tiles use the module's static workspace and counters (`gemm_q8.cu`), so two gemm_q8
    /// launches of one loaded module must not run concurrently (one stream serializes them).
    pub fn gemm_q8(
        &self,
        w: PackedMatrix,
        acts: Q8Acts,
        ncols: usize,
        out: OutView,
    ) -> CudaResult<()> {
        let tile = GemmTile::for_shape(w.rows, w.cols, ncols);
        self.gemm_q8_tile(tile, w, acts, ncols, out)
    }

    /// [`Ops::gemm_q8_tile`] with the split count of a split tile chosen by the caller (tests,
    /// timings): k is split over `splits` CTAs a tile or the fewest that take as many segments
    /// each (1, or a tile that is not split: the unsplit kernel). A split whose workspace would
    /// not fit is an error.
    pub fn gemm_q8_split(
        &self,
        tile: GemmTile,
        splits: usize,
        w: PackedMatrix,
        acts: Q8Acts,
        ncols: usize,
        out: OutView,
    ) -> CudaResult<()> {
        self.launch_gemm(tile, splits, w, acts, ncols, out)
    }

    /// [`Ops::gemm_q8`] with the tile chosen by the caller (tests, timings); same buffers,
    /// same results bit for bit whatever the tile.
    pub fn gemm_q8_tile(
        &self,
        tile: GemmTile,
        w: PackedMatrix,
        acts: Q8Acts,
        ncols: usize,
        out: OutView,
    ) -> CudaResult<()> {
        let splits = tile.splits(w.rows, w.cols, ncols);
        self.launch_gemm(tile, splits, w, acts, ncols, out)
    }

    fn launch_gemm(
        &self,
        tile: GemmTile,
        splits: usize,
        w: PackedMatrix,
        acts: Q8Acts,
        ncols: usize,
        out: OutView,
    ) -> CudaResult<()> {
        let (ty, n, k, y_stride) = (w.ty, w.rows, w.cols, out.stride);
        if !is_packed_type(ty) || k == 0 || !k.is_multiple_of(32) || y_stride < n {
            return Err(CudaError::Shape(format!(
                "gemm_q8 of a packed {} ({n} x {k}) matrix with y stride {y_stride}",
                ty.name()
            )));
        }
        if n == 0 || ncols == 0 {
            return Ok(());
        }
        let (bm, bn, warps) = tile.shape();
        // Segments a CTA (spc) and CTAs a tile (grid z); one CTA: the unsplit kernel.
        let nseg = (k / 32).div_ceil(SEG_BLOCKS);
        let spc = nseg.div_ceil(splits.clamp(1, nseg));
        let z = nseg.div_ceil(spc);
        let tile = if z == 1 { tile.base() } else { tile };
        if tile != tile.base() {
            let tiles = blocks(ncols, bn) as usize * blocks(n, bm) as usize;
            if tiles > KS_TILES || tiles * (bm * bn) as usize * (nseg - spc + 1) > KS_WS_FLOATS {
                return Err(CudaError::Shape(format!(
                    "gemm_q8 split {z} of {n} x {k} x {ncols}: workspace too small"
                )));
            }
        }
        let f = self.k.for_type("gemm_q8", ty, tile.suffix())?;
        let smem = tile.shared_bytes(ty);
        allow_dynamic_smem(f, smem, "gemm_q8")?;
        let mut args = vec![
            Arg::Ptr(w.ptr),
            Arg::I32(int(n, "rows")?),
            Arg::I32(int(k, "columns")?),
            Arg::Ptr(acts.q),
            Arg::Ptr(acts.d),
            Arg::Ptr(acts.sum),
            Arg::I32(int(ncols, "activation columns")?),
            Arg::Ptr(out.ptr),
            Arg::I32(int(y_stride, "output stride")?),
            Arg::I32(i32::from(out.accumulate)),
        ];
        if tile != tile.base() {
            args.push(Arg::I32(int(spc, "segments a CTA")?));
        }
        launch_smem(
            self.gpu,
            f,
            (blocks(ncols, bn), blocks(n, bm), z as u32),
            (warps * 32, 1, 1),
            smem,
            &args,
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
        assert!(src.contains(&format!("#define GEMM_STAGES {STAGES}\n")));
        assert!(src.contains(&format!("#define GEMM_D_STAGES {D_STAGES}\n")));
        assert!(src.contains(&format!(
            "#define GEMM_D_GROUPS {}\n",
            GemmTile::Decode.groups()
        )));
        assert!(src.contains("#define GEMM_KS_WS_FLOATS (8 * 1024 * 1024)\n"));
        assert_eq!(KS_WS_FLOATS, 8 * 1024 * 1024);
        assert!(src.contains(&format!("#define GEMM_KS_TILES {KS_TILES}\n")));
        for (tile, tag) in [
            (GemmTile::Large, "L"),
            (GemmTile::Small, "S"),
            (GemmTile::Decode, "D"),
            (GemmTile::SplitLarge, "L"),
            (GemmTile::SplitSmall, "S"),
        ] {
            let (bm, bn, warps) = tile.shape();
            for (name, v) in [("BM", bm), ("BN", bn), ("WARPS", warps)] {
                let line = format!("#define GEMM_{tag}_{name} {v}\n");
                assert!(src.contains(&line), "{line:?} missing from gemm_q8.cu");
            }
            let suffix = tile.suffix();
            for ty in ["q4_0", "q4_1", "q8_0"] {
                let split = tile != tile.base();
                let mac = if split {
                    format!("GEMM_SPLIT_KERNEL(gemm_q8_{ty}{suffix}, ")
                } else {
                    format!("GEMM_KERNEL(gemm_q8_{ty}{suffix}, ")
                };
                assert!(src.contains(&mac), "{mac:?} missing");
                let (wm, wn) = match tile.base() {
                    GemmTile::Large => (4, 2),
                    _ => (1, 4),
                };
                let gr = tile.groups();
                let line = if split {
                    format!("{mac}{}, {bm}, {bn}, {wm}, {wn},", ty_id(ty))
                } else {
                    format!("{mac}{}, {bm}, {bn}, {wm}, {wn}, {gr},", ty_id(ty))
                };
                assert!(src.contains(&line), "{mac} shape");
                assert_eq!(wm * wn * gr, warps);
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
    fn shared_memory_is_the_kernels_formula() {
        // 4 stages of A (BM x 80) + B (BN x 144 or 80) + scales (BM x 12, 16 or 8) + xd, xsum.
        assert_eq!(GemmTile::Large.shared_bytes(GgmlType::Q4_0), 4 * 23040);
        assert_eq!(GemmTile::Large.shared_bytes(GgmlType::Q4_1), 4 * 23552);
        assert_eq!(GemmTile::Small.shared_bytes(GgmlType::Q8_0), 4 * 8960);
        for tile in GEMM_TILES {
            for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
                assert!(
                    tile.shared_bytes(ty) <= 227 * 1024,
                    "{tile:?} {}",
                    ty.name()
                );
            }
        }
    }

    #[test]
    fn tiles_by_shape() {
        // Llama-3-8B: 16, 64 (decode batches) and 512 (prefill) columns.
        assert_eq!(GemmTile::for_shape(4096, 4096, 16), GemmTile::SplitSmall);
        assert_eq!(GemmTile::for_shape(4096, 4096, 64), GemmTile::SplitLarge);
        assert_eq!(GemmTile::for_shape(1024, 4096, 64), GemmTile::SplitSmall);
        assert_eq!(GemmTile::for_shape(14336, 4096, 16), GemmTile::Small);
        assert_eq!(GemmTile::for_shape(14336, 4096, 64), GemmTile::Large);
        assert_eq!(GemmTile::for_shape(4096, 14336, 16), GemmTile::SplitSmall);
        assert_eq!(GemmTile::for_shape(4096, 4096, 512), GemmTile::Large);
        assert_eq!(GemmTile::for_shape(1024, 4096, 512), GemmTile::SplitLarge);
        assert_eq!(GemmTile::for_shape(128_256, 4096, 16), GemmTile::Large);
        assert_eq!(GemmTile::for_shape(128_256, 4096, 64), GemmTile::Large);
        // Qwen2.5-0.5B.
        assert_eq!(GemmTile::for_shape(4864, 896, 64), GemmTile::Small);
        assert_eq!(GemmTile::for_shape(896, 4864, 64), GemmTile::SplitSmall);
        assert_eq!(GemmTile::for_shape(896, 896, 512), GemmTile::Small);
        assert_eq!(GemmTile::for_shape(4864, 896, 512), GemmTile::Large);
        assert_eq!(GemmTile::for_shape(896, 4864, 512), GemmTile::SplitLarge);
        // Split counts: 8B qo at 64 columns one segment a CTA; 8B down 4 ways; 8B kv 8.
        assert_eq!(GemmTile::SplitLarge.splits(4096, 4096, 64), 8);
        assert_eq!(GemmTile::SplitSmall.splits(4096, 14336, 64), 4);
        assert_eq!(GemmTile::SplitSmall.splits(1024, 4096, 64), 8);
        assert_eq!(GemmTile::Large.splits(4096, 4096, 64), 1);
    }
}
