//! Token bytes to text for streaming: pieces are concatenated and only complete UTF-8 characters
//! come out; the bytes of a character split across tokens wait for the rest. Bytes that can
//! never become a character (invalid UTF-8) are dropped, never replaced with U+FFFD.

/// Accumulates token bytes; see the module docs.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    /// Bytes received and not yet emitted: at most an incomplete character (< 4 bytes) between
    /// calls.
    pending: Vec<u8>,
    /// Invalid bytes dropped so far.
    dropped: usize,
}

impl Utf8Stream {
    /// Append `bytes`; return the text that is now complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // `valid_up_to` bytes are valid UTF-8 by definition.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // Incomplete character at the end: keep it for the next piece.
                        None => {
                            rest = after;
                            break;
                        }
                        Some(n) => {
                            self.dropped += n;
                            rest = &after[n..];
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// Invalid bytes dropped so far.
    pub fn dropped(&self) -> usize {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_characters_wait_for_their_last_byte() {
        let mut s = Utf8Stream::default();
        let bytes = "a日😀".as_bytes();
        let mut out = String::new();
        let mut pieces = Vec::new();
        for b in bytes {
            let p = s.push(&[*b]);
            pieces.push(p.clone());
            out.push_str(&p);
        }
        assert_eq!(out, "a日😀");
        assert_eq!(pieces.iter().filter(|p| !p.is_empty()).count(), 3);
        assert!(!out.contains('\u{FFFD}'));
    }

    #[test]
    fn invalid_bytes_are_dropped_not_replaced() {
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(b"ok\xffgo"), "okgo");
        assert_eq!(s.push(b"\xe6\x97"), "");
        assert_eq!(s.push(b"\xa5!"), "日!");
        assert_eq!(s.push(b"\xe6x"), "x");
        assert_eq!(s.dropped(), 2);
    }
}
