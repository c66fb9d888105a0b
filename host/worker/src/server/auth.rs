//! Access control: with `--api-key` (or `ORCD_API_KEY`), every route but `GET /health` needs
//! `Authorization: Bearer KEY`; anything else gets 401 `UNAUTHORIZED` (in OpenAI's error shape
//! under `/v1/`). `GET /health` stays open for load balancers and orchestrator probes.
//!
//! The comparison is constant-time over SHA-256 digests (`subtle`), so neither the key's bytes
//! nor its length can be learned from response timing.

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::AppError;
use super::openai::OpenAiError;
use super::state::AppState;
use crate::error_code::ErrorCode;

/// The key clients must present; only its digest is kept.
#[derive(Clone)]
pub struct ApiKey {
    digest: [u8; 32],
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

impl ApiKey {
    /// The key as given on the command line or in the environment; none when empty.
    pub fn new(key: &str) -> Option<ApiKey> {
        (!key.is_empty()).then(|| ApiKey {
            digest: Sha256::digest(key.as_bytes()).into(),
        })
    }

    /// Whether `presented` is the key, in time independent of where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        digest[..].ct_eq(&self.digest[..]).into()
    }
}

/// The token of an `Authorization: Bearer TOKEN` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

/// Middleware: pass the request on when no key is set, for `GET /health`, or with the key.
pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(key) = &state.api_key else {
        return next.run(req).await;
    };
    let open = req.method() == Method::GET && req.uri().path() == "/health";
    if open || bearer(req.headers()).is_some_and(|t| key.matches(t)) {
        return next.run(req).await;
    }
    let err = AppError::new(
        ErrorCode::Unauthorized,
        "this worker needs `Authorization: Bearer <key>` (the key given by --api-key)",
    );
    let mut resp = if req.uri().path().starts_with("/v1/") {
        OpenAiError(err).into_response()
    } else {
        err.into_response()
    };
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_key_matches() {
        let key = ApiKey::new("s3cret").unwrap();
        assert!(key.matches(b"s3cret"));
        assert!(!key.matches(b"s3cre"));
        assert!(!key.matches(b"s3cret "));
        assert!(!key.matches(b""));
        assert!(ApiKey::new("").is_none());
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer(&h), Some(&b"abc"[..]));
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer  abc "));
        assert_eq!(bearer(&h), Some(&b"abc"[..]));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }
}
