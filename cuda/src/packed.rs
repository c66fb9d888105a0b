//! The packed weight layout and Q8 activations of the integer matrix kernels, with host-side
//! references of both and of the canonical dot product every such kernel computes.
//!
//! **Packed weights** (Q4_0, Q4_1, Q8_0; produced at load from the GGUF blocks, same bytes
//! plus at most 255 of padding). A tensor of `rows` x `k` weights has `nb = k / 32` blocks per
//! row and two regions:
//! - `qs` at offset 0: block (r, b) at `(r * nb + b) * QB`, QB = 16 (Q4_0, Q4_1) or 32 (Q8_0):
//!   the block's quants as in GGUF (Q4: byte j holds weight j in its low nibble and weight
//!   j + 16 in its high nibble, unsigned 0..15; Q8_0: 32 signed bytes). Each block is 16-byte
//!   aligned, so a lane fetches a Q4 block in one 16-byte load.
//! - scales at `scales_offset = align256(rows * nb * QB)`: per block (r, b) at index
//!   `r * nb + b`: Q4_0 and Q8_0 one f16 `d` (2 bytes); Q4_1 the f16 pair `d`, `m` (4 bytes,
//!   `d` first).
//!
//! **Q8 activations** of an activation matrix x: (ncols, k) f32, per column c and block b
//! (`nb = k / 32`): `q`: (ncols, k) i8, `d`: (ncols, nb) f32, `sum`: (ncols, nb) i32, exactly as
//! the CPU backend's `QuantizedActs`: `d = amax / 127`, `q = round(x * (1 / d))` (half away
//! from zero, saturating; d = 0 gives q = 0), `sum = sum(q)`.
//!
//! **The canonical dot product** of weight row r and activation column c, which the GPU
//! matrix-vector and matrix-matrix kernels compute bit for bit (so a token's result does not
//! depend on how many tokens share a launch): per block b, with `dot = sum_j w_q[j] * x_q[j]`
//! (exact integer; Q4 quants unsigned 0..15) and f32 operations rounded one at a time (no
//! fused multiply-add):
//! - Q4_0: `t = (d_w * d_x) * (dot - 8 * sum) as f32`
//! - Q4_1: `t = (d_w * d_x) * dot as f32 + m_w * (d_x * sum as f32)`
//! - Q8_0: `t = (d_w * d_x) * dot as f32`
//!
//! The blocks are summed in segments of [`SEG_BLOCKS`] consecutive blocks (the last may be
//! shorter): `seg_s = ((0 + t_first) + ...) + t_last` in increasing b, then
//! `result = ((0 + seg_0) + seg_1) + ...` in increasing s.

use crate::error::{CudaError, CudaResult};
use orcd_model::quant::{GgmlType, f16_to_f32};

/// Blocks of 32 weights per segment of the canonical sum.
pub const SEG_BLOCKS: usize = 16;
/// Alignment of the scales region.
const SCALES_ALIGN: usize = 256;

/// Whether `ty` has a packed layout.
pub fn is_packed_type(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0)
}

/// (bytes of quants per block, bytes of scales per block, GGUF bytes per block) of a packed
/// type; a type without a packed layout is a shape error.
fn block_parts(ty: GgmlType) -> CudaResult<(usize, usize, usize)> {
    match ty {
        GgmlType::Q4_0 => Ok((16, 2, 18)),
        GgmlType::Q4_1 => Ok((16, 4, 20)),
        GgmlType::Q8_0 => Ok((32, 2, 34)),
        _ => Err(CudaError::shape(format!(
            "{} has no packed layout",
            ty.name()
        ))),
    }
}

/// Offset of the scales region of a packed `rows` x `k` tensor of type `ty`.
pub fn scales_offset(ty: GgmlType, rows: usize, k: usize) -> CudaResult<usize> {
    Ok((rows * (k / 32) * block_parts(ty)?.0).next_multiple_of(SCALES_ALIGN))
}

/// Total bytes of a packed `rows` x `k` tensor of type `ty`.
pub fn packed_bytes(ty: GgmlType, rows: usize, k: usize) -> CudaResult<usize> {
    Ok(scales_offset(ty, rows, k)? + rows * (k / 32) * block_parts(ty)?.1)
}

/// Host reference of the repack: GGUF blocks (`rows` x `k`, rows contiguous) to the packed
/// layout. `k` must be a multiple of 32.
pub fn pack(ty: GgmlType, gguf: &[u8], rows: usize, k: usize) -> CudaResult<Vec<u8>> {
    let (qb, sb, bb) = block_parts(ty)?;
    let n = rows * (k / 32);
    if gguf.len() != n * bb || !k.is_multiple_of(32) {
        return Err(CudaError::shape(format!(
            "{} GGUF bytes for a {rows} x {k} {}",
            gguf.len(),
            ty.name()
        )));
    }
    let so = scales_offset(ty, rows, k)?;
    let mut out = vec![0u8; packed_bytes(ty, rows, k)?];
    for (i, block) in gguf.chunks_exact(bb).enumerate() {
        // GGUF block: scales (d, then m for Q4_1) first, then the quants.
        out[so + i * sb..so + (i + 1) * sb].copy_from_slice(&block[..sb]);
        out[i * qb..(i + 1) * qb].copy_from_slice(&block[sb..]);
    }
    Ok(out)
}

