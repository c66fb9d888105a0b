//! Batched matrix products against quantized weights read in place from the mapped file.
//!
//! `out (n_tok, rows) = x (n_tok, cols) · Wᵀ` where `W` is `rows` rows of `cols` weights in the
//! file's type. The work is split over output rows across the rayon pool; each weight row is read
//! once per call and dotted with every token row, so a batched step costs one pass over the
//! weights however many tokens it carries. With several tokens on the Q8 path the tokens go in
//! tiles of [`quant::DOT_TILE`] and each weight block is unpacked once per tile
//! ([`quant::dot_rows_q8`], bit-identical to the one-token dot).

use rayon::prelude::*;

use crate::ops;
use orcd_device::EngineError;
use orcd_model::gguf::{GgufFile, TensorInfo};
use orcd_model::quant::{self, ActsTile, GgmlType, QuantizedActs};

/// Fewest weight rows one parallel task takes (below this, scheduling costs more than it saves).
const MIN_ROWS_PER_TASK: usize = 8;
/// Most weight rows one parallel task takes.
const MAX_ROWS_PER_TASK: usize = 256;
/// Parallel tasks per pool thread a product is cut into (load balance; more tasks cost more
/// scheduling than they gain in a one-token step: 2 gave tg128 +15-20% over 8 on 2 cores).
const TASKS_PER_THREAD: usize = 2;

/// How dot products are computed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DotPath {
    /// Activations quantized to 8 bits per 32-block, integer block sums (llama.cpp's CPU path).
    Q8,
    /// f32 activations against each weight row dequantized to f32: the exact reference.
    Exact,
}

/// A weight matrix in the file: `rows` rows of `cols` elements of type `ty`, `row_bytes` each.
#[derive(Copy, Clone, Debug)]
pub struct QMatrix<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub row_bytes: usize,
    /// (rows, row_bytes) the raw blocks.
    pub data: &'a [u8],
}

impl<'a> QMatrix<'a> {
    /// The 2-D tensor `t` of `gguf` (shape and size were checked when the model loaded).
    pub fn new(gguf: &'a GgufFile, t: &TensorInfo) -> Result<QMatrix<'a>, EngineError> {
        let cols = t.row_len();
        let rows = t.n_rows();
        let row_bytes = t.ty.row_bytes(cols)?;
        let data = gguf.tensor_data(t);
        if data.len() != rows * row_bytes {
            return Err(EngineError::BadTensor {
                tensor: t.name.clone(),
                problem: format!("holds {} bytes, expected {}", data.len(), rows * row_bytes),
            });
        }
        Ok(QMatrix {
            ty: t.ty,
            rows,
            cols,
            row_bytes,
            data,
        })
    }

    /// Rows `first..first + n` as a matrix of their own (one expert of a stacked tensor).
    pub fn rows(&self, first: usize, n: usize) -> Result<QMatrix<'a>, EngineError> {
        if first + n > self.rows {
            return Err(EngineError::InvalidInput(format!(
                "rows {first}..{} of a matrix with {} rows",
                first + n,
                self.rows
            )));
        }
        Ok(QMatrix {
            rows: n,
            data: &self.data[first * self.row_bytes..(first + n) * self.row_bytes],
            ..*self
        })
    }

    /// The bytes of row `r`.
    #[inline]
    pub fn row(&self, r: usize) -> &'a [u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Row `r` dequantized into `dst` (`cols` long).
    pub fn dequantize_row(&self, r: usize, dst: &mut [f32]) -> Result<(), EngineError> {
        if r >= self.rows {
            return Err(EngineError::InvalidInput(format!(
                "row {r} of a matrix with {} rows",
                self.rows
            )));
        }
        quant::dequantize_row(self.ty, self.row(r), dst)
    }
}

/// The activations of one or more products with the same input (q, k and v; gate and up),
/// prepared once for the chosen [`DotPath`].
pub struct Prepared<'x> {
    /// Tokens (rows of the input).
    n_tok: usize,
    /// Elements per row.
    cols: usize,
    acts: Acts<'x>,
}

