//! llama.cpp's hand-written splitters (`unicode_regex_split_custom_*` in `src/unicode.cpp`):
//! llama.cpp runs these instead of a regex engine for the regex texts they stand for, and where
//! they differ from the regex, llama.cpp's behaviour is what a model's token ids were checked
//! against. Each splits one piece of the text and appends the finer pieces.

use crate::unicode_class::{is_han, is_letter, is_mark, is_number, is_whitespace};

/// A piece of the text: the half-open range `start..end` of character indices.
pub type Piece = (usize, usize);

/// Character access limited to one piece: positions outside it read as `None`, as llama.cpp's
/// `OUT_OF_RANGE`, so that look-aheads stop at piece boundaries.
struct Cursor<'a> {
    chars: &'a [char],
    start: usize,
    end: usize,
    /// End of the last emitted word.
    prev_end: usize,
    /// Qwen3.5: `\p{M}` joins `\p{L}` in letter runs.
    marks_are_letters: bool,
}

impl<'a> Cursor<'a> {
    fn new(chars: &'a [char], (start, end): Piece) -> Self {
        Cursor {
            chars,
            start,
            end,
            prev_end: start,
            marks_are_letters: false,
        }
    }
    fn get(&self, pos: usize) -> Option<char> {
        (self.start <= pos && pos < self.end).then(|| self.chars[pos])
    }
    fn letter(&self, pos: usize) -> bool {
        self.get(pos)
            .is_some_and(|c| is_letter(c) || (self.marks_are_letters && is_mark(c)))
    }
    fn number(&self, pos: usize) -> bool {
        self.get(pos).is_some_and(is_number)
    }
    fn space(&self, pos: usize) -> bool {
        self.get(pos).is_some_and(is_whitespace)
    }
    /// `[^\s\p{L}\p{N}]`: in the piece and neither whitespace, letter nor number.
    fn other(&self, pos: usize) -> bool {
        self.get(pos).is_some_and(|c| {
            !(is_whitespace(c)
                || is_letter(c)
                || is_number(c)
                || (self.marks_are_letters && is_mark(c)))
        })
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
    /// The whitespace alternatives that end Llama 3's and Kimi K2's regexes,
    /// `\s*[\r\n]+|\s+(?!\S)|\s+`, at `pos`: the end of the piece emitted, or `None` when no
    /// whitespace starts there.
    fn spaces(&mut self, pos: usize, out: &mut Vec<Piece>) -> Option<usize> {
        let mut count = 0;
        let mut last_newline_end = None;
        while self.space(pos + count) {
            if matches!(self.chars[pos + count], '\r' | '\n') {
                last_newline_end = Some(pos + count + 1);
            }
            count += 1;
        }
        // `\s*[\r\n]+`
        if let Some(end) = last_newline_end {
            self.emit(end, out);
            return Some(end);
        }
        (count > 0).then(|| self.whitespace_run(pos, count, out))
    }

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
pub fn split_gpt2(chars: &[char], piece: Piece, out: &mut Vec<Piece>) {
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
/// cut into groups of at most `max_digits` (1: `unicode_regex_split_custom_qwen2`). With
/// `marks`, combining marks count as letters and not as other characters (Qwen3.5's
/// `[\p{L}\p{M}]+`, `unicode_regex_split_custom_qwen35`).
pub fn split_llama3(
    chars: &[char],
    piece: Piece,
    max_digits: usize,
    marks: bool,
    out: &mut Vec<Piece>,
) {
    let mut cur = Cursor::new(chars, piece);
    cur.marks_are_letters = marks;
    let mut pos = piece.0;
    while pos < piece.1 {
        if let Some(n) = cur.contraction(pos, true) {
            pos += cur.emit(pos + n, out);
            continue;
        }
        let c = chars[pos];
        // `[^\r\n\p{L}\p{N}]?\p{L}+`
        if !(c == '\r' || c == '\n' || is_number(c)) && (cur.letter(pos) || cur.letter(pos + 1)) {
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
        if let Some(end) = cur.spaces(pos, out) {
            pos = end;
            continue;
        }
        pos += 1;
        cur.emit(pos, out);
    }
}

/// Kimi K2's split of one piece (`unicode_regex_split_custom_kimi_k2`): K2's regex
/// `[\p{Han}]+|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}&&[^\p{Han}]]+(?i:'s|...)?|\p{N}{1,3}|
/// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`, as llama.cpp writes it by hand (marks are not
/// letters there).
pub fn split_kimi_k2(chars: &[char], piece: Piece, out: &mut Vec<Piece>) {
    let mut cur = Cursor::new(chars, piece);
    let han = |cur: &Cursor, pos: usize| cur.get(pos).is_some_and(is_han);
    let non_han_letter = |cur: &Cursor, pos: usize| cur.letter(pos) && !han(cur, pos);
    let mut pos = piece.0;
    while pos < piece.1 {
        let c = chars[pos];
        if is_han(c) {
            while han(&cur, pos) {
                pos += 1;
            }
            cur.emit(pos, out);
            continue;
        }
        // `[^\r\n\p{L}\p{N}]?` then letters that are not Han, then an optional contraction.
        let lead = !(c == '\r' || c == '\n' || is_letter(c) || is_number(c));
        if (is_letter(c) && !is_han(c)) || (lead && non_han_letter(&cur, pos + 1)) {
            if lead {
                pos += 1;
            }
            while non_han_letter(&cur, pos) {
                pos += 1;
            }
            if let Some(n) = cur.contraction(pos, true) {
                pos += n;
            }
            cur.emit(pos, out);
            continue;
        }
        if is_number(c) {
            let mut ini = pos;
            while cur.number(pos) {
                pos += 1;
                if pos - ini >= 3 {
                    cur.emit(pos, out);
                    ini = pos;
                }
            }
            cur.emit(pos, out);
            continue;
        }
        let at = if c == ' ' { pos + 1 } else { pos };
        if cur.other(at) {
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
        if let Some(end) = cur.spaces(pos, out) {
            pos = end;
            continue;
        }
        pos += 1;
        cur.emit(pos, out);
    }
}

/// AFMoE's digit grouping (`unicode_regex_split_custom_afmoe`, also used for Tiny Aya's
/// `\d{1,3}(?=(?:\d{3})*\b)`): a run of n numbers is cut into n mod 3 leading ones and then
/// threes. As in llama.cpp, the text before a run is not a piece of its own: it joins the
/// run's first group.
pub fn split_afmoe_digits(chars: &[char], piece: Piece, out: &mut Vec<Piece>) {
    let mut cur = Cursor::new(chars, piece);
    let mut pos = piece.0;
    while pos < piece.1 {
        if !is_number(chars[pos]) {
            pos += 1;
            continue;
        }
        let start = pos;
        while cur.number(pos) {
            pos += 1;
        }
        let mut at = start + (pos - start) % 3;
        if at > start {
            cur.emit(at, out);
        }
        while at < pos {
            at += 3;
            cur.emit(at, out);
        }
    }
    cur.emit(piece.1, out);
}

/// `[^\n]+|[\n]+` (`unicode_regex_split_custom_newlines`): runs of newlines and runs of
/// anything else.
pub fn split_newlines(chars: &[char], piece: Piece, out: &mut Vec<Piece>) {
    let mut pos = piece.0;
    while pos < piece.1 {
        let newline = chars[pos] == '\n';
        let start = pos;
        while pos < piece.1 && (chars[pos] == '\n') == newline {
            pos += 1;
        }
        out.push((start, pos));
    }
}
