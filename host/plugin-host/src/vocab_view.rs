//! The model's vocabulary ([`Vocab`], read by `orcd_model::vocab`) in the packed form the WIT
//! `vocab` interface hands out, and the host side of that interface (tokenizer and constraint
//! plugins only).
//!
//! Token texts and merge rules are stored end to end with an offsets array, so a range request
//! is two slice copies however large the vocabulary (Gemma 3: 262144 tokens).

use crate::PluginError;
use crate::bindings::tokenizer::worker::plugin::vocab::{Host, PackedBytes, TokenType, VocabInfo};
use crate::state::PluginState;
use orcd_common::Vocab;

/// Most entries one range request returns; larger requests are cut (the guest asks again).
const MAX_RANGE: u32 = 1 << 18;

/// Byte strings stored end to end.
#[derive(Debug, Default)]
struct Packed {
    /// All entries concatenated.
    data: Vec<u8>,
    /// `offsets[i]..offsets[i + 1]` is entry `i`; len = entries + 1.
    offsets: Vec<usize>,
}

impl Packed {
    fn new<'a>(entries: impl Iterator<Item = &'a [u8]>) -> Self {
        let mut packed = Packed {
            data: Vec::new(),
            offsets: vec![0],
        };
        for e in entries {
            packed.data.extend_from_slice(e);
            packed.offsets.push(packed.data.len());
        }
        packed
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn range(&self, start: u32, count: u32) -> PackedBytes {
        let (s, e) = clamp(start, count, self.len());
        PackedBytes {
            data: self.data[self.offsets[s]..self.offsets[e]].to_vec(),
            lengths: self.offsets[s..=e]
                .windows(2)
                .map(|w| (w[1] - w[0]) as u32)
                .collect(),
        }
    }
}

/// `start .. start + count` cut to `0..len` and to [`MAX_RANGE`] entries.
fn clamp(start: u32, count: u32, len: usize) -> (usize, usize) {
    let s = (start as usize).min(len);
    let e = s.saturating_add(count.min(MAX_RANGE) as usize).min(len);
    (s, e)
}

/// The vocabulary, packed for range requests.
#[derive(Debug)]
pub(crate) struct VocabView {
    info: VocabInfo,
    tokens: Packed,
    /// One score per token (zeros when the file has none).
    scores: Vec<f32>,
    /// One type per token.
    types: Vec<TokenType>,
    merges: Packed,
}

impl VocabView {
    /// Pack `data`, checking that per-token arrays match the token count and special ids lie
    /// inside the vocabulary.
    pub(crate) fn new(data: &Vocab) -> Result<Self, PluginError> {
        let n = data.tokens.len();
        let bad = |what: String| PluginError::Runtime(format!("vocabulary: {what}"));
        if n == 0 || n > u32::MAX as usize {
            return Err(bad(format!("{n} tokens")));
        }
        if !data.scores.is_empty() && data.scores.len() != n {
            return Err(bad(format!("{} scores for {n} tokens", data.scores.len())));
        }
        if !data.token_types.is_empty() && data.token_types.len() != n {
            return Err(bad(format!(
                "{} token types for {n} tokens",
                data.token_types.len()
            )));
        }
        for (name, id) in [
            ("bos", data.bos),
            ("eos", data.eos),
            ("eot", data.eot),
            ("unk", data.unk),
            ("pad", data.pad),
        ] {
            if let Some(id) = id.filter(|&id| id as usize >= n) {
                return Err(bad(format!("{name} token id {id} outside {n} tokens")));
            }
        }
        let types = if data.token_types.is_empty() {
            vec![TokenType::Normal; n]
        } else {
            data.token_types.iter().map(|&t| token_type(t)).collect()
        };
        Ok(VocabView {
            info: VocabInfo {
                model: data.model.clone(),
                pre: data.pre.clone(),
                size: n as u32,
                merges_count: data.merges.len() as u32,
                has_scores: !data.scores.is_empty(),
                add_bos: data.add_bos,
                add_eos: data.add_eos,
                add_space_prefix: data.add_space_prefix,
                bos: data.bos,
                eos: data.eos,
                eot: data.eot,
                unk: data.unk,
                pad: data.pad,
            },
            tokens: Packed::new(data.tokens.iter().map(Vec::as_slice)),
            scores: if data.scores.is_empty() {
                vec![0.0; n]
            } else {
                data.scores.clone()
            },
            types,
            merges: Packed::new(data.merges.iter().map(Vec::as_slice)),
        })
    }