/// Q8 activations of `ncols` columns of `k` (see the module docs).
#[derive(Clone, Debug)]
pub struct ActsQ8 {
    pub k: usize,
    pub ncols: usize,
    /// (ncols, k).
    pub q: Vec<i8>,
    /// (ncols, k / 32).
    pub d: Vec<f32>,
    /// (ncols, k / 32).
    pub sum: Vec<i32>,
}

/// Host reference of the activation quantization: x: (ncols, k) f32, k a multiple of 32.
pub fn quantize_acts(x: &[f32], ncols: usize, k: usize) -> CudaResult<ActsQ8> {
    if x.len() != ncols * k || !k.is_multiple_of(32) {
        return Err(CudaError::shape(format!(
            "{} values as {ncols} columns of {k}",
            x.len()
        )));
    }
    let mut a = ActsQ8 {
        k,
        ncols,
        q: Vec::with_capacity(ncols * k),
        d: Vec::with_capacity(ncols * k / 32),
        sum: Vec::with_capacity(ncols * k / 32),
    };
    for block in x.chunks_exact(32) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for &v in block {
            // `as i8` saturates and maps NaN to 0, like the CPU's quantizer.
            let q = (v * id).round() as i8;
            sum += i32::from(q);
            a.q.push(q);
        }
        a.d.push(d);
        a.sum.push(sum);
    }
    Ok(a)
}

/// Host reference of the canonical dot product of packed weight row `r` and activation
/// column `c` (see the module docs).
pub fn dot_canonical(
    ty: GgmlType,
    packed: &[u8],
    rows: usize,
    r: usize,
    acts: &ActsQ8,
    c: usize,
) -> CudaResult<f32> {
    let k = acts.k;
    let nb = k / 32;
    let (qb, sb, _) = block_parts(ty)?;
    let so = scales_offset(ty, rows, k)?;
    let mut total = 0.0f32;
    let mut seg = 0.0f32;
    for b in 0..nb {
        let i = r * nb + b;
        let wq = &packed[i * qb..(i + 1) * qb];
        let xq = &acts.q[c * k + b * 32..c * k + b * 32 + 32];
        let dot: i32 = (0..32)
            .map(|j| {
                let w = match ty {
                    GgmlType::Q8_0 => i32::from(wq[j] as i8),
                    _ if j < 16 => i32::from(wq[j] & 0x0F),
                    _ => i32::from(wq[j - 16] >> 4),
                };
                w * i32::from(xq[j])
            })
            .sum();
        let s = &packed[so + i * sb..so + (i + 1) * sb];
        let dw = f16_to_f32([s[0], s[1]]);
        let dx = acts.d[c * nb + b];
        let sum = acts.sum[c * nb + b];
        let t = match ty {
            GgmlType::Q4_0 => (dw * dx) * (dot - 8 * sum) as f32,
            GgmlType::Q4_1 => (dw * dx) * dot as f32 + f16_to_f32([s[2], s[3]]) * (dx * sum as f32),
            _ => (dw * dx) * dot as f32,
        };
        seg += t;
        if (b + 1) % SEG_BLOCKS == 0 || b + 1 == nb {
            total += seg;
            seg = 0.0;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orcd_model::quant::{QuantizedActs, dot_row_q8_scalar, quantize_row};

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32 ^ seed).wrapping_mul(2_654_435_761);
                ((h >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 2.0
            })
            .collect()
    }

    #[test]
    fn canonical_dot_is_the_cpu_q8_dot_up_to_summation_order() {
        let (rows, k) = (5, 32 * 37);
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            let w = data(rows * k, 7);
            let gguf: Vec<u8> = w
                .chunks(k)
                .flat_map(|row| quantize_row(ty, row).unwrap())
                .collect();
            let packed = pack(ty, &gguf, rows, k).unwrap();
            assert_eq!(packed.len(), packed_bytes(ty, rows, k).unwrap());
            let x = data(2 * k, 11);
            let acts = quantize_acts(&x, 2, k).unwrap();
            for c in 0..2 {
                let cpu = QuantizedActs::new(&x[c * k..(c + 1) * k]).unwrap();
                for r in 0..rows {
                    let row = &gguf[r * gguf.len() / rows..(r + 1) * gguf.len() / rows];
                    let want = dot_row_q8_scalar(ty, row, &cpu);
                    let got = dot_canonical(ty, &packed, rows, r, &acts, c).unwrap();
                    assert!(
                        (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                        "{} row {r} col {c}: {got} vs {want}",
                        ty.name()
                    );
                }
            }
        }
    }

    #[test]
    fn activation_quantization_is_the_cpus() {
        let x = data(3 * 64, 3);
        let acts = quantize_acts(&x, 3, 64).unwrap();
        for c in 0..3 {
            let cpu = QuantizedActs::new(&x[c * 64..(c + 1) * 64]).unwrap();
            for b in 0..2 {
                assert_eq!(acts.d[c * 2 + b], cpu.scale(b));
            }
        }
        let zero = quantize_acts(&[0.0; 32], 1, 32).unwrap();
        assert_eq!((zero.d[0], zero.sum[0]), (0.0, 0));
    }
}
