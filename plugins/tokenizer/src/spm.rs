//! SentencePiece-style BPE (`tokenizer.ggml.model = llama`: Llama 2, Phi-3, Gemma): start from
//! single characters and repeatedly merge the adjacent pair whose merged text is the
//! vocabulary token with the highest score, as llama.cpp's `llm_tokenizer_spm_session` does.
//! Characters left without a token fall back to `<0xXX>` byte tokens.
//!
//! llama.cpp also keeps a "reverse merge" map to re-split symbols that are not tokens; it can
//! never fire on valid UTF-8 input (every merged symbol is a token by construction and every
//! unmerged symbol is one whole character, which no pair of characters equals), so it is not
//! reproduced here.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::fast_map::FastMap;

/// A candidate merge; the heap pops the best score, then the leftmost pair.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: f32,
    left: usize,
    right: usize,
    /// Byte length of the merged text when the candidate was made.
    size: usize,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| Reverse(self.left).cmp(&Reverse(other.left)))
    }
}

/// One symbol: the byte range `start..start + len` of the text; `len` is 0 once merged away.
#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// Merges `text` (spaces already escaped to `▁`) and returns the byte ranges of the final
/// symbols in order. A range is either a vocabulary token or a single character without one.
pub fn merge(
    text: &str,
    token_id: &FastMap<Box<[u8]>, u32>,
    scores: &[f32],
) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut symbols: Vec<Symbol> = text
        .char_indices()
        .enumerate()
        .map(|(i, (start, c))| Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: None,
        })
        .collect();
    let n = symbols.len();
    for i in 0..n.saturating_sub(1) {
        symbols[i].next = Some(i + 1);
    }

    let mut heap = BinaryHeap::new();
    let try_add =
        |heap: &mut BinaryHeap<Candidate>, symbols: &[Symbol], left: usize, right: usize| {
            let start = symbols[left].start;
            let size = symbols[left].len + symbols[right].len;
            if let Some(&id) = token_id.get(&bytes[start..start + size]) {
                let score = scores.get(id as usize).copied().unwrap_or(0.0);
                heap.push(Candidate {
                    score,
                    left,
                    right,
                    size,
                });
            }
        };
    for i in 1..n {
        try_add(&mut heap, &symbols, i - 1, i);
    }

    while let Some(c) = heap.pop() {
        let (l, r) = (symbols[c.left], symbols[c.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != c.size {
            continue;
        }
        symbols[c.left].len = c.size;
        symbols[c.right].len = 0;
        symbols[c.left].next = r.next;
        if let Some(a) = r.next {
            symbols[a].prev = Some(c.left);
        }
        if let Some(p) = l.prev {
            try_add(&mut heap, &symbols, p, c.left);
        }
        if let Some(a) = r.next {
            try_add(&mut heap, &symbols, c.left, a);
        }
    }

    let mut out = Vec::new();
    let mut at = if n > 0 { Some(0) } else { None };
    while let Some(i) = at {
        let s = symbols[i];
        out.push((s.start, s.start + s.len));
        at = s.next;
    }
    out
}
