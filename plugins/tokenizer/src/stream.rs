//! Streaming detokenization: pieces arrive one token at a time and may end inside a UTF-8
//! character (an emoji spread over byte tokens). [`StreamDecoder`] emits only whole characters
//! and holds the incomplete tail back until the next piece completes it, so streamed text never
//! shows U+FFFD for a split character. Bytes that can never become valid UTF-8 are replaced by
//! U+FFFD when they are seen.

use crate::error::TokenizerError;
use crate::tokenizer::Tokenizer;

/// Turns a stream of token ids into a stream of valid UTF-8 text.
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    /// Bytes of a character not yet complete (at most 3).
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// A decoder with nothing held back.
    pub fn new() -> Self {
        StreamDecoder::default()
    }

    /// Adds one token's piece (control tokens give nothing) and returns the text that is now
    /// complete.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String, TokenizerError> {
        let piece = tokenizer.token_to_piece(id, false)?;
        Ok(self.push_bytes(&piece))
    }

    /// Adds raw bytes and returns the text that is now complete.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
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
                    // SAFETY-free: `valid_up_to` bytes were just checked.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // An incomplete character at the end: hold it back.
                        None => {
                            rest = after;
                            break;
                        }
                        // Bytes that no continuation can fix.
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// Whether bytes are held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Ends the stream: bytes still held back (a character that never completed) come out as
    /// U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_characters_are_held_back() {
        let mut d = StreamDecoder::new();
        let llama = "🦙".as_bytes();
        assert_eq!(d.push_bytes(b"a"), "a");
        assert_eq!(d.push_bytes(&llama[..1]), "");
        assert_eq!(d.push_bytes(&llama[1..3]), "");
        assert!(d.has_pending());
        assert_eq!(d.push_bytes(&[llama[3], b'!']), "🦙!");
        assert_eq!(d.finish(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut d = StreamDecoder::new();
        assert_eq!(d.push_bytes(&[0xFF, b'x']), "\u{FFFD}x");
        assert_eq!(d.push_bytes(&[0xE6, 0x88]), "");
        assert_eq!(d.finish(), "\u{FFFD}");
    }
}
