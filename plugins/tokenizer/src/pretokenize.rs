//! Pre-tokenizers of byte-level BPE vocabularies: they cut text into words before BPE merges run
//! inside each word. Written by hand (no regex engine) with the semantics of llama.cpp's
//! `unicode_regex_split`, including where its hand-written splitters differ from the regexes
//! they stand for.
//!
//! A pre-tokenizer is a list of stages; each stage cuts every piece of the previous one
//! further. A regex stage keeps the text between matches as pieces too.

use crate::unicode_class::{is_letter, is_number, is_punctuation, is_whitespace};

/// The word splitting of a byte-level BPE vocabulary, chosen by `tokenizer.ggml.pre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    Gpt2,
    /// Llama 3 (`llama-bpe`) when `max_digits` is 3, Qwen2 when it is 1:
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
    Llama3 { max_digits: usize },
    /// SmolLM / StarCoder: every number character alone (`\p{N}`), then GPT-2's split.
    IsolatedDigitsGpt2,
    /// llama.cpp's fallback for `default`: punctuation runs, GPT-2, number runs, ASCII digit
    /// triples.
    Default,
}

impl PreTokenizer {
    /// Splits `text` into words, returned as sub-slices of `text` in order; their concatenation
    /// is `text`.
    pub fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let chars: Vec<char> = text.chars().collect();
        let mut byte_at = Vec::with_capacity(chars.len() + 1);
        let mut off = 0;
        for &c in &chars {
            byte_at.push(off);
            off += c.len_utf8();
        }
        byte_at.push(off);

        let mut pieces = vec![(0, chars.len())];
        match *self {
            PreTokenizer::Gpt2 => pieces = stage(&chars, &pieces, split_gpt2),
            PreTokenizer::Llama3 { max_digits } => {
                pieces = stage(&chars, &pieces, |c, p, out| {
                    split_llama3(c, p, max_digits, out)
                })
            }
            PreTokenizer::IsolatedDigitsGpt2 => {
                pieces = stage(&chars, &pieces, |c, p, out| {
                    split_runs(c, p, is_number, Run::One, out)
                });
                pieces = stage(&chars, &pieces, split_gpt2);
            }
            PreTokenizer::Default => {
                let punct = |c: char| {
                    is_punctuation(c) || matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '~' | '|')
                };
                pieces = stage(&chars, &pieces, |c, p, out| {
                    split_runs(c, p, punct, Run::OneOrMore, out)
                });
                pieces = stage(&chars, &pieces, split_gpt2);
                pieces = stage(&chars, &pieces, |c, p, out| {
                    split_runs(c, p, is_number, Run::OneOrMore, out)
                });
                pieces = stage(&chars, &pieces, |c, p, out| {
                    split_runs(c, p, |c| c.is_ascii_digit(), Run::Exactly(3), out)
                });
            }
        }
        pieces
            .iter()
            .map(|&(s, e)| &text[byte_at[s]..byte_at[e]])
            .collect()
    }
}

/// A piece of the text: the half-open range `start..end` of character indices.
type Piece = (usize, usize);

/// Runs `split` on every piece, collecting the finer pieces.
fn stage(
    chars: &[char],
    pieces: &[Piece],
    split: impl Fn(&[char], Piece, &mut Vec<Piece>),
) -> Vec<Piece> {
    let mut out = Vec::with_capacity(pieces.len());
    for &p in pieces {
        split(chars, p, &mut out);
    }
    out
}

/// Character access limited to one piece: positions outside it read as `None`, as llama.cpp's
/// `OUT_OF_RANGE`, so that look-aheads stop at piece boundaries.
struct Cursor<'a> {
    chars: &'a [char],
    start: usize,
    end: usize,
    /// End of the last emitted word.
    prev_end: usize,
}

