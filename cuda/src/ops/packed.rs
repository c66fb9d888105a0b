//! Packed weights (`crate::packed`) and Q8 activations: the load-time repack and embedding
//! lookup (`mmvq_packed.cu`), the activation quantization with the RMS norm on the fly
//! (`quant_act.cu`), and the matrix x Q8 activation kernels computing the canonical dot product
//! bit for bit, whatever the number of columns.

use orcd_model::quant::GgmlType;

use super::{Ops, blocks, int};
use crate::error::{CudaError, CudaResult};
use crate::kernels::{Arg, launch};
use crate::operand::{Glu, Norm, OutView, PackedMatrix, Q8Acts};
use crate::packed::is_packed_type;

/// mmvq_packed.cu: most warps (= weight rows) per block, activation columns per block (grid.y
/// tiles).
pub const PK_WARPS: u32 = 8;
pub const PK_COLS: u32 = 8;
/// quant_act.cu: threads per block (= norm.cu's NORM_THREADS: the norm's sum of squares must
/// match), and 32-wide blocks quantized per block (one per warp).
pub const QA_THREADS: u32 = 256;
pub const QA_WARPS: u32 = 8;
/// Which matrix kernels a packed launch uses: the fast `mmvqf*` kernels (default; the
/// environment variable `ORCD_PK_FAST=0` selects the references), the references (`mmvq*`), or
/// (tests, timings) a named alternative of a fast kernel (`mmvqf{,3,_glu}_packed_<type>_c1<alt>`,
/// one activation column tile; Q4_0 and Q8_0).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PkKernel {
    Fast,
    Reference,
    Alt(&'static str),
}

impl PkKernel {
    /// The process default: [`PkKernel::Fast`] unless `ORCD_PK_FAST=0`.
    pub fn default_choice() -> PkKernel {
        static FAST: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *FAST.get_or_init(|| std::env::var("ORCD_PK_FAST").map_or(true, |v| v != "0")) {
            PkKernel::Fast
        } else {
            PkKernel::Reference
        }
    }
}

/// The fast kernels' compile-time column count for a launch of `ncols` columns: the smallest
/// of 1, 2, 4, 8 (= PK_COLS) holding min(ncols, PK_COLS).
fn fast_cols(ncols: usize) -> u32 {
    match ncols {
        0 | 1 => 1,
        2 => 2,
        3 | 4 => 4,
        _ => PK_COLS,
    }
}

/// The one-column variant (blocks in flight per lane `u`, blocks per SM `m`) that measured
/// fastest for a shape, where it is not the default (NVIDIA H200, graph-replayed, weights out
/// of L2): small-dimension heads and the 8B q/k/v in Q8_0 take u1m6 (Qwen head 52.4 -> 42.7 us,
/// SmolLM2 head 17.3 -> 13.9, 8B q/k/v 10.25 -> 8.70); Q4_0 q/k/v and small gate/up take u2m6
/// (8B q/k/v 8.16 -> 6.89, Qwen gate+up 5.77 -> 4.95); a narrow Q4_0 down projection u8m3
/// (Qwen 3.57 -> 3.09). Every variant computes the same canonical bits.
fn one_column_variant(fast: &str, ty: GgmlType, n: usize, k: usize) -> Option<&'static str> {
    let three = fast == "mmvqf3_packed";
    let glu = fast == "mmvqf_glu_packed";
    match ty {
        GgmlType::Q8_0 if three || (!glu && k <= 1024 && n >= 32_768) => Some("u1m6"),
        GgmlType::Q4_0 if three || (glu && k <= 1024) => Some("u2m6"),
        GgmlType::Q4_0 if !glu && n <= 1024 && k >= 4096 => Some("u8m3"),
        _ => None,
    }
}

/// The kernel `<prefix>_<type>` (reference) or `<fast>_<type>_c<NC>[<variant>]` (fast; one
/// column takes the shape's measured variant) for a launch of rows of `n` x `k` weights.
fn pk_function(
    ops: &Ops<'_>,
    kernel: PkKernel,
    prefix: &str,
    fast: &str,
    ty: GgmlType,
    ncols: usize,
    (n, k): (usize, usize),
) -> CudaResult<cudarc::driver::sys::CUfunction> {
    match kernel {
        PkKernel::Reference => ops.k.for_type(prefix, ty, ""),
        PkKernel::Fast => match one_column_variant(fast, ty, n, k) {
            Some(v) if fast_cols(ncols) == 1 => ops.k.for_type(fast, ty, &format!("_c1{v}")),
            _ => ops.k.for_type(fast, ty, &format!("_c{}", fast_cols(ncols))),
        },
        PkKernel::Alt(alt) => ops.k.for_type(fast, ty, &format!("_c1{alt}")),
    }
}

