//! A tensor's entry in the GGUF header: name, shape, type and where its bytes lie.

use super::limits::MAX_DIMS;
use crate::quant::GgmlType;

/// One tensor of a GGUF file, already checked against the file (shape, type, alignment, bounds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Shape, `ne[0]` first: `ne[0]` is the contiguous row length, e.g. `[576, 49152]` for an
    /// embedding of 49152 rows of 576 values.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Absolute offset of the first byte in the file.
    pub offset: u64,
    /// Bytes of data: `n_rows * ty.row_bytes(row_len)`.
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements (product of the dims).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Elements in one row (`ne[0]`).
    pub fn row_len(&self) -> usize {
        self.dims.first().copied().unwrap_or(1) as usize
    }

    /// Number of rows (product of `ne[1..]`).
    pub fn n_rows(&self) -> usize {
        self.dims.iter().skip(1).product::<u64>() as usize
    }
}

/// Bytes of a tensor of shape `dims` and type `ty`, after checking the shape: no zero
/// dimension, no overflowing element or byte count, rows a whole number of blocks.
pub(crate) fn data_size(dims: &[u64], ty: GgmlType) -> Result<u64, String> {
    if dims.is_empty() || dims.len() > MAX_DIMS as usize {
        return Err(format!(
            "{} dimensions; 1 to {MAX_DIMS} are supported",
            dims.len()
        ));
    }
    if let Some(d) = dims.iter().position(|&d| d == 0) {
        return Err(format!("dimension {d} is zero (shape {dims:?})"));
    }
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| format!("element count of shape {dims:?} overflows"))?;
    let row_len = dims[0];
    let block = ty.block_size() as u64;
    if !row_len.is_multiple_of(block) {
        return Err(format!(
            "row length {row_len} is not a multiple of the {} block size {block}",
            ty.name()
        ));
    }
    let n_rows = n_elements / row_len;
    (row_len / block)
        .checked_mul(ty.block_bytes() as u64)
        .and_then(|row_bytes| row_bytes.checked_mul(n_rows))
        .ok_or_else(|| format!("byte size of shape {dims:?} overflows"))
}
