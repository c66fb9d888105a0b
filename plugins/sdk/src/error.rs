//! The error a guest sampler returns to the host (an expected failure, not a trap).

use std::fmt;

/// Why a sampler could not pick a token.
#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    /// Every logit is NaN or -inf: there is no token to choose.
    NoValidLogits,
    /// A sampling parameter is out of range; `name` is the parameter.
    InvalidParam { name: &'static str, message: String },
    /// A host operation on the logits failed.
    Host(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoValidLogits => write!(f, "no valid logits: every logit is NaN or -inf"),
            Error::InvalidParam { name, message } => write!(f, "{name}: {message}"),
            Error::Host(m) => write!(f, "host logits operation failed: {m}"),
        }
    }
}

impl std::error::Error for Error {}
