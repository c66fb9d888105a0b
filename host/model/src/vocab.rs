//! Reads a GGUF model's tokenizer (`tokenizer.ggml.*`) into the one vocabulary type,
//! [`orcd_common::Vocab`] (plain data, shared with the Wasm guests), for the host to hand to the
//! tokenizer plugin. llama.cpp's defaults are applied here, so the flags and ids are the ones
//! the model really uses:
//! - `llama` (SentencePiece) vocabularies default to BOS 1, EOS 2, UNK 0, `add_bos` and
//!   `add_space_prefix` on;
//! - `gpt2` (byte-level BPE) vocabularies default to `add_bos` on only for the Llama 3
//!   pre-tokenizers, and never prefix a space; Gemma 4's (`gemma4`) always add BOS;
//! - the end-of-turn token, when the file has none, is found by its text (`<|im_end|>`,
//!   `<end_of_turn>`, `<|eot_id|>`, ...);
//! - special ids outside the vocabulary are ignored (llama.cpp warns and keeps its default).

use std::path::Path;

use crate::gguf::{GgufFile, MetaArray, MetaValue};
use orcd_common::{TokenType, Vocab};
use orcd_device::EngineError;

/// Texts llama.cpp recognises as an end-of-turn token, in the order they are tried.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Pre-tokenizers for which llama.cpp adds BOS by default.
const BOS_BY_DEFAULT_PRE: &[&str] = &[
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "falcon-h1",
    "pixtral",
    "midm-2.0",
    "lfm2",
    "jina-v5-nano",
    "tekken",
    "chameleon",
];

/// Pre-tokenizers of llama.cpp's `GEMMA4` type (`tokenizer.ggml.model = gemma4` selects it too).
const GEMMA4_PRE: &[&str] = &["gemma4", "granite-embed-multi-311m"];

/// Reads the vocabulary of the GGUF file at `path` (a vocabulary-only file is fine).
pub fn open(path: &Path) -> Result<Vocab, EngineError> {
    from_gguf(&GgufFile::open(path)?)
}

