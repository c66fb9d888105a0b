//! What can go wrong compiling or following a constraint, with stable codes.

/// A constraint failure; [`ConstraintError::code`] is what the host reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    /// The constraint kind is not one of `json-schema`, `json-object`, `regex`, `gbnf`.
    #[error("unknown constraint kind `{0}` (json-schema, json-object, regex and gbnf are known)")]
    UnknownKind(String),
    /// The schema text is not JSON, or not a valid schema.
    #[error("invalid schema: {0}")]
    InvalidSchema(String),
    /// The schema uses a keyword this plugin cannot enforce.
    #[error("{0}")]
    Unsupported(String),
    /// The regular expression does not parse or cannot become a DFA.
    #[error("invalid regular expression: {0}")]
    InvalidRegex(String),
    /// The GBNF grammar does not parse or uses what this plugin cannot enforce.
    #[error("invalid grammar: {0}")]
    InvalidGrammar(String),
    /// The constraint's automaton would be too large.
    #[error("constraint too large: {0}")]
    TooLarge(String),
    /// No output can satisfy the constraint.
    #[error("no output satisfies the constraint")]
    Unsatisfiable,
    /// `advance` got a token the mask did not allow.
    #[error("token {0} is not allowed here")]
    TokenNotAllowed(u32),
    /// The vocabulary could not be read.
    #[error("invalid vocabulary: {0}")]
    Vocab(String),
}

impl ConstraintError {
    /// The stable code in SCREAMING_SNAKE_CASE.
    pub fn code(&self) -> &'static str {
        match self {
            ConstraintError::UnknownKind(_) => "UNKNOWN_KIND",
            ConstraintError::InvalidSchema(_) => "INVALID_SCHEMA",
            ConstraintError::Unsupported(_) => "UNSUPPORTED",
            ConstraintError::InvalidRegex(_) => "INVALID_REGEX",
            ConstraintError::InvalidGrammar(_) => "INVALID_GRAMMAR",
            ConstraintError::TooLarge(_) => "TOO_LARGE",
            ConstraintError::Unsatisfiable => "UNSATISFIABLE",
            ConstraintError::TokenNotAllowed(_) => "TOKEN_NOT_ALLOWED",
            ConstraintError::Vocab(_) => "INVALID_VOCAB",
        }
    }
}
