//! GPT-2's byte-to-unicode mapping: byte-level BPE vocabularies store every byte as a printable
//! character (`' '` is `Ġ`, `'\n'` is `Ċ`), so that token texts are valid UTF-8 strings.
//!
//! The printable bytes `!`..=`~`, `¡`..=`¬` and `®`..=`ÿ` map to the code point of the same
//! value; the remaining 68 bytes map, in increasing order, to U+0100, U+0101, ...

/// The character that stands for `byte` in byte-level BPE token texts.
pub fn byte_to_char(byte: u8) -> char {
    BYTE_TO_CHAR[byte as usize]
}

/// The byte a byte-level BPE character stands for, or `None` for characters outside the map.
pub fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if is_printable_byte(cp) {
        return Some(cp as u8);
    }
    // U+0100 + n is the n-th non-printable byte.
    let n = cp.checked_sub(0x100)? as usize;
    NON_PRINTABLE.get(n).copied()
}

/// Appends the byte-level encoding of `text` (each UTF-8 byte as its character) to `out`.
pub fn encode_into(text: &str, out: &mut String) {
    out.reserve(text.len() * 2);
    for &b in text.as_bytes() {
        out.push(byte_to_char(b));
    }
}

fn is_printable_byte(cp: u32) -> bool {
    (0x21..=0x7E).contains(&cp) || (0xA1..=0xAC).contains(&cp) || (0xAE..=0xFF).contains(&cp)
}

/// The 68 bytes without a printable character of their own, in increasing order.
const NON_PRINTABLE: [u8; 68] = {
    let mut out = [0u8; 68];
    let mut n = 0;
    let mut b = 0u32;
    while b < 256 {
        let printable =
            (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        if !printable {
            out[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    out
};

/// `BYTE_TO_CHAR[b]` is the character for byte `b`.
const BYTE_TO_CHAR: [char; 256] = {
    let mut out = ['\0'; 256];
    let mut b = 0u32;
    while b < 256 {
        let printable =
            (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        if printable {
            out[b as usize] = match char::from_u32(b) {
                Some(c) => c,
                None => '\0',
            };
        }
        b += 1;
    }
    let mut n = 0;
    while n < 68 {
        out[NON_PRINTABLE[n] as usize] = match char::from_u32(0x100 + n as u32) {
            Some(c) => c,
            None => '\0',
        };
        n += 1;
    }
    out
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_characters() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
        assert_eq!(byte_to_char(0xAD), 'Ń');
    }

    #[test]
    fn mapping_is_a_bijection() {
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(char_to_byte('▁'), None);
        assert_eq!(char_to_byte('\u{144}'), None);
    }
}
