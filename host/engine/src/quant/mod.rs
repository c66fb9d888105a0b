//! Tensor element types of GGUF/ggml, their block layouts, dequantization and dot products.
//!
//! Each quantized type is a sequence of fixed-size blocks; one block holds `block_size()`
//! weights in `block_bytes()` bytes. A tensor row (`ne[0]` elements, the contiguous dimension)
//! is always a whole number of blocks.

use crate::EngineError;

/// The ggml tensor types this engine understands (values are ggml's `enum ggml_type`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q4K = 12,
    Q5K = 13,
    Q6K = 14,
    BF16 = 30,
}

impl GgmlType {
    pub const ALL: [GgmlType; 11] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
    ];

    /// The type with ggml id `id`, or `None` for types this engine does not support.
    pub fn from_u32(id: u32) -> Option<GgmlType> {
        GgmlType::ALL.into_iter().find(|t| *t as u32 == id)
    }

    /// Weights per block.
    pub fn block_size(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => {
                32
            }
            GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q5_1 => 24,
            GgmlType::Q8_0 => 34,
            GgmlType::Q4K => 144,
            GgmlType::Q5K => 176,
            GgmlType::Q6K => 210,
        }
    }

    /// Bytes of a row of `n` elements, or an error when `n` is not a whole number of blocks.
    pub fn row_bytes(self, n: usize) -> Result<usize, EngineError> {
        if n % self.block_size() != 0 {
            return Err(EngineError::InvalidInput(format!(
                "{} row of {n} elements is not a multiple of the block size {}",
                self.name(),
                self.block_size()
            )));
        }
        Ok(n / self.block_size() * self.block_bytes())
    }

    /// ggml's name for the type ("q4_0", "q4_K", ...).
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "f32",
            GgmlType::F16 => "f16",
            GgmlType::BF16 => "bf16",
            GgmlType::Q4_0 => "q4_0",
            GgmlType::Q4_1 => "q4_1",
            GgmlType::Q5_0 => "q5_0",
            GgmlType::Q5_1 => "q5_1",
            GgmlType::Q8_0 => "q8_0",
            GgmlType::Q4K => "q4_K",
            GgmlType::Q5K => "q5_K",
            GgmlType::Q6K => "q6_K",
        }
    }

    /// Parse a name as written on the command line ("q4_0", "Q4_K", "q4k", "f16", ...).
    pub fn parse(name: &str) -> Option<GgmlType> {
        let norm = name.to_ascii_lowercase().replace('_', "");
        GgmlType::ALL
            .into_iter()
            .find(|t| t.name().to_ascii_lowercase().replace('_', "") == norm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_rejected() {
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_u32(t as u32), Some(t));
            assert_eq!(GgmlType::parse(t.name()), Some(t));
        }
        assert_eq!(GgmlType::from_u32(4), None); // Q4_2, removed from ggml
        assert_eq!(GgmlType::from_u32(9), None); // Q8_1: activations only
        assert_eq!(GgmlType::parse("Q4K"), Some(GgmlType::Q4K));
    }

    #[test]
    fn row_bytes_needs_whole_blocks() {
        assert_eq!(GgmlType::Q4_0.row_bytes(64).unwrap(), 36);
        assert_eq!(GgmlType::Q6K.row_bytes(512).unwrap(), 420);
        assert!(GgmlType::Q4K.row_bytes(100).is_err());
    }
}
