//! `logprobs` of the OpenAI routes, rendered from the scheduler's [`TokenLogprob`]s (the raw
//! model's log-softmax, see `scheduler::logprobs`): chat's
//! `{"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}]}`
//! and the legacy completions' `{"tokens", "token_logprobs", "top_logprobs", "text_offset"}`.
//! A token's text is its piece from the tokenizer plugin, lossy where the piece holds part of
//! a UTF-8 character (`bytes` has the exact bytes, as OpenAI's does).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::error::AppError;
use crate::job::TokenLogprob;
use crate::plugins::Tokenizer;

/// The floor of a reported log-probability: JSON has no -inf (vLLM reports the same floor).
const LOGPROB_FLOOR: f32 = -9999.0;

/// Token pieces, looked up once per response.
pub(super) struct Pieces {
    tokenizer: Arc<dyn Tokenizer>,
    cache: HashMap<u32, Vec<u8>>,
}

impl Pieces {
    pub fn new(tokenizer: Arc<dyn Tokenizer>) -> Pieces {
        Pieces {
            tokenizer,
            cache: HashMap::new(),
        }
    }

    fn bytes(&mut self, id: u32) -> Result<&[u8], AppError> {
        if !self.cache.contains_key(&id) {
            let piece = self.tokenizer.piece(id)?;
            self.cache.insert(id, piece);
        }
        Ok(&self.cache[&id])
    }

    fn text(&mut self, id: u32) -> Result<String, AppError> {
        Ok(String::from_utf8_lossy(self.bytes(id)?).into_owned())
    }
}

fn number(lp: f32) -> f32 {
    if lp.is_nan() {
        LOGPROB_FLOOR
    } else {
        lp.max(LOGPROB_FLOOR)
    }
}

/// Chat's `logprobs.content` entries for `lps`.
pub(super) fn chat_content(
    pieces: &mut Pieces,
    lps: &[TokenLogprob],
) -> Result<Vec<Value>, AppError> {
    let mut one = |id: u32, lp: f32| -> Result<Map<String, Value>, AppError> {
        let mut m = Map::new();
        m.insert("token".into(), json!(pieces.text(id)?));
        m.insert("logprob".into(), json!(number(lp)));
        m.insert("bytes".into(), json!(pieces.bytes(id)?));
        Ok(m)
    };
    lps.iter()
        .map(|e| {
            let mut m = one(e.id, e.logprob)?;
            let top = e
                .top
                .iter()
                .map(|&(id, lp)| one(id, lp).map(Value::Object))
                .collect::<Result<Vec<_>, _>>()?;
            m.insert("top_logprobs".into(), Value::Array(top));
            Ok(Value::Object(m))
        })
        .collect()
}

/// The legacy completions' `logprobs` object, built up as events arrive.
#[derive(Default)]
pub(super) struct LegacyLogprobs {
    tokens: Vec<Value>,
    token_logprobs: Vec<Value>,
    top_logprobs: Vec<Value>,
    text_offset: Vec<Value>,
}

impl LegacyLogprobs {
    /// Add `lps`; `text` is the choice's text so far (this event's included): offsets are
    /// counted in characters of it.
    pub fn push(
        &mut self,
        pieces: &mut Pieces,
        lps: &[TokenLogprob],
        text: &str,
    ) -> Result<(), AppError> {
        for e in lps {
            self.tokens.push(json!(pieces.text(e.id)?));
            self.token_logprobs.push(json!(number(e.logprob)));
            let mut top = Map::new();
            for &(id, lp) in &e.top {
                top.entry(pieces.text(id)?).or_insert(json!(number(lp)));
            }
            self.top_logprobs.push(Value::Object(top));
            let offset = text
                .get(..e.offset as usize)
                .map_or(text.chars().count(), |t| t.chars().count());
            self.text_offset.push(json!(offset));
        }
        Ok(())
    }

    /// The object, leaving this one empty (for the next streamed chunk).
    pub fn take(&mut self) -> Value {
        let me = std::mem::take(self);
        json!({
            "tokens": me.tokens,
            "token_logprobs": me.token_logprobs,
            "top_logprobs": me.top_logprobs,
            "text_offset": me.text_offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_probabilities_are_json_numbers() {
        assert_eq!(number(f32::NEG_INFINITY), LOGPROB_FLOOR);
        assert_eq!(number(f32::NAN), LOGPROB_FLOOR);
        assert_eq!(number(-0.5), -0.5);
    }
}
