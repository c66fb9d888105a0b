//! A pre-tokenizer regex run the way llama.cpp runs the ones it has no hand-written splitter
//! for (`unicode_regex_split` with `std::regex`, ECMAScript syntax):
//!
//! - A regex that names Unicode categories (`\p{L}`, `\p{N}`, `\p{P}`, `\p{M}`, `\p{S}`,
//!   `\p{Lu}` ...) runs on a *collapsed* text: ASCII stays, non-ASCII whitespace becomes
//!   U+000B, every other character becomes one stand-in per category, and `\p{X}` becomes
//!   "the stand-in or the ASCII members of X". So `\p{Lu}` matches any letter, and `[^a-z]`
//!   any non-ASCII letter, exactly as in llama.cpp. Such a regex must be ASCII otherwise.
//! - Any other regex runs on the text itself, non-ASCII whitespace again U+000B.
//!
//! The translation to the Rust engine (`fancy-regex`, for the look-aheads) writes every literal
//! of a bracket class as `\x{..}` (ECMAScript reads `[`, `&&`, `--` inside a class literally),
//! `\d` as ASCII digits (ECMAScript's), and refuses what it does not translate.

use fancy_regex::{Regex, RegexBuilder};

use crate::error::TokenizerError;
use crate::split_custom::Piece;
use crate::unicode_class::{
    is_letter, is_mark, is_number, is_punctuation, is_symbol, is_whitespace,
};

/// Stand-ins of the collapsed text: private-use code points, so that Rust's `\s`, `\w`, `\d`
/// never match them (llama.cpp's bytes 0xD0..0xD5 play the same part in `std::regex`).
const OTHER: char = '\u{E0D0}';
const NUMBER: char = '\u{E0D1}';
const LETTER: char = '\u{E0D2}';
const PUNCTUATION: char = '\u{E0D3}';
const MARK: char = '\u{E0D4}';
const SYMBOL: char = '\u{E0D5}';

/// Backtracking steps a match may take before the stage reports an error (fancy-regex's
/// default is 1e6; pre-tokenizer regexes on long words need more, never unboundedly).
const BACKTRACK_LIMIT: usize = 50_000_000;

/// The text a stage's regex runs on, one character per character of the original.
#[derive(Debug)]
pub struct Transformed {
    text: String,
    /// Byte offset of each character in `text`, plus the end.
    byte_at: Vec<usize>,
}

impl Transformed {
    fn new(chars: impl Iterator<Item = char>) -> Transformed {
        let mut text = String::new();
        let mut byte_at = Vec::new();
        for c in chars {
            byte_at.push(text.len());
            text.push(c);
        }
        byte_at.push(text.len());
        Transformed { text, byte_at }
    }

    /// The collapsed text of regexes with Unicode categories.
    pub fn collapsed(chars: &[char]) -> Transformed {
        Transformed::new(chars.iter().map(|&c| match c {
            c if c.is_ascii() => c,
            c if is_whitespace(c) => '\u{0B}',
            c if is_number(c) => NUMBER,
            c if is_letter(c) => LETTER,
            c if is_punctuation(c) => PUNCTUATION,
            c if is_mark(c) => MARK,
            c if is_symbol(c) => SYMBOL,
            _ => OTHER,
        }))
    }

    /// The text of regexes without categories: non-ASCII whitespace as U+000B.
    pub fn wide(chars: &[char]) -> Transformed {
        Transformed::new(chars.iter().map(|&c| {
            if !c.is_ascii() && is_whitespace(c) {
                '\u{0B}'
            } else {
                c
            }
        }))
    }

    /// The character index of a byte offset in `text` (always a character boundary).
    fn char_at(&self, byte: usize) -> usize {
        self.byte_at
            .binary_search(&byte)
            .expect("regex matches end on character boundaries")
    }
}

/// One regex stage.
#[derive(Debug)]
pub struct RegexStage {
    source: &'static str,
    regex: Regex,
    collapsed: bool,
}

