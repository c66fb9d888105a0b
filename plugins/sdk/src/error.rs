//! The error a guest sampler returns to the host (an expected failure, not a trap).

use std::fmt;

/// Why a sampler could not pick a token.
#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    /// Every logit is NaN or -inf: there is no token to choose.
    NoValidLogits,
    /// A sampling parameter is out of range; `name` is the parameter (a standard field such as
    /// `top_p`, or one of the sampler's own `sampler_params` names such as `tau`).
    InvalidParam { name: &'static str, message: String },
    /// The request gave a `sampler_params` name this sampler does not read.
    UnknownParam {
        name: String,
        known: &'static [&'static str],
    },
    /// A host operation on the logits failed.
    Host(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoValidLogits => write!(f, "no valid logits: every logit is NaN or -inf"),
            Error::InvalidParam { name, message } => write!(f, "{name}: {message}"),
            Error::UnknownParam { name, known } => {
                write!(f, "{name}: not a parameter of this sampler")?;
                match known {
                    [] => write!(f, " (it takes none)"),
                    known => write!(f, " (it takes {})", known.join(", ")),
                }
            }
            Error::Host(m) => write!(f, "host logits operation failed: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// The standard request fields a sampler may refuse under their own name; every other
/// parameter name is one of the sampler's `sampler_params`.
const STANDARD_FIELDS: &[&str] = &[
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repetition_penalty",
    "frequency_penalty",
    "presence_penalty",
    "penalty_window",
    "seed",
];

impl Error {
    /// The request field this error refuses and why, as `validate` reports it: a standard
    /// field by its name, a sampler's own parameter as `sampler_params.<name>`. `None` for
    /// errors that are not about a parameter.
    pub fn field(&self) -> Option<(String, String)> {
        let field = |name: &str| {
            if STANDARD_FIELDS.contains(&name) {
                name.to_string()
            } else {
                format!("sampler_params.{name}")
            }
        };
        match self {
            Error::InvalidParam { name, message } => Some((field(name), message.clone())),
            Error::UnknownParam { name, known } => {
                let message = match known {
                    [] => "not a parameter of this sampler (it takes none)".to_string(),
                    known => format!(
                        "not a parameter of this sampler (it takes {})",
                        known.join(", ")
                    ),
                };
                Some((field(name), message))
            }
            Error::NoValidLogits | Error::Host(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_named_as_the_client_wrote_them() {
        let e = Error::InvalidParam {
            name: "top_p",
            message: "must be in 0..=1".into(),
        };
        assert_eq!(e.field(), Some(("top_p".into(), "must be in 0..=1".into())));
        let e = Error::InvalidParam {
            name: "tau",
            message: "must be positive".into(),
        };
        assert_eq!(e.field().unwrap().0, "sampler_params.tau");
        let e = Error::UnknownParam {
            name: "taux".into(),
            known: &["tau", "eta"],
        };
        let (field, message) = e.field().unwrap();
        assert_eq!(field, "sampler_params.taux");
        assert!(message.contains("tau, eta"), "{message}");
        assert_eq!(Error::NoValidLogits.field(), None);
    }
}