/// Reads the vocabulary from an opened GGUF file.
pub fn from_gguf(file: &GgufFile) -> Result<Vocab, EngineError> {
    let model = file.get_str("tokenizer.ggml.model")?.to_string();
    let pre = file
        .get_str_opt("tokenizer.ggml.pre")?
        .unwrap_or_default()
        .to_string();
    let name = file
        .get_str_opt("general.name")?
        .unwrap_or_default()
        .to_string();
    let tokens: Vec<Vec<u8>> = file
        .get_str_array("tokenizer.ggml.tokens")?
        .iter()
        .map(|t| t.as_bytes().to_vec())
        .collect();
    let n = tokens.len();
    if n == 0 {
        return Err(bad("tokenizer.ggml.tokens", "empty token list"));
    }

    let scores = match file.get("tokenizer.ggml.scores") {
        None => Vec::new(),
        Some(MetaValue::Array(MetaArray::F32(v))) => v.clone(),
        // llama.cpp also accepts integer scores.
        Some(MetaValue::Array(MetaArray::I32(v))) => v.iter().map(|&s| s as f32).collect(),
        Some(v) => {
            return Err(bad(
                "tokenizer.ggml.scores",
                format!("expected array of f32, found {}", v.type_description()),
            ));
        }
    };
    if !scores.is_empty() && scores.len() < n {
        return Err(bad(
            "tokenizer.ggml.scores",
            format!("{} scores for {n} tokens", scores.len()),
        ));
    }
    let token_types = match file.get("tokenizer.ggml.token_type") {
        None => Vec::new(),
        Some(_) => file
            .get_i32_array("tokenizer.ggml.token_type")?
            .iter()
            .map(|&t| TokenType::from_i32(t))
            .collect(),
    };
    if !token_types.is_empty() && token_types.len() < n {
        return Err(bad(
            "tokenizer.ggml.token_type",
            format!("{} types for {n} tokens", token_types.len()),
        ));
    }
    let merges = match file.get("tokenizer.ggml.merges") {
        None => Vec::new(),
        Some(_) => file
            .get_str_array("tokenizer.ggml.merges")?
            .iter()
            .map(|m| m.as_bytes().to_vec())
            .collect(),
    };

    // WordPiece normalises text (lowercase, accents stripped) unless the file says
    // otherwise; the tokenizer implements only the default.
    if model == "bert" {
        for key in [
            "tokenizer.ggml.normalizer.lowercase",
            "tokenizer.ggml.normalizer.strip_accents",
        ] {
            if file.get_bool_opt(key)? == Some(false) {
                return Err(bad(key, "only the default (true) is supported"));
            }
        }
    }
    let spm = model == "llama";
    let in_range = |id: Option<u32>| id.filter(|&id| (id as usize) < n);
    let special = |key: &str, default: Option<u32>| -> Result<Option<u32>, EngineError> {
        Ok(in_range(file.get_u32_opt(key)?).or(in_range(default)))
    };
    let bos = special("tokenizer.ggml.bos_token_id", spm.then_some(1))?;
    let eos = special("tokenizer.ggml.eos_token_id", spm.then_some(2))?;
    let unk = special("tokenizer.ggml.unknown_token_id", spm.then_some(0))?;
    let pad = special("tokenizer.ggml.padding_token_id", None)?;
    let eot = match special("tokenizer.ggml.eot_token_id", None)? {
        Some(id) => Some(id),
        None => EOT_TEXTS
            .iter()
            .find_map(|t| tokens.iter().position(|s| s == t.as_bytes()))
            .map(|i| i as u32),
    };

    let bos_by_default = spm || BOS_BY_DEFAULT_PRE.contains(&pre.as_str());
    // llama.cpp forces BOS on for Gemma 4's pre-tokenizer, whatever the file says.
    let gemma4 = model == "gemma4" || GEMMA4_PRE.contains(&pre.as_str());
    let add_bos = gemma4
        || file
            .get_bool_opt("tokenizer.ggml.add_bos_token")?
            .unwrap_or(bos_by_default);
    let add_eos = file
        .get_bool_opt("tokenizer.ggml.add_eos_token")?
        .unwrap_or(false);
    let add_space_prefix = spm
        && file
            .get_bool_opt("tokenizer.ggml.add_space_prefix")?
            .unwrap_or(true);
    if add_bos && bos.is_none() {
        return Err(bad(
            "tokenizer.ggml.add_bos_token",
            "set, but there is no BOS token",
        ));
    }
    if add_eos && eos.is_none() {
        return Err(bad(
            "tokenizer.ggml.add_eos_token",
            "set, but there is no EOS token",
        ));
    }

    Ok(Vocab {
        model,
        pre,
        name,
        tokens,
        scores,
        token_types,
        merges,
        add_bos,
        add_eos,
        add_space_prefix,
        bos,
        eos,
        eot,
        unk,
        pad,
    })
}

fn bad(key: &str, problem: impl Into<String>) -> EngineError {
    EngineError::BadMetadata {
        key: key.to_string(),
        problem: problem.into(),
    }
}