impl RegexStage {
    /// Translates and compiles one of llama.cpp's regex texts.
    pub fn new(source: &'static str) -> Result<RegexStage, TokenizerError> {
        let bad = |why: String| TokenizerError::UnsupportedRegex {
            regex: source.to_string(),
            why,
        };
        let (pattern, collapsed) = translate(source).map_err(bad)?;
        let regex = RegexBuilder::new(&pattern)
            .backtrack_limit(BACKTRACK_LIMIT)
            .build()
            .map_err(|e| bad(format!("{e} (translated: {pattern})")))?;
        Ok(RegexStage {
            source,
            regex,
            collapsed,
        })
    }

    /// Whether this stage runs on the collapsed text.
    pub fn collapsed(&self) -> bool {
        self.collapsed
    }

    /// Cuts `piece` at the matches (`std::regex_iterator` over the piece alone): each match
    /// and each gap between matches is a piece; an empty match cuts without a piece.
    pub fn split(
        &self,
        text: &Transformed,
        (start, end): Piece,
        out: &mut Vec<Piece>,
    ) -> Result<(), TokenizerError> {
        let base = text.byte_at[start];
        let hay = &text.text[base..text.byte_at[end]];
        let mut gap = start;
        for m in self.regex.find_iter(hay) {
            let m = m.map_err(|e| TokenizerError::PreTokenizeFailed {
                regex: self.source.to_string(),
                why: e.to_string(),
            })?;
            let (s, e) = (text.char_at(base + m.start()), text.char_at(base + m.end()));
            if s > gap {
                out.push((gap, s));
            }
            if e > s {
                out.push((s, e));
            }
            gap = e;
        }
        if gap < end {
            out.push((gap, end));
        }
        Ok(())
    }
}

/// The ASCII members of a collapsed category, as `(first, last)` ranges (llama.cpp's
/// `k_ucat_map`).
fn ascii_members(stand_in: char) -> &'static [(u8, u8)] {
    match stand_in {
        NUMBER => &[(b'0', b'9')],
        LETTER => &[(b'A', b'Z'), (b'a', b'z')],
        PUNCTUATION => &[
            (0x21, 0x23),
            (0x25, 0x2A),
            (0x2C, 0x2F),
            (0x3A, 0x3B),
            (0x3F, 0x40),
            (0x5B, 0x5D),
            (0x5F, 0x5F),
            (0x7B, 0x7B),
            (0x7D, 0x7D),
        ],
        SYMBOL => &[
            (0x24, 0x24),
            (0x2B, 0x2B),
            (0x3C, 0x3E),
            (0x5E, 0x5E),
            (0x60, 0x60),
            (0x7C, 0x7C),
            (0x7E, 0x7E),
        ],
        _ => &[],
    }
}

/// The stand-in of a `\p{..}` name llama.cpp collapses (`k_ucat_enum`).
fn category(name: &str) -> Option<char> {
    Some(match name {
        "N" => NUMBER,
        "L" | "Lu" | "Ll" | "Lt" | "Lm" | "Lo" => LETTER,
        "P" => PUNCTUATION,
        "M" => MARK,
        "S" => SYMBOL,
        _ => return None,
    })
}

fn hex(c: char) -> String {
    format!("\\x{{{:X}}}", c as u32)
}

/// Class contents (no brackets) for a collapsed category.
fn category_class(stand_in: char) -> String {
    let mut s = hex(stand_in);
    for &(a, b) in ascii_members(stand_in) {
        s += &hex(a as char);
        if b != a {
            s.push('-');
            s += &hex(b as char);
        }
    }
    s
}

