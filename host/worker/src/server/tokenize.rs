//! `POST /tokenize` and `POST /detokenize`, as llama-server has them, through the tokenizer
//! plugin: `{"content", "add_special", "parse_special", "with_pieces"}` -> `{"tokens": [...]}`
//! and `{"tokens": [...]}` -> `{"content": "..."}`. Inputs are bounded (the prompt limit for
//! text, [`MAX_DETOKENIZE_IDS`] ids, every id inside the vocabulary); a field out of shape is a
//! 400 naming it.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde_json::{Map, Value, json};

use super::error::AppError;
use super::state::AppState;
use crate::error_code::ErrorCode;

/// Most ids one `/detokenize` call takes.
pub const MAX_DETOKENIZE_IDS: usize = 1 << 16;

fn object(body: Result<Json<Value>, JsonRejection>) -> Result<Map<String, Value>, AppError> {
    let Json(value) = body.map_err(|e| AppError::invalid("body", e.body_text()))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(AppError::invalid("body", "must be a JSON object")),
    }
}

/// Refuse a key outside `known`.
fn only(map: &Map<String, Value>, known: &[&str]) -> Result<(), AppError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => {
            let shown: String = k.chars().take(64).collect();
            Err(AppError::invalid(&shown, "unknown field"))
        }
        None => Ok(()),
    }
}

fn flag(map: &Map<String, Value>, field: &str, default: bool) -> Result<bool, AppError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(AppError::invalid(field, "must be a boolean")),
    }
}

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, AppError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AppError::new(ErrorCode::Internal, format!("tokenizer task failed: {e}")))
}

/// A piece as llama-server shows it: the text when it is whole UTF-8, else its bytes.
fn piece_json(bytes: Vec<u8>) -> Value {
    match String::from_utf8(bytes) {
        Ok(s) => json!(s),
        Err(e) => json!(e.into_bytes()),
    }
}

/// `POST /tokenize`: `add_special` (default false) adds BOS where the vocabulary has one;
/// `parse_special` (default true) turns special-token text into its token; `with_pieces`
/// (default false) answers `{"id", "piece"}` objects instead of ids.
pub async fn tokenize(
    State(state): State<AppState>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, AppError> {
    let map = object(body)?;
    only(
        &map,
        &["content", "add_special", "parse_special", "with_pieces"],
    )?;
    let content = match map.get("content") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(AppError::invalid("content", "a string is required")),
    };
    if content.chars().count() > state.limits.request.max_prompt_chars {
        return Err(AppError::invalid(
            "content",
            format!(
                "longer than {} characters",
                state.limits.request.max_prompt_chars
            ),
        ));
    }
    let add_special = flag(&map, "add_special", false)?;
    let parse_special = flag(&map, "parse_special", true)?;
    let with_pieces = flag(&map, "with_pieces", false)?;
    let tokenizer = state.plugins.tokenizer.clone();
    let tokens = blocking(move || -> Result<Value, AppError> {
        let ids = tokenizer.encode_with(&content, parse_special, add_special)?;
        if !with_pieces {
            return Ok(json!(ids));
        }
        let pieces = ids
            .iter()
            .map(|&id| Ok(json!({"id": id, "piece": piece_json(tokenizer.piece(id)?)})))
            .collect::<Result<Vec<Value>, AppError>>()?;
        Ok(Value::Array(pieces))
    })
    .await??;
    Ok(Json(json!({ "tokens": tokens })))
}

/// `POST /detokenize`: the text of token ids, special tokens written out; bytes that are not
/// UTF-8 become U+FFFD, as llama-server's do.
pub async fn detokenize(
    State(state): State<AppState>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, AppError> {
    let map = object(body)?;
    only(&map, &["tokens"])?;
    let Some(list) = map.get("tokens").and_then(Value::as_array) else {
        return Err(AppError::invalid(
            "tokens",
            "an array of token ids is required",
        ));
    };
    if list.len() > MAX_DETOKENIZE_IDS {
        return Err(AppError::invalid(
            "tokens",
            format!("at most {MAX_DETOKENIZE_IDS} ids, got {}", list.len()),
        ));
    }
    let vocab = state.model.vocab_size;
    let ids = list
        .iter()
        .map(|v| match v.as_u64() {
            Some(id) if (id as usize) < vocab => Ok(id as u32),
            _ => Err(AppError::invalid(
                "tokens",
                format!("{v} is not a token id of this model (0..{vocab})"),
            )),
        })
        .collect::<Result<Vec<u32>, AppError>>()?;
    let tokenizer = state.plugins.tokenizer.clone();
    let bytes = blocking(move || tokenizer.decode(&ids)).await??;
    Ok(Json(json!({ "content": String::from_utf8_lossy(&bytes) })))
}
