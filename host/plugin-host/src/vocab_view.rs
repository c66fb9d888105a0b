//! The vocabulary in the packed form the WIT `vocab` interface hands out, and the host side of
//! that interface (tokenizer plugins only).
//!
//! Token texts and merge rules are stored end to end with an offsets array, so a range request
//! is two slice copies however large the vocabulary (Gemma 3: 262144 tokens).

use crate::PluginError;
use crate::bindings::tokenizer::worker::plugin::vocab::{Host, PackedBytes, TokenType, VocabInfo};
use crate::state::PluginState;

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

/// The model's vocabulary as plain data (what the GGUF file's `tokenizer.ggml.*` keys hold).
#[derive(Clone, Debug, Default)]
pub struct VocabData {
    /// `tokenizer.ggml.model` (`gpt2`, `llama`).
    pub model: String,
    /// `tokenizer.ggml.pre`; empty when absent.
    pub pre: String,
    /// Token texts as stored; index = token id.
    pub tokens: Vec<Vec<u8>>,
    /// Scores per token; empty when the file has none.
    pub scores: Vec<f32>,
    /// llama.cpp token type numbers per token; empty means all normal (1).
    pub token_types: Vec<i32>,
    /// Merge rules in priority order, each `left right`.
    pub merges: Vec<Vec<u8>>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
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
    pub(crate) fn new(data: &VocabData) -> Result<Self, PluginError> {
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

/// llama.cpp's token type number as the WIT enum; unknown numbers are `undefined`.
fn token_type(t: i32) -> TokenType {
    match t {
        1 => TokenType::Normal,
        2 => TokenType::Unknown,
        3 => TokenType::Control,
        4 => TokenType::UserDefined,
        5 => TokenType::Unused,
        6 => TokenType::Byte,
        _ => TokenType::Undefined,
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

impl VocabData {
    /// A stand-in vocabulary of `n` tokens `t0`, `t1`, ... for running plugins without a model
    /// (the conformance kit, tests): `llama` model, BOS 0 and EOS 1 (both control tokens), no
    /// scores or merges.
    pub fn synthetic(n: u32) -> VocabData {
        VocabData {
            model: "llama".into(),
            tokens: (0..n).map(|i| format!("t{i}").into_bytes()).collect(),
            token_types: (0..n).map(|i| if i < 2 { 3 } else { 1 }).collect(),
            bos: Some(0),
            eos: Some(1),
            ..VocabData::default()
        }
    }
}

impl From<&orcd_model::vocab::Vocab> for VocabData {
    /// The engine's vocabulary (read from the GGUF file) as plain bytes.
    fn from(v: &orcd_model::vocab::Vocab) -> Self {
        VocabData {
            model: v.model.clone(),
            pre: v.pre.clone(),
            tokens: v.tokens.iter().map(|t| t.as_bytes().to_vec()).collect(),
            scores: v.scores.clone(),
            token_types: v.token_types.clone(),
            merges: v.merges.iter().map(|m| m.as_bytes().to_vec()).collect(),
            add_bos: v.add_bos,
            add_eos: v.add_eos,
            add_space_prefix: v.add_space_prefix,
            bos: v.bos,
            eos: v.eos,
            eot: v.eot,
            unk: v.unk,
            pad: v.pad,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_clamped_and_packed() {
        let data = VocabData {
            model: "llama".into(),
            tokens: vec![b"<s>".to_vec(), b"a".to_vec(), b"bc".to_vec()],
            token_types: vec![3, 1, 9],
            merges: vec![b"b c".to_vec()],
            bos: Some(0),
            ..VocabData::default()
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
        let mut data = VocabData {
            tokens: vec![b"a".to_vec()],
            scores: vec![0.0, 1.0],
            ..VocabData::default()
        };
        assert!(VocabView::new(&data).is_err());
        data.scores.clear();
        data.eos = Some(1);
        assert!(VocabView::new(&data).is_err());
        assert!(VocabView::new(&VocabData::default()).is_err());
    }
}