/// llama.cpp's regex text to the Rust engine's, and whether it runs on the collapsed text.
fn translate(src: &str) -> Result<(String, bool), String> {
    let collapsed = ["N", "L", "P", "M", "S", "Lu", "Ll", "Lt", "Lm", "Lo"]
        .iter()
        .any(|n| src.contains(&format!("\\p{{{n}}}")));
    if collapsed && !src.is_ascii() {
        return Err("Unicode categories together with non-ASCII characters".into());
    }
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    // Inside a bracket class: whether the last item was a single character (a range may
    // follow it).
    let mut in_class = false;
    let mut prev_single = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            let Some(&e) = chars.get(i + 1) else {
                return Err("trailing backslash".into());
            };
            i += 2;
            if e == 'p' {
                let close = chars[i..]
                    .iter()
                    .position(|&c| c == '}')
                    .filter(|_| chars.get(i) == Some(&'{'))
                    .ok_or("`\\p` without `{name}`")?;
                let name: String = chars[i + 1..i + close].iter().collect();
                i += close + 1;
                let stand_in = category(&name)
                    .filter(|_| collapsed)
                    .ok_or_else(|| format!("`\\p{{{name}}}` has no meaning in std::regex"))?;
                if in_class {
                    out += &category_class(stand_in);
                } else {
                    out += &format!("[{}]", category_class(stand_in));
                }
                prev_single = false;
                continue;
            }
            let item = match e {
                'd' if in_class => "0-9".to_string(),
                'd' => "[0-9]".to_string(),
                'D' if !in_class => "[^0-9]".to_string(),
                's' | 'S' | 'r' | 'n' | 't' | 'f' | 'v' => format!("\\{e}"),
                c if c.is_ascii_alphanumeric() => {
                    return Err(format!("escape `\\{c}` is not translated"));
                }
                c => hex(c),
            };
            // `\r`, `\n`, ... and escaped characters are single characters.
            prev_single = in_class && !matches!(e, 'd' | 's' | 'S');
            out += &item;
            continue;
        }
        i += 1;
        if !in_class {
            if c == '[' {
                in_class = true;
                prev_single = false;
                out.push('[');
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
            } else {
                out.push(c);
            }
            continue;
        }
        match c {
            // ECMAScript: `]` always ends the class (`[]` is the empty class).
            ']' => {
                in_class = false;
                out.push(']');
            }
            '-' if prev_single && chars.get(i).is_some_and(|&n| n != ']') => {
                // A range: the next item is its end and cannot start another range.
                out.push('-');
                let (end, used) = match chars[i] {
                    '\\' => {
                        let e = *chars.get(i + 1).ok_or("trailing backslash")?;
                        let end = match e {
                            'r' | 'n' | 't' | 'f' | 'v' => format!("\\{e}"),
                            c if c.is_ascii_alphanumeric() => {
                                return Err(format!("range end `\\{c}` is not translated"));
                            }
                            c => hex(c),
                        };
                        (end, 2)
                    }
                    n => (hex(n), 1),
                };
                out += &end;
                i += used;
                prev_single = false;
            }
            c => {
                out += &hex(c);
                prev_single = true;
            }
        }
    }
    if in_class {
        return Err("unterminated bracket class".into());
    }
    Ok((out, collapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(regex: &'static str, text: &str) -> Vec<String> {
        let stage = RegexStage::new(regex).unwrap();
        let chars: Vec<char> = text.chars().collect();
        let view = if stage.collapsed() {
            Transformed::collapsed(&chars)
        } else {
            Transformed::wide(&chars)
        };
        let mut out = Vec::new();
        stage.split(&view, (0, chars.len()), &mut out).unwrap();
        out.iter()
            .map(|&(s, e)| chars[s..e].iter().collect())
            .collect()
    }

    #[test]
    fn categories_match_through_the_collapsed_text() {
        assert_eq!(split("\\s?\\p{L}+", "a béc 1"), ["a", " béc", " 1"]);
        assert_eq!(split("\\p{N}", "x½7"), ["x", "½", "7"]);
        // `[^a-z]` takes every non-ASCII letter, upper or lower case, as llama.cpp does.
        assert_eq!(
            split("[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+", "aÉé"),
            ["a", "Éé"]
        );
    }

    #[test]
    fn literal_classes_and_empty_matches() {
        assert_eq!(
            split("[\\p{P}\\$\\+<=>\\^~\\|`]+", "a+=b"),
            ["a", "+=", "b"]
        );
        assert_eq!(split("[一-龥]+", "x中文y"), ["x", "中文", "y"]);
        assert_eq!(
            split("(?=(\\d{3})+(?!\\d))", "1234567"),
            ["1", "234", "567"]
        );
        assert_eq!(split("\\s+$", "a  "), ["a", "  "]);
    }

    #[test]
    fn untranslatable_regexes_are_typed_errors() {
        for bad in ["\\p{Han}+", "\\bx", "[a-", "\\p{L}é"] {
            assert!(matches!(
                RegexStage::new(bad),
                Err(TokenizerError::UnsupportedRegex { .. })
            ));
        }
    }
}