impl<'a> Cursor<'a> {
    fn new(chars: &'a [char], (start, end): Piece) -> Self {
        Cursor {
            chars,
            start,
            end,
            prev_end: start,
        }
    }
    fn get(&self, pos: usize) -> Option<char> {
        (self.start <= pos && pos < self.end).then(|| self.chars[pos])
    }
    fn letter(&self, pos: usize) -> bool {
        self.get(pos).is_some_and(is_letter)
    }
    fn number(&self, pos: usize) -> bool {
        self.get(pos).is_some_and(is_number)
    }
    fn space(&self, pos: usize) -> bool {
        self.get(pos).is_some_and(is_whitespace)
    }
    /// `[^\s\p{L}\p{N}]`: in the piece and neither whitespace, letter nor number.
    fn other(&self, pos: usize) -> bool {
        self.get(pos)
            .is_some_and(|c| !(is_whitespace(c) || is_letter(c) || is_number(c)))
    }
    /// Emits the word `prev_end..end` (if not empty) and returns its length.
    fn emit(&mut self, end: usize, out: &mut Vec<Piece>) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            out.push((self.prev_end, end));
        }
        self.prev_end = end;
        len
    }
    /// Length of the contraction (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`) at `pos`, if any.
    fn contraction(&self, pos: usize, ignore_case: bool) -> Option<usize> {
        if self.get(pos) != Some('\'') || pos + 1 >= self.end {
            return None;
        }
        let fold = |c: Option<char>| {
            c.map(|c| {
                if ignore_case {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
        };
        let next = fold(self.get(pos + 1));
        if matches!(next, Some('s' | 't' | 'm' | 'd')) {
            return Some(2);
        }
        if pos + 2 < self.end {
            let pair = (next, fold(self.get(pos + 2)));
            if matches!(
                pair,
                (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l'))
            ) {
                return Some(3);
            }
        }
        None
    }
    /// Trailing whitespace rules shared by both splitters: `\s+(?!\S)|\s+` over the
    /// `count` whitespace characters at `pos`. Returns the new position.
    fn whitespace_run(&mut self, pos: usize, count: usize, out: &mut Vec<Piece>) -> usize {
        if count > 1 && self.get(pos + count).is_some() {
            // `\s+(?!\S)`: leave the last space to prefix the next word.
            self.emit(pos + count - 1, out);
            pos + count - 1
        } else {
            self.emit(pos + count, out);
            pos + count
        }
    }
}

/// GPT-2's split of one piece (llama.cpp's `unicode_regex_split_custom_gpt2`).
fn split_gpt2(chars: &[char], piece: Piece, out: &mut Vec<Piece>) {
    let mut cur = Cursor::new(chars, piece);
    let mut pos = piece.0;
    while pos < piece.1 {
        if let Some(n) = cur.contraction(pos, false) {
            pos += cur.emit(pos + n, out);
            continue;
        }
        let c = chars[pos];
        // The class is decided by the character after an optional leading space.
        let at = if c == ' ' { pos + 1 } else { pos };
        if cur.letter(at) {
            pos = at;
            while cur.letter(pos) {
                pos += 1;
            }
            cur.emit(pos, out);
            continue;
        }
        if cur.number(at) {
            pos = at;
            while cur.number(pos) {
                pos += 1;
            }
            cur.emit(pos, out);
            continue;
        }
        if cur.other(at) {
            pos = at;
            while cur.other(pos) {
                pos += 1;
            }
            cur.emit(pos, out);
            continue;
        }
        let mut count = 0;
        while cur.space(pos + count) {
            count += 1;
        }
        if count > 0 {
            pos = cur.whitespace_run(pos, count, out);
            continue;
        }
        pos += 1;
        cur.emit(pos, out);
    }
}

/// Llama 3's split of one piece (llama.cpp's `unicode_regex_split_custom_llama3`), with numbers
/// cut into groups of at most `max_digits`.
fn split_llama3(chars: &[char], piece: Piece, max_digits: usize, out: &mut Vec<Piece>) {
    let mut cur = Cursor::new(chars, piece);
    let mut pos = piece.0;
    while pos < piece.1 {
        if let Some(n) = cur.contraction(pos, true) {
            pos += cur.emit(pos + n, out);
            continue;
        }
        let c = chars[pos];
        // `[^\r\n\p{L}\p{N}]?\p{L}+`
        if !(c == '\r' || c == '\n' || is_number(c)) && (is_letter(c) || cur.letter(pos + 1)) {
            pos += 1;
            while cur.letter(pos) {
                pos += 1;
            }
            cur.emit(pos, out);
            continue;
        }
        // `\p{N}{1,max_digits}`
        if is_number(c) {
            let mut ini = pos;
            while cur.number(pos) {
                pos += 1;
                if pos - ini >= max_digits {
                    cur.emit(pos, out);
                    ini = pos;
                }
            }
            cur.emit(pos, out);
            continue;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        let at = if c == ' ' { pos + 1 } else { pos };
        if cur.other(at) || (c == ' ' && at >= piece.1) {
            pos = at;
            while cur.other(pos) {
                pos += 1;
            }
            while matches!(cur.get(pos), Some('\r' | '\n')) {
                pos += 1;
            }
            cur.emit(pos, out);
            continue;
        }
        let mut count = 0;
        let mut last_newline_end = None;
        while cur.space(pos + count) {
            if matches!(chars[pos + count], '\r' | '\n') {
                last_newline_end = Some(pos + count + 1);
            }
            count += 1;
        }
        // `\s*[\r\n]+`
        if let Some(end) = last_newline_end {
            pos = end;
            cur.emit(pos, out);
            continue;
        }
        if count > 0 {
            pos = cur.whitespace_run(pos, count, out);
            continue;
        }
        pos += 1;
        cur.emit(pos, out);
    }
}

/// How many characters of a class one regex match takes.
#[derive(Debug, Clone, Copy)]
enum Run {
    /// `[class]`
    One,
    /// `[class]+`
    OneOrMore,
    /// `[class]{n}` exactly (what is left of a shorter run stays between matches).
    Exactly(usize),
}

/// A regex stage that matches a character class: matches and the text between them become
/// pieces.
fn split_runs(
    chars: &[char],
    piece: Piece,
    class: impl Fn(char) -> bool,
    run: Run,
    out: &mut Vec<Piece>,
) {
    let (start, end) = piece;
    let mut gap_start = start;
    let mut pos = start;
    while pos < end {
        if !class(chars[pos]) {
            pos += 1;
            continue;
        }
        let mut run_end = pos;
        while run_end < end && class(chars[run_end]) {
            run_end += 1;
        }
        let len = match run {
            Run::One => 1,
            Run::OneOrMore => run_end - pos,
            Run::Exactly(n) if run_end - pos >= n => n,
            Run::Exactly(_) => {
                // Too short to match anywhere in this run.
                pos = run_end;
                continue;
            }
        };
        if gap_start < pos {
            out.push((gap_start, pos));
        }
        out.push((pos, pos + len));
        pos += len;
        gap_start = pos;
    }
    if gap_start < end {
        out.push((gap_start, end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_words() {
        let words = PreTokenizer::Gpt2.split("Hello,  world's 123 !!\n\n x");
        assert_eq!(
            words,
            [
                "Hello", ",", " ", " world", "'s", " 123", " !!", "\n\n", " x"
            ]
        );
    }

    #[test]
    fn llama3_words() {
        let words = PreTokenizer::Llama3 { max_digits: 3 }.split("I'VE 12345 apples\n\n  ok  ");
        assert_eq!(
            words,
            [
                "I", "'VE", " ", "123", "45", " apples", "\n\n", " ", " ok", "  "
            ]
        );
        let words = PreTokenizer::Llama3 { max_digits: 1 }.split("x 123");
        assert_eq!(words, ["x", " ", "1", "2", "3"]);
    }

    #[test]
    fn isolated_digits() {
        let words = PreTokenizer::IsolatedDigitsGpt2.split("ied 4 ½ months 33");
        assert_eq!(words, ["ied", " ", "4", " ", "½", " months", " ", "3", "3"]);
    }

    #[test]
    fn digit_triples_leave_the_rest_between_matches() {
        let words = PreTokenizer::Default.split("1234567");
        assert_eq!(words, ["123", "456", "7"]);
    }
}
