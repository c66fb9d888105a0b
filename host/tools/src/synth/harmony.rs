//! GPT-OSS's chat format on a borrowed vocabulary (`worker-orcd synth --harmony-template`).
//!
//! A real gpt-oss file carries the o200k_harmony vocabulary, whose special tokens
//! (`<|start|>`, `<|channel|>`, `<|message|>`, `<|end|>`, `<|return|>`, `<|call|>`, ...) frame
//! every chat message, and the harmony chat template. A synthetic model borrows another
//! vocabulary ([`super::synthesize`]'s `vocab`), which has none of them: this adds the missing
//! ones as control tokens after the borrowed ones (in o200k_harmony's order; the model's
//! vocabulary grows by that many), makes `<|return|>` the EOS and `<|startoftext|>` the BOS as
//! the real file has them, and stores the template. The borrowed tokens, merges and
//! pre-tokenizer are unchanged.

use orcd_device::EngineError;
use orcd_model::gguf::{GgufFile, GgufWriter, MetaArray, MetaValue};

/// o200k_harmony's special tokens, in the order of their ids (199998, 199999, 200002, 200003,
/// 200005 to 200008, 200012).
pub const HARMONY_TOKENS: &[&str] = &[
    "<|startoftext|>",
    "<|endoftext|>",
    "<|return|>",
    "<|constrain|>",
    "<|channel|>",
    "<|start|>",
    "<|end|>",
    "<|message|>",
    "<|call|>",
];

/// GGUF's token type of a control token.
const CONTROL: i32 = 3;
/// GGUF's token type of a normal token.
const NORMAL: i32 = 1;

/// `vocab` with harmony's special tokens (those it lacks) and `template` as its chat template.
pub fn with_harmony(vocab: &GgufFile, template: &str) -> Result<GgufFile, EngineError> {
    let mut tokens: Vec<String> = vocab.get_str_array("tokenizer.ggml.tokens")?.to_vec();
    let n = tokens.len();
    let mut types: Vec<i32> = match vocab.get("tokenizer.ggml.token_type") {
        Some(MetaValue::Array(MetaArray::I32(t))) => t.clone(),
        None => vec![NORMAL; n],
        Some(_) => {
            return Err(EngineError::BadMetadata {
                key: "tokenizer.ggml.token_type".into(),
                problem: "not an array of i32".into(),
            });
        }
    };
    if types.len() != n {
        return Err(EngineError::BadMetadata {
            key: "tokenizer.ggml.token_type".into(),
            problem: format!("{} types for {n} tokens", types.len()),
        });
    }
    for t in HARMONY_TOKENS {
        match tokens.iter().position(|x| x == t) {
            Some(i) => types[i] = CONTROL,
            None => {
                tokens.push(t.to_string());
                types.push(CONTROL);
            }
        }
    }
    let id = |t: &str| tokens.iter().position(|x| x == t).map(|i| i as u32);
    let (bos, eos) = (id("<|startoftext|>"), id("<|return|>"));
    let mut w = GgufWriter::new();
    let mut add = |key: &str, value: MetaValue| w.add_metadata(key, value);
    for (key, value) in vocab.metadata() {
        match key.as_str() {
            "tokenizer.ggml.tokens"
            | "tokenizer.ggml.token_type"
            | "tokenizer.ggml.scores"
            | "tokenizer.ggml.bos_token_id"
            | "tokenizer.ggml.eos_token_id"
            | "tokenizer.chat_template" => {}
            _ => add(key, value.clone())?,
        }
    }
    add(
        "tokenizer.ggml.tokens",
        MetaValue::Array(MetaArray::Str(tokens.clone())),
    )?;
    add(
        "tokenizer.ggml.token_type",
        MetaValue::Array(MetaArray::I32(types)),
    )?;
    if let Some(MetaValue::Array(MetaArray::F32(scores))) = vocab.get("tokenizer.ggml.scores") {
        let mut scores = scores.clone();
        scores.resize(tokens.len(), 0.0);
        add(
            "tokenizer.ggml.scores",
            MetaValue::Array(MetaArray::F32(scores)),
        )?;
    }
    add(
        "tokenizer.ggml.bos_token_id",
        MetaValue::U32(bos.unwrap_or(0)),
    )?;
    add(
        "tokenizer.ggml.eos_token_id",
        MetaValue::U32(eos.unwrap_or(0)),
    )?;
    add("tokenizer.chat_template", MetaValue::Str(template.into()))?;
    GgufFile::from_bytes(w.to_bytes()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(tokens: &[&str]) -> GgufFile {
        let mut w = GgufWriter::new();
        w.add_metadata("tokenizer.ggml.model", MetaValue::Str("gpt2".into()))
            .unwrap();
        w.add_metadata(
            "tokenizer.ggml.tokens",
            MetaValue::Array(MetaArray::Str(
                tokens.iter().map(|s| s.to_string()).collect(),
            )),
        )
        .unwrap();
        w.add_metadata("tokenizer.ggml.eos_token_id", MetaValue::U32(1))
            .unwrap();
        GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap()
    }

    #[test]
    fn adds_the_missing_tokens_as_control_tokens_and_the_template() {
        let v = with_harmony(&vocab(&["a", "<|endoftext|>", "b"]), "{{ x }}").unwrap();
        let tokens = v.get_str_array("tokenizer.ggml.tokens").unwrap();
        assert_eq!(tokens.len(), 3 + HARMONY_TOKENS.len() - 1);
        assert_eq!(&tokens[..4], ["a", "<|endoftext|>", "b", "<|startoftext|>"]);
        assert_eq!(tokens.last().unwrap(), "<|call|>");
        let Some(MetaValue::Array(MetaArray::I32(types))) = v.get("tokenizer.ggml.token_type")
        else {
            panic!("token types");
        };
        assert_eq!(types[..4], [NORMAL, CONTROL, NORMAL, CONTROL]);
        assert!(types[3..].iter().all(|&t| t == CONTROL));
        let ret = tokens.iter().position(|t| t == "<|return|>").unwrap() as u32;
        assert_eq!(
            v.get_u32_opt("tokenizer.ggml.eos_token_id").unwrap(),
            Some(ret)
        );
        assert_eq!(
            v.get_u32_opt("tokenizer.ggml.bos_token_id").unwrap(),
            Some(3)
        );
        assert_eq!(
            v.get_str_opt("tokenizer.chat_template").unwrap(),
            Some("{{ x }}")
        );
        // A vocabulary that has them all keeps its size.
        let again = with_harmony(&v, "{{ y }}").unwrap();
        assert_eq!(
            again.get_str_array("tokenizer.ggml.tokens").unwrap().len(),
            tokens.len()
        );
    }
}