    /// Number of tokens.
    pub(crate) fn len(&self) -> usize {
        self.tokens.len()
    }
}

/// A token's type as the WIT enum.
fn token_type(t: orcd_common::TokenType) -> TokenType {
    use orcd_common::TokenType as T;
    match t {
        T::Undefined => TokenType::Undefined,
        T::Normal => TokenType::Normal,
        T::Unknown => TokenType::Unknown,
        T::Control => TokenType::Control,
        T::UserDefined => TokenType::UserDefined,
        T::Unused => TokenType::Unused,
        T::Byte => TokenType::Byte,
    }
}

impl PluginState {
    fn vocab_view(&mut self) -> wasmtime::Result<std::sync::Arc<VocabView>> {
        match &self.vocab {
            Some(v) => Ok(v.clone()),
            None => Err(self.guest_fault("this plugin kind has no vocabulary access".into())),
        }
    }
}

impl Host for PluginState {
    fn info(&mut self) -> wasmtime::Result<VocabInfo> {
        Ok(self.vocab_view()?.info.clone())
    }

    fn tokens(&mut self, start: u32, count: u32) -> wasmtime::Result<PackedBytes> {
        Ok(self.vocab_view()?.tokens.range(start, count))
    }

    fn scores(&mut self, start: u32, count: u32) -> wasmtime::Result<Vec<f32>> {
        let v = self.vocab_view()?;
        let (s, e) = clamp(start, count, v.scores.len());
        Ok(v.scores[s..e].to_vec())
    }

    fn token_types(&mut self, start: u32, count: u32) -> wasmtime::Result<Vec<TokenType>> {
        let v = self.vocab_view()?;
        let (s, e) = clamp(start, count, v.types.len());
        Ok(v.types[s..e].to_vec())
    }

    fn merges(&mut self, start: u32, count: u32) -> wasmtime::Result<PackedBytes> {
        Ok(self.vocab_view()?.merges.range(start, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_clamped_and_packed() {
        let data = Vocab {
            model: "llama".into(),
            tokens: vec![b"<s>".to_vec(), b"a".to_vec(), b"bc".to_vec()],
            token_types: vec![
                orcd_common::TokenType::Control,
                orcd_common::TokenType::Normal,
                orcd_common::TokenType::from_i32(9),
            ],
            merges: vec![b"b c".to_vec()],
            bos: Some(0),
            ..Vocab::default()
        };
        let v = VocabView::new(&data).unwrap();
        let r = v.tokens.range(1, 10);
        assert_eq!(r.data, b"abc");
        assert_eq!(r.lengths, vec![1, 2]);
        assert!(v.tokens.range(5, 1).lengths.is_empty());
        assert_eq!(v.types[2], TokenType::Undefined);
        assert_eq!(v.merges.range(0, u32::MAX).data, b"b c");
        assert!(!v.info.has_scores);
    }

    #[test]
    fn inconsistent_vocab_is_refused() {
        let mut data = Vocab {
            tokens: vec![b"a".to_vec()],
            scores: vec![0.0, 1.0],
            ..Vocab::default()
        };
        assert!(VocabView::new(&data).is_err());
        data.scores.clear();
        data.eos = Some(1);
        assert!(VocabView::new(&data).is_err());
        assert!(VocabView::new(&Vocab::default()).is_err());
    }
}