enum Acts<'x> {
    /// (n_tok) quantized rows.
    Q8(Vec<QuantizedActs>),
    /// (n_tok, cols) the f32 rows as given.
    Exact(&'x [f32]),
}

impl<'x> Prepared<'x> {
    /// `x (n_tok, cols)` prepared for `path` (on the Q8 path: each row quantized, in parallel).
    pub fn new(x: &'x [f32], cols: usize, path: DotPath) -> Result<Prepared<'x>, EngineError> {
        let n_tok = x.len().checked_div(cols).unwrap_or(0);
        if x.len() != n_tok * cols {
            return Err(EngineError::InvalidInput(format!(
                "activations of {} elements are not rows of {cols}",
                x.len()
            )));
        }
        let acts = match path {
            DotPath::Q8 => Acts::Q8(
                x.par_chunks(cols.max(1))
                    .map(QuantizedActs::new)
                    .collect::<Result<_, _>>()?,
            ),
            DotPath::Exact => Acts::Exact(x),
        };
        Ok(Prepared { n_tok, cols, acts })
    }
}

/// `out (n_tok, w.rows) = x (n_tok, w.cols) · Wᵀ`, in parallel over weight rows on the current
/// rayon pool. `scratch` is resized as needed (it holds the (w.rows, n_tok) transposed result
/// when `n_tok > 1`).
pub fn matmul(
    out: &mut [f32],
    x: &[f32],
    w: &QMatrix<'_>,
    path: DotPath,
    scratch: &mut Vec<f32>,
) -> Result<(), EngineError> {
    matmul_prepared(out, &Prepared::new(x, w.cols, path)?, w, scratch)
}

/// [`matmul`] of activations prepared once ([`Prepared`]) for several products: the same
/// results as `matmul` of the rows they came from.
pub fn matmul_prepared(
    out: &mut [f32],
    x: &Prepared<'_>,
    w: &QMatrix<'_>,
    scratch: &mut Vec<f32>,
) -> Result<(), EngineError> {
    let n_tok = x.n_tok;
    if x.cols != w.cols || out.len() != n_tok * w.rows {
        return Err(EngineError::InvalidInput(format!(
            "matmul shapes: x ({n_tok}, {}) and out {} for a {}x{} matrix",
            x.cols,
            out.len(),
            w.rows,
            w.cols
        )));
    }
    if n_tok == 0 {
        return Ok(());
    }
    let acts = &x.acts;
    // several tokens: their quantized rows interleaved in tiles, each weight block unpacked
    // once per tile
    let tiles: Vec<ActsTile<'_>> = match acts {
        Acts::Q8(q) if n_tok > 1 => q.par_chunks(quant::DOT_TILE).map(ActsTile::new).collect(),
        _ => Vec::new(),
    };
    let per_task = (w.rows / (rayon::current_num_threads() * TASKS_PER_THREAD))
        .clamp(MIN_ROWS_PER_TASK, MAX_ROWS_PER_TASK);
    // With one token the (rows) result is written in place; otherwise a (rows, n_tok)
    // transposed result, so that each task owns whole weight rows.
    let direct = n_tok == 1;
    let dst: &mut [f32] = if direct {
        out
    } else {
        scratch.resize(w.rows * n_tok, 0.0);
        scratch
    };
    dst.par_chunks_mut(per_task * n_tok)
        .enumerate()
        .try_for_each_init(Vec::new, |wrow: &mut Vec<f32>, (c, chunk)| {
            // several tokens: each weight block unpacked once per tile of tokens; tile by
            // tile, so that one tile's activations stay in L1 while the task's rows pass
            if let (Acts::Q8(_), false) = (acts, direct) {
                for (ti, tile) in tiles.iter().enumerate() {
                    let cols = ti * quant::DOT_TILE..ti * quant::DOT_TILE + tile.len();
                    for (i, row_out) in chunk.chunks_mut(n_tok).enumerate() {
                        let r = c * per_task + i;
                        quant::dot_rows_q8(w.ty, w.row(r), tile, &mut row_out[cols.clone()]);
                    }
                }
                return Ok(());
            }
            for (i, row_out) in chunk.chunks_mut(n_tok).enumerate() {
                let r = c * per_task + i;
                match acts {
                    // one token's quantized row against the weight row's blocks
                    Acts::Q8(q) if direct => row_out[0] = quant::dot_row_q8(w.ty, w.row(r), &q[0]),
                    Acts::Q8(_) => unreachable!("tiles are handled above"),
                    // the weight row dequantized once, dotted with every token in f32
                    Acts::Exact(x) => {
                        wrow.resize(w.cols, 0.0);
                        w.dequantize_row(r, wrow)?;
                        for (o, xt) in row_out.iter_mut().zip(x.chunks(w.cols)) {
                            *o = ops::dot_f32(wrow, xt);
                        }
                    }
                }
            }
            Ok::<(), EngineError>(())
        })?;
    if !direct {
        // (n_tok, rows) transposed back.
        for t in 0..n_tok {
            let dst = &mut out[t * w.rows..(t + 1) * w.rows];
            for (r, d) in dst.iter_mut().enumerate() {
                *d = scratch[r * n_tok + t];
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A matrix of `rows` rows quantized to `ty` from a deterministic pattern.
    fn matrix_bytes(ty: GgmlType, rows: usize, cols: usize) -> (Vec<u8>, Vec<f32>) {
        let mut bytes = Vec::new();
        let mut deq = vec![0.0; rows * cols];
        for r in 0..rows {
            let row: Vec<f32> = (0..cols)
                .map(|c| (((r * 31 + c * 17) % 23) as f32 - 11.0) * 0.05)
                .collect();
            let q = quant::quantize_row(ty, &row).unwrap();
            quant::dequantize_row(ty, &q, &mut deq[r * cols..(r + 1) * cols]).unwrap();
            bytes.extend(q);
        }
        (bytes, deq)
    }

    #[test]
    fn batched_product_matches_row_by_row_reference() {
        let (rows, cols, n_tok) = (37, 64, 3);
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::F32] {
            let (bytes, deq) = matrix_bytes(ty, rows, cols);
            let w = QMatrix {
                ty,
                rows,
                cols,
                row_bytes: ty.row_bytes(cols).unwrap(),
                data: &bytes,
            };
            let x: Vec<f32> = (0..n_tok * cols)
                .map(|i| ((i % 13) as f32 - 6.0) * 0.1)
                .collect();
            let mut want = vec![0.0f32; n_tok * rows];
            for t in 0..n_tok {
                for r in 0..rows {
                    want[t * rows + r] =
                        (0..cols).map(|c| deq[r * cols + c] * x[t * cols + c]).sum();
                }
            }
            let mut scratch = Vec::new();
            for (path, tol) in [(DotPath::Exact, 1e-4), (DotPath::Q8, 0.05)] {
                let mut out = vec![0.0; n_tok * rows];
                matmul(&mut out, &x, &w, path, &mut scratch).unwrap();
                for (a, b) in out.iter().zip(&want) {
                    assert!((a - b).abs() <= tol, "{ty:?} {path:?}: {a} vs {b}");
                }
                // Activations prepared once serve two products with the same results.
                let prepared = Prepared::new(&x, cols, path).unwrap();
                for _ in 0..2 {
                    let mut again = vec![f32::NAN; n_tok * rows];
                    matmul_prepared(&mut again, &prepared, &w, &mut scratch).unwrap();
                    assert_eq!(again, out, "{ty:?} {path:?} prepared");
                }
                // One token at a time gives the same rows as the batch.
                let mut single = vec![0.0; rows];
                matmul(&mut single, &x[cols..2 * cols], &w, path, &mut scratch).unwrap();
                assert_eq!(&single[..], &out[rows..2 * rows]);
            }
        }
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let (bytes, _) = matrix_bytes(GgmlType::Q8_0, 4, 32);
        let w = QMatrix {
            ty: GgmlType::Q8_0,
            rows: 4,
            cols: 32,
            row_bytes: 34,
            data: &bytes,
        };
        let mut out = vec![0.0; 4];
        assert!(matmul(&mut out, &[0.0; 33], &w, DotPath::Q8, &mut Vec::new()).is_err());
        assert!(w.dequantize_row(4, &mut [0.0; 32]).is_err());
    }
}
