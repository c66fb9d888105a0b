//! Byte-level BPE (GPT-2 style, `tokenizer.ggml.model = gpt2`): inside each pre-tokenized word,
//! repeatedly merge the adjacent pair with the best (lowest) merge rank, as llama.cpp's
//! `llm_tokenizer_bpe_session` does. A binary heap keeps the candidate pairs, so a word of n
//! characters costs O(n log n), not O(n²).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::fast_map::FastMap;

/// Merge rules keyed by the ids of their two halves.
#[derive(Debug, Default)]
pub struct MergeTable {
    /// Interned piece texts: vocabulary texts keep their token id; merge halves that are not
    /// tokens get ids after the vocabulary.
    extra_pieces: FastMap<Box<[u8]>, u32>,
    /// `(left piece, right piece) -> rank` (the first rule listed wins).
    ranks: FastMap<(u32, u32), u32>,
}

impl MergeTable {
    /// Builds the table from `left right` rules (split at the first space after the first
    /// byte, as llama.cpp does); rules without such a space are ignored.
    pub fn new(merges: &[Vec<u8>], token_id: &FastMap<Box<[u8]>, u32>, n_tokens: u32) -> Self {
        let mut table = MergeTable::default();
        for (rank, rule) in merges.iter().enumerate() {
            let Some(split) = rule.iter().skip(1).position(|&b| b == b' ').map(|p| p + 1) else {
                continue;
            };
            let left = table.intern(&rule[..split], token_id, n_tokens);
            let right = table.intern(&rule[split + 1..], token_id, n_tokens);
            table.ranks.entry((left, right)).or_insert(rank as u32);
        }
        table
    }

    fn intern(&mut self, text: &[u8], token_id: &FastMap<Box<[u8]>, u32>, n_tokens: u32) -> u32 {
        if let Some(&id) = token_id.get(text) {
            return id;
        }
        let next = n_tokens + self.extra_pieces.len() as u32;
        *self.extra_pieces.entry(text.into()).or_insert(next)
    }

    /// The piece id of `text`, if any rule mentions it or it is a token.
    fn piece(&self, text: &[u8], token_id: &FastMap<Box<[u8]>, u32>) -> Option<u32> {
        token_id
            .get(text)
            .or_else(|| self.extra_pieces.get(text))
            .copied()
    }

    fn rank(&self, left: Option<u32>, right: Option<u32>) -> Option<u32> {
        self.ranks.get(&(left?, right?)).copied()
    }
}

/// One symbol of a word being merged: the byte range `start..start + len` of the word.
#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: usize,
    /// 0 once merged into its left neighbour.
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
    piece: Option<u32>,
}

/// A candidate merge; ordered so that the heap pops the lowest rank, then the leftmost pair.
type Candidate = Reverse<(u32, usize, usize, usize, usize)>; // (rank, left, right, left len, right len)

/// Merges the byte-level encoded `word` and returns its symbols' byte ranges in order.
pub fn merge_word(
    word: &str,
    merges: &MergeTable,
    token_id: &FastMap<Box<[u8]>, u32>,
) -> Vec<(usize, usize)> {
    let bytes = word.as_bytes();
    let mut symbols: Vec<Symbol> = Vec::with_capacity(word.len());
    for (i, (start, c)) in word.char_indices().enumerate() {
        let len = c.len_utf8();
        symbols.push(Symbol {
            start,
            len,
            prev: i.checked_sub(1),
            next: None,
            piece: merges.piece(&bytes[start..start + len], token_id),
        });
    }
    let n = symbols.len();
    for i in 0..n.saturating_sub(1) {
        symbols[i].next = Some(i + 1);
    }

    let mut heap: BinaryHeap<Candidate> = BinaryHeap::new();
    let push = |heap: &mut BinaryHeap<Candidate>, symbols: &[Symbol], left: usize, right: usize| {
        let (l, r) = (&symbols[left], &symbols[right]);
        if let Some(rank) = merges.rank(l.piece, r.piece) {
            heap.push(Reverse((rank, left, right, l.len, r.len)));
        }
    };
    for i in 1..n {
        push(&mut heap, &symbols, i - 1, i);
    }

    while let Some(Reverse((_, left, right, left_len, right_len))) = heap.pop() {
        // Skip pairs made stale by an earlier merge (symbol starts never move, so equal
        // lengths mean equal texts).
        if symbols[left].len != left_len
            || symbols[right].len != right_len
            || left_len == 0
            || right_len == 0
        {
            continue;
        }
        let merged_len = left_len + right_len;
        let start = symbols[left].start;
        symbols[left].len = merged_len;
        symbols[right].len = 0;
        symbols[left].piece = merges.piece(&bytes[start..start + merged_len], token_id);
        let after = symbols[right].next;
        symbols[left].next = after;
        if let Some(a) = after {
            symbols[a].prev = Some(left);
        }
        if let Some(p) = symbols[left].prev {
            push(&mut heap, &symbols, p, left);
        }
        if let Some(a) = after {
            push(&mut heap, &symbols, left, a);
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
