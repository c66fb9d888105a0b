//! The one job-id rule of every endpoint (`/execute`, `/cancel`, the ids the OpenAI routes
//! make): 1 to 256 bytes, no control characters. The request-handler plugin checks the same
//! rule when it parses `/execute`; the host checks again because a handler plugin is not
//! trusted, and because `/cancel` never reaches the plugin. An id that passes can be logged and
//! echoed in events without forging log lines or terminal sequences.

use super::error::AppError;

/// Longest job id in bytes (the request-handler plugin's `MAX_JOB_ID_BYTES`).
pub const MAX_JOB_ID_BYTES: usize = 256;

/// `Ok` when `id` is a valid job id; else `INVALID_REQUEST` naming `job_id`.
pub fn validate_job_id(id: &str) -> Result<(), AppError> {
    if id.is_empty() || id.len() > MAX_JOB_ID_BYTES {
        return Err(AppError::invalid(
            "job_id",
            format!("must be 1 to {MAX_JOB_ID_BYTES} bytes long"),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "job_id",
            "must not contain control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_with_control_characters_or_out_of_range_lengths_are_refused() {
        assert!(validate_job_id("job-1").is_ok());
        assert!(validate_job_id(&"x".repeat(MAX_JOB_ID_BYTES)).is_ok());
        for bad in [
            String::new(),
            "x".repeat(MAX_JOB_ID_BYTES + 1),
            "a\nb".into(),
            "a\x1b[31mb".into(),
            "a\rb".into(),
            "a\u{85}b".into(),
            "a\u{7f}b".into(),
        ] {
            let e = validate_job_id(&bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("job_id"), "{bad:?}");
        }
    }
}