/// Below this many blocks of `PK_WARPS` warps a matrix launch uses blocks of 4 warps (more SMs
/// busy for the small, latency-bound shapes).
const MIN_BLOCKS: usize = 264;

fn check_packed(ty: GgmlType, k: usize, what: &str) -> CudaResult<()> {
    if !is_packed_type(ty) || k == 0 || !k.is_multiple_of(32) {
        return Err(CudaError::Shape(format!(
            "{what} of a packed {} matrix of width {k}",
            ty.name()
        )));
    }
    Ok(())
}

/// One part of [`Ops::matmul3_packed`]: W into y: (ncols, W.rows) f32, plus the bias b:
/// (W.rows) f32 or 0 for none.
#[derive(Copy, Clone, Debug)]
pub struct PackedPart {
    pub w: PackedMatrix,
    pub y: u64,
    pub bias: u64,
}

/// Warps per block for `rows` weight rows, one per warp (`pair`: a gate and an up warp per
/// row). Any choice gives the same results; smaller blocks spread the small shapes over more SMs.
fn block_warps(rows: usize, pair: bool) -> u32 {
    let per = |w: u32| if pair { w as usize / 2 } else { w as usize };
    if rows.div_ceil(per(PK_WARPS)) >= MIN_BLOCKS {
        PK_WARPS
    } else {
        4
    }
}

