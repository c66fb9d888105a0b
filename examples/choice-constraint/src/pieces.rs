//! The bytes a token stands for, from its text as the GGUF file stores it (what the `vocab`
//! import gives): GPT-2 byte-level BPE maps every byte to a printable character, SentencePiece
//! writes a space as `▁` and has byte tokens `<0xAB>`. Control, unknown and unused tokens
//! stand for no text (never allowed).

/// Token types as the `vocab` import numbers them (llama.cpp's).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Type {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
    Undefined,
}

/// The bytes of one token of a `gpt2` (byte-level) or `llama` (SentencePiece) vocabulary.
pub fn piece(model: &str, text: &[u8], ty: Type) -> Vec<u8> {
    match ty {
        Type::Control | Type::Unknown | Type::Unused => Vec::new(),
        // User-defined tokens are matched as written.
        Type::UserDefined => text.to_vec(),
        Type::Byte => byte_token(text).map(|b| vec![b]).unwrap_or_default(),
        Type::Normal | Type::Undefined => {
            let Ok(text) = std::str::from_utf8(text) else {
                return Vec::new();
            };
            match model {
                "gpt2" => text
                    .chars()
                    .map(unicode_to_byte)
                    .collect::<Option<Vec<u8>>>()
                    .unwrap_or_default(),
                _ => text.replace('\u{2581}', " ").into_bytes(),
            }
        }
    }
}

/// `<0xAB>` as the byte 0xAB.
fn byte_token(text: &[u8]) -> Option<u8> {
    let hex = std::str::from_utf8(text)
        .ok()?
        .strip_prefix("<0x")?
        .strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

/// GPT-2's byte-to-character table read backwards: the printable bytes `!`..=`~`, `¡`..=`¬`
/// and `®`..=`ÿ` stand for themselves; the others, in order, are U+0100 onwards.
fn unicode_to_byte(c: char) -> Option<u8> {
    let printable = |b: u32| {
        (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    let c = c as u32;
    if printable(c) {
        return Some(c as u8);
    }
    let n = c.checked_sub(0x100)?;
    (0u32..256)
        .filter(|&b| !printable(b))
        .nth(n as usize)
        .map(|b| b as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_and_sentencepiece() {
        assert_eq!(piece("gpt2", "Ġyes".as_bytes(), Type::Normal), b" yes");
        assert_eq!(piece("gpt2", "Ċ".as_bytes(), Type::Normal), b"\n");
        assert_eq!(piece("llama", "▁no".as_bytes(), Type::Normal), b" no");
        assert_eq!(piece("llama", b"<0x0A>", Type::Byte), b"\n");
        assert!(piece("gpt2", b"<|im_end|>", Type::Control).is_empty());
    }
}
