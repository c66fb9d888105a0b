//! WordPiece (`tokenizer.ggml.model = bert`), llama.cpp's `llm_tokenizer_wpm_session`: the text
//! is normalised (lowercase, accents stripped through each character's first NFD code point)
//! and cut at whitespace, punctuation, ASCII symbols and CJK ideographs; each word, with `▁` in
//! front, is covered greedily by the longest tokens, and a word that cannot be covered becomes
//! the unknown token. Only BERT-style encoders use it (no decoder in llama.cpp's list does);
//! it is here so that llama.cpp's `bert-bge` suite runs, and the worker refuses such models'
//! architectures anyway.

use unicode_general_category::{GeneralCategory, get_general_category};
use unicode_normalization::UnicodeNormalization;

use crate::fast_map::FastMap;
use crate::unicode_class::{is_mark, is_punctuation, is_symbol, is_whitespace};

/// Appends the WordPiece ids of `text`. `max_token_len` is the longest token text in bytes.
pub fn encode(
    text: &str,
    token_id: &FastMap<Box<[u8]>, u32>,
    max_token_len: usize,
    unk: Option<u32>,
    out: &mut Vec<u32>,
) {
    for word in words(text) {
        let word = format!("\u{2581}{word}");
        let bytes = word.as_bytes();
        let n = bytes.len();
        let start_len = out.len();
        let mut i = 0;
        while i < n {
            let longest = (i + 1..=n.min(i + max_token_len + 1))
                .rev()
                .find_map(|j| token_id.get(&bytes[i..j]).map(|&id| (id, j)));
            match longest {
                Some((id, j)) => {
                    out.push(id);
                    i = j;
                }
                None => {
                    // One uncovered position discards the whole word.
                    out.truncate(start_len);
                    break;
                }
            }
        }
        if out.len() == start_len {
            out.extend(unk);
        }
    }
}

/// llama.cpp's `preprocess`: normalised words.
fn words(text: &str) -> Vec<String> {
    let mut words = vec![String::new()];
    for c in text.chars() {
        // `strip_accents`: the first code point of the character's NFD form.
        let c = c.nfd().next().unwrap_or(c);
        if is_whitespace(c) {
            if !words.last().is_some_and(String::is_empty) {
                words.push(String::new());
            }
            continue;
        }
        if c == '\0' || c == '\u{FFFD}' || is_control(c) || is_mark(c) {
            continue;
        }
        let lower = c.to_lowercase().next().unwrap_or(c);
        if is_punctuation(c) || (c < '\u{7F}' && is_symbol(c)) || is_chinese(c) {
            if !words.last().is_some_and(String::is_empty) {
                words.push(String::new());
            }
            words.last_mut().expect("never empty").push(lower);
            words.push(String::new());
        } else {
            words.last_mut().expect("never empty").push(lower);
        }
    }
    if words.last().is_some_and(String::is_empty) {
        words.pop();
    }
    words
}

/// `\p{C}` as llama.cpp's tables have it: Cc, Cf, Co, Cs.
fn is_control(c: char) -> bool {
    matches!(
        get_general_category(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::PrivateUse
            | GeneralCategory::Surrogate
    )
}

/// llama.cpp's `is_chinese_char` (with Hugging Face's 0x2B920 start of extension E).
fn is_chinese(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_normalised_and_cut_at_punctuation() {
        assert_eq!(
            words("Héllo, WORLD!  中文"),
            ["hello", ",", "world", "!", "中", "文"]
        );
    }

    #[test]
    fn longest_match_or_unknown() {
        let mut ids = FastMap::default();
        for (i, t) in ["▁un", "▁unbe", "liev", "able", "▁x"].iter().enumerate() {
            ids.insert(t.as_bytes().into(), i as u32);
        }
        let mut out = Vec::new();
        encode("unbelievable x zz", &ids, 6, Some(99), &mut out);
        assert_eq!(out, [1, 2, 3, 4, 99]);
    }
}