impl Ops<'_> {
    /// GGUF blocks `src` (rows x k of `ty`, rows contiguous, 2-byte aligned) into the packed
    /// layout at `dst` (`crate::packed::packed_bytes` bytes, 256-byte aligned).
    pub fn repack(
        &self,
        ty: GgmlType,
        src: u64,
        dst: u64,
        rows: usize,
        k: usize,
    ) -> CudaResult<()> {
        if !is_packed_type(ty) || !k.is_multiple_of(32) {
            return Err(CudaError::Shape(format!("repack of width {k}")));
        }
        let nblk = rows * (k / 32);
        let f = self.k.for_type("repack", ty, "")?;
        launch(
            self.gpu,
            f,
            (blocks(nblk, 256), 1, 1),
            (256, 1, 1),
            &[
                Arg::Ptr(src),
                Arg::Ptr(dst),
                Arg::I32(int(rows, "rows")?),
                Arg::I32(int(k, "columns")?),
            ],
            "repack",
        )
    }

    /// out[t][:] = dequant(W[tokens[t]][:]) * scale from a packed table.
    /// W: packed (vocab, dim);  tokens: (ntok) u32, each < vocab;  out: (ntok, dim) f32.
    pub fn embed_packed(
        &self,
        table: PackedMatrix,
        tokens: u64,
        ntok: usize,
        out: u64,
        scale: f32,
    ) -> CudaResult<()> {
        let (ty, w, vocab, dim) = (table.ty, table.ptr, table.rows, table.cols);
        if !is_packed_type(ty) || !dim.is_multiple_of(32) {
            return Err(CudaError::Shape(format!(
                "packed embedding of width {dim} in {}",
                ty.name()
            )));
        }
        let f = self.k.for_type("embed_packed", ty, "")?;
        launch(
            self.gpu,
            f,
            (int(ntok, "tokens")? as u32, 1, 1),
            (crate::kernels::shape::EMBED_THREADS, 1, 1),
            &[
                Arg::Ptr(w),
                Arg::Ptr(tokens),
                Arg::Ptr(out),
                Arg::I32(int(vocab, "vocab")?),
                Arg::I32(int(dim, "dim")?),
                Arg::F32(scale),
            ],
            "embed_packed",
        )
    }

    /// Q8 activations of x: (ncols, k) f32 into `acts` (room for ncols columns of k). With
    /// `norm` (weights (k) f32) each column is RMS-normalized first, exactly as
    /// [`Ops::rms_norm`] computes it.
    pub fn quantize_q8(
        &self,
        x: u64,
        k: usize,
        ncols: usize,
        norm: Option<Norm>,
        acts: Q8Acts,
    ) -> CudaResult<()> {
        if k == 0 || !k.is_multiple_of(32) {
            return Err(CudaError::Shape(format!("Q8 activations of width {k}")));
        }
        let f = self.k.get("quantize_q8_f32")?;
        let (nw, eps) = norm.map_or((0, 0.0), |n| (n.weight, n.eps));
        launch(
            self.gpu,
            f,
            (blocks(k / 32, QA_WARPS), int(ncols, "columns")? as u32, 1),
            (QA_THREADS, 1, 1),
            &[
                Arg::Ptr(x),
                Arg::Ptr(nw),
                Arg::F32(eps),
                Arg::Ptr(acts.q),
                Arg::Ptr(acts.d),
                Arg::Ptr(acts.sum),
                Arg::I32(int(k, "width")?),
            ],
            "quantize_q8_f32",
        )
    }

    /// The one dispatch of a packed linear layer's matrix-vector kernel: y[c][r] (+)= W[r] .
    /// x[c] (canonical dot product) for r < W.rows, c < ncols. acts: Q8 activations of x:
    /// (ncols, W.cols);  out: (ncols, out.stride) f32, out.stride >= W.rows.
    pub fn linear_packed(
        &self,
        w: PackedMatrix,
        acts: Q8Acts,
        ncols: usize,
        out: OutView,
    ) -> CudaResult<()> {
        self.matmul_packed(w, acts, ncols, out, PkKernel::default_choice(), None)
    }

    /// [`Ops::linear_packed`] through a chosen kernel; `warps` forces the warps per block (1 to
    /// `PK_WARPS`; tests), `None` picks them from the shape.
    pub fn matmul_packed(
        &self,
        w: PackedMatrix,
        acts: Q8Acts,
        ncols: usize,
        out: OutView,
        kernel: PkKernel,
        warps: Option<u32>,
    ) -> CudaResult<()> {
        let (ty, n, k) = (w.ty, w.rows, w.cols);
        check_packed(ty, k, "matmul")?;
        if out.stride < n {
            return Err(CudaError::Shape(format!(
                "packed matmul of {n} rows into a stride of {}",
                out.stride
            )));
        }
        let wp = warps.unwrap_or_else(|| block_warps(n, false));
        if wp == 0 || wp > PK_WARPS {
            return Err(CudaError::Shape(format!("{wp} warps per block")));
        }
        let f = pk_function(
            self,
            kernel,
            "mmvq_packed",
            "mmvqf_packed",
            ty,
            ncols,
            (n, k),
        )?;
        launch(
            self.gpu,
            f,
            (blocks(n, wp), blocks(ncols, PK_COLS), 1),
            (wp * 32, 1, 1),
            &[
                Arg::Ptr(w.ptr),
                Arg::Ptr(acts.q),
                Arg::Ptr(acts.d),
                Arg::Ptr(acts.sum),
                Arg::Ptr(out.ptr),
                Arg::I32(int(n, "rows")?),
                Arg::I32(int(k, "columns")?),
                Arg::I32(int(ncols, "activation columns")?),
                Arg::I32(int(out.stride, "output stride")?),
                Arg::I32(i32::from(out.accumulate)),
            ],
            "mmvq_packed",
        )
    }

    /// Up to three packed matrices of one type and width k against the same activations, one
    /// launch: parts[i].w: packed (n_i, k) into parts[i].y: (ncols, n_i) f32; parts with no
    /// rows are skipped. `parts[i].bias`: 0 or b_i: (n_i) f32, added to y_i's rows as
    /// [`Ops::add_bias`] does (the fast kernel adds it in its epilogue, the reference launches
    /// add_bias).
    pub fn matmul3_packed(
        &self,
        parts: [PackedPart; 3],
        acts: Q8Acts,
        ncols: usize,
        kernel: PkKernel,
    ) -> CudaResult<()> {
        let (ty, k) = (parts[0].w.ty, parts[0].w.cols);
        if parts
            .iter()
            .any(|p| p.w.rows > 0 && (p.w.ty != ty || p.w.cols != k))
        {
            return Err(CudaError::shape(
                "matmul3_packed of matrices of different types or widths",
            ));
        }
        check_packed(ty, k, "matmul3")?;
        let rows: usize = parts.iter().map(|p| p.w.rows).sum();
        let wp = block_warps(rows, false);
        let fast = kernel != PkKernel::Reference;
        let f = pk_function(
            self,
            kernel,
            "mmvq3_packed",
            "mmvqf3_packed",
            ty,
            ncols,
            (rows, k),
        )?;
        let mut args = Vec::with_capacity(17);
        for p in parts {
            args.extend([Arg::Ptr(p.w.ptr), Arg::Ptr(p.y)]);
            if fast {
                args.push(Arg::Ptr(p.bias));
            }
            args.push(Arg::I32(int(p.w.rows, "rows")?));
        }
        args.extend([
            Arg::Ptr(acts.q),
            Arg::Ptr(acts.d),
            Arg::Ptr(acts.sum),
            Arg::I32(int(k, "columns")?),
            Arg::I32(int(ncols, "activation columns")?),
        ]);
        launch(
            self.gpu,
            f,
            (blocks(rows, wp), blocks(ncols, PK_COLS), 1),
            (wp * 32, 1, 1),
            &args,
            "mmvq3_packed",
        )?;
        if !fast {
            for p in parts {
                if p.bias != 0 && p.w.rows > 0 {
                    self.add_bias(p.y, p.bias, ncols, p.w.rows)?;
                }
            }
        }
        Ok(())
    }

    /// out[c][r] = act(Wg[r] . x[c]) * (Wu[r] . x[c]), each dot canonical (`kernel`: which
    /// kernel). Wg, Wu: packed (n, k) of one type;  out: (ncols, n) f32.
    pub fn matmul_glu_packed(
        &self,
        glu: Glu<PackedMatrix>,
        acts: Q8Acts,
        ncols: usize,
        out: u64,
        kernel: PkKernel,
    ) -> CudaResult<()> {
        let Glu { gate, up, act } = glu;
        if gate.ty != up.ty || gate.rows != up.rows || gate.cols != up.cols {
            return Err(CudaError::shape(
                "matmul_glu_packed of gate and up matrices that differ",
            ));
        }
        let (ty, wg, wu, n, k) = (gate.ty, gate.ptr, up.ptr, gate.rows, gate.cols);
        check_packed(ty, k, "matmul_glu")?;
        let wp = block_warps(n, true);
        let f = pk_function(
            self,
            kernel,
            "mmvq_glu_packed",
            "mmvqf_glu_packed",
            ty,
            ncols,
            (n, k),
        )?;
        launch(
            self.gpu,
            f,
            (blocks(n, wp / 2), blocks(ncols, PK_COLS), 1),
            (wp * 32, 1, 1),
            &[
                Arg::Ptr(wg),
                Arg::Ptr(wu),
                Arg::Ptr(acts.q),
                Arg::Ptr(acts.d),
                Arg::Ptr(acts.sum),
                Arg::Ptr(out),
                Arg::I32(int(n, "rows")?),
                Arg::I32(int(k, "columns")?),
                Arg::I32(int(ncols, "activation columns")?),
                Arg::I32(act.gelu_flag()),
            ],
            "mmvq_glu_packed",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_the_sources() {
        let pk = include_str!("../../kernels/mmvq_packed.cu");
        let qa = include_str!("../../kernels/quant_act.cu");
        assert!(pk.contains(&format!("#define PK_WARPS {PK_WARPS}\n")));
        assert!(pk.contains(&format!("#define PK_COLS {PK_COLS}\n")));
        assert!(qa.contains(&format!("#define QA_THREADS {QA_THREADS}\n")));
        assert!(qa.contains(&format!("#define QA_WARPS {QA_WARPS}\n")));
        assert_eq!(QA_THREADS, crate::kernels::shape::NORM_THREADS);
        assert_eq!(QA_THREADS, QA_WARPS * 32);
    }

    #[test]
    fn block_sizes_hold_whole_rows_and_pairs() {
        for n in [1, 64, 576, 4096, 14336, 151_936] {
            for pair in [false, true] {
                let w = block_warps(n, pair);
                assert!(w <= PK_WARPS && w.is_multiple_of(2));
            }
        }
    }
}
