//! The `/execute` body corpora (`data/execute_invalid.json`, `data/execute_valid.json`,
//! written by `data/gen_execute_corpus.py`): bodies a request handler must refuse, each with the
//! field its error must name, and bodies it must accept, with values the job must carry. The
//! HTTP server's tests read the same files.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::KitError;

/// The invalid corpus, embedded so the kit runs from anywhere.
pub const INVALID_JSON: &str = include_str!("../data/execute_invalid.json");
/// The valid corpus.
pub const VALID_JSON: &str = include_str!("../data/execute_valid.json");

/// The worker limits the verdicts assume.
#[derive(Clone, Debug, Deserialize)]
pub struct CorpusLimits {
    pub max_prompt_chars: u32,
    pub max_tokens_cap: u32,
    pub vocab_size: u32,
    pub context_length: u32,
    pub samplers: Vec<String>,
}

/// A body that must be refused.
#[derive(Clone, Debug, Deserialize)]
pub struct InvalidCase {
    pub name: String,
    /// The field the `INVALID_REQUEST` error must name.
    pub field: String,
    pub content_type: String,
    pub body: String,
}

/// A body that must be accepted.
#[derive(Clone, Debug, Deserialize)]
pub struct ValidCase {
    pub name: String,
    pub content_type: String,
    pub body: String,
    /// Job values to check, by `/execute` field name (`null` seed = absent).
    pub expect: Map<String, Value>,
}

#[derive(Deserialize)]
struct File<T> {
    limits: CorpusLimits,
    cases: Vec<T>,
}

/// The refused bodies and their limits.
pub fn invalid_cases() -> Result<(CorpusLimits, Vec<InvalidCase>), KitError> {
    parse(INVALID_JSON, "data/execute_invalid.json")
}

/// The accepted bodies and their limits.
pub fn valid_cases() -> Result<(CorpusLimits, Vec<ValidCase>), KitError> {
    parse(VALID_JSON, "data/execute_valid.json")
}

fn parse<T: for<'de> Deserialize<'de>>(
    text: &str,
    path: &str,
) -> Result<(CorpusLimits, Vec<T>), KitError> {
    let f: File<T> = serde_json::from_str(text).map_err(|e| KitError::BadData {
        path: path.into(),
        problem: e.to_string(),
    })?;
    Ok((f.limits, f.cases))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpora_parse_and_are_large_enough() {
        let (limits, invalid) = invalid_cases().unwrap();
        assert!(invalid.len() >= 40);
        assert_eq!(limits.samplers[0], "standard");
        let (_, valid) = valid_cases().unwrap();
        assert!(valid.len() >= 10);
    }
}