/// The tokens that end a generation: `extra` (the model config's EOS ids), the vocabulary's EOS
/// and end-of-turn tokens, and for GPT-OSS's harmony vocabulary (`<|return|>`, `<|call|>` and
/// `<|end|>` all present) `<|return|>` and `<|call|>` but not `<|end|>`, which there closes one
/// message of an answer (its reasoning) and not the answer: llama.cpp's workaround in
/// `llama_vocab::impl::load`. Sorted, without repeats.
pub fn end_of_generation(vocab: &Vocab, extra: &[u32]) -> Vec<u32> {
    let mut ids: Vec<u32> = extra
        .iter()
        .copied()
        .chain(vocab.eos)
        .chain(vocab.eot)
        .collect();
    let find = |t: &str| {
        vocab
            .tokens
            .iter()
            .position(|s| s == t.as_bytes())
            .map(|i| i as u32)
    };
    if let (Some(end), Some(ret), Some(call)) =
        (find("<|end|>"), find("<|return|>"), find("<|call|>"))
    {
        ids.retain(|&id| id != end);
        ids.extend([ret, call]);
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufWriter;

    #[test]
    fn harmony_ends_at_return_and_call_but_not_at_end() {
        let f = file(vec![
            ("tokenizer.ggml.model", MetaValue::Str("gpt2".into())),
            ("tokenizer.ggml.pre", MetaValue::Str("gpt-4o".into())),
            (
                "tokenizer.ggml.tokens",
                strs(&[
                    "a",
                    "<|endoftext|>",
                    "<|return|>",
                    "<|end|>",
                    "<|call|>",
                    "<|start|>",
                ]),
            ),
            ("tokenizer.ggml.eos_token_id", MetaValue::U32(2)),
        ]);
        let v = from_gguf(&f).unwrap();
        // The end-of-turn token found by its text is `<|end|>`, as llama.cpp finds it.
        assert_eq!((v.eos, v.eot), (Some(2), Some(3)));
        assert_eq!(end_of_generation(&v, &[1, 2]), [1, 2, 4]);
        // Without `<|call|>` it is not harmony: `<|end|>` ends the generation.
        let f = file(vec![
            ("tokenizer.ggml.model", MetaValue::Str("gpt2".into())),
            (
                "tokenizer.ggml.tokens",
                strs(&["a", "<|end|>", "<|return|>"]),
            ),
        ]);
        let v = from_gguf(&f).unwrap();
        assert_eq!(end_of_generation(&v, &[]), [1]);
    }

    fn file(meta: Vec<(&str, MetaValue)>) -> GgufFile {
        let mut w = GgufWriter::new();
        for (k, v) in meta {
            w.add_metadata(k, v).expect("valid metadata");
        }
        GgufFile::from_bytes(w.to_bytes().expect("serialises")).expect("parses")
    }

    fn strs(v: &[&str]) -> MetaValue {
        MetaValue::Array(MetaArray::Str(v.iter().map(|s| s.to_string()).collect()))
    }

    #[test]
    fn spm_defaults_apply() {
        let f = file(vec![
            ("tokenizer.ggml.model", MetaValue::Str("llama".into())),
            (
                "tokenizer.ggml.tokens",
                strs(&["<unk>", "<s>", "</s>", "▁a", "<end_of_turn>"]),
            ),
        ]);
        let v = from_gguf(&f).unwrap();
        assert_eq!(
            (v.bos, v.eos, v.unk, v.eot),
            (Some(1), Some(2), Some(0), Some(4))
        );
        assert!(v.add_bos && v.add_space_prefix && !v.add_eos);
        assert!(v.scores.is_empty() && v.merges.is_empty());
    }

    #[test]
    fn bpe_values_from_the_file() {
        let f = file(vec![
            ("tokenizer.ggml.model", MetaValue::Str("gpt2".into())),
            ("tokenizer.ggml.pre", MetaValue::Str("smollm".into())),
            (
                "tokenizer.ggml.tokens",
                strs(&["a", "b", "ab", "<|im_end|>"]),
            ),
            ("tokenizer.ggml.merges", strs(&["a b"])),
            (
                "tokenizer.ggml.token_type",
                MetaValue::Array(MetaArray::I32(vec![1, 1, 1, 3])),
            ),
            ("tokenizer.ggml.bos_token_id", MetaValue::U32(0)),
            ("tokenizer.ggml.eos_token_id", MetaValue::U32(99)),
            ("tokenizer.ggml.add_space_prefix", MetaValue::Bool(true)),
        ]);
        let v = from_gguf(&f).unwrap();
        assert_eq!(v.merges, [b"a b"]);
        assert_eq!((v.bos, v.eos, v.eot), (Some(0), None, Some(3)));
        assert!(!v.add_bos && !v.add_space_prefix);
    }

    #[test]
    fn broken_vocabularies_are_refused() {
        let no_tokens = file(vec![(
            "tokenizer.ggml.model",
            MetaValue::Str("gpt2".into()),
        )]);
        assert!(matches!(
            from_gguf(&no_tokens),
            Err(EngineError::BadMetadata { .. })
        ));
        let short_scores = file(vec![
            ("tokenizer.ggml.model", MetaValue::Str("llama".into())),
            ("tokenizer.ggml.tokens", strs(&["a", "b"])),
            (
                "tokenizer.ggml.scores",
                MetaValue::Array(MetaArray::F32(vec![0.0])),
            ),
        ]);
        assert!(matches!(
            from_gguf(&short_scores),
            Err(EngineError::BadMetadata { .. })
        ));
        let bos_missing = file(vec![
            ("tokenizer.ggml.model", MetaValue::Str("gpt2".into())),
            ("tokenizer.ggml.tokens", strs(&["a"])),
            ("tokenizer.ggml.add_bos_token", MetaValue::Bool(true)),
        ]);
        assert!(matches!(
            from_gguf(&bos_missing),
            Err(EngineError::BadMetadata { .. })
        ));
    }
}
