//! The vocabulary as a byte trie laid out flat in preorder, so one mask is a single forward
//! scan: a node whose byte leads the automaton to a dead state skips its whole subtree.
//!
//! Layout (`n` nodes, preorder): `byte[k]` is the node's byte, `depth[k]` its depth (1 for a
//! first byte), `end[k]` the index just past its subtree, and the tokens whose piece ends at
//! node `k` are `tokens[tok_start[k]..tok_start[k + 1]]`.

/// Longest token piece kept (longer ones are never allowed: excluding a token is safe).
pub const MAX_PIECE: usize = u16::MAX as usize;

/// A token byte trie.
#[derive(Debug, Default)]
pub struct TokenTrie {
    byte: Vec<u8>,
    depth: Vec<u16>,
    end: Vec<u32>,
    /// `(n + 1,)`: start of each node's run in `tokens`.
    tok_start: Vec<u32>,
    tokens: Vec<u32>,
    max_depth: usize,
}

impl TokenTrie {
    /// Build the trie of `pieces[id]` for every id with a non-empty piece.
    pub fn new(pieces: &[Vec<u8>]) -> TokenTrie {
        let mut ids: Vec<u32> = (0..pieces.len() as u32)
            .filter(|&i| {
                let p = &pieces[i as usize];
                !p.is_empty() && p.len() <= MAX_PIECE
            })
            .collect();
        ids.sort_by(|&a, &b| pieces[a as usize].cmp(&pieces[b as usize]).then(a.cmp(&b)));
        let mut t = TokenTrie::default();
        // Indices of the nodes on the current path, by depth - 1.
        let mut path: Vec<usize> = Vec::new();
        let mut prev: &[u8] = &[];
        for &id in &ids {
            let piece = pieces[id as usize].as_slice();
            let lcp = prev.iter().zip(piece).take_while(|(a, b)| a == b).count();
            // Close the nodes below the shared prefix.
            while path.len() > lcp {
                let k = path.pop().expect("path is longer than lcp");
                t.end[k] = t.byte.len() as u32;
            }
            for (d, &b) in piece.iter().enumerate().skip(lcp) {
                path.push(t.byte.len());
                t.byte.push(b);
                t.depth.push((d + 1) as u16);
                t.end.push(0);
                t.tok_start.push(t.tokens.len() as u32);
            }
            t.tokens.push(id);
            t.max_depth = t.max_depth.max(piece.len());
            prev = piece;
        }
        for k in path {
            t.end[k] = t.byte.len() as u32;
        }
        t.tok_start.push(t.tokens.len() as u32);
        t
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.byte.len()
    }

    /// Whether no token has a piece.
    pub fn is_empty(&self) -> bool {
        self.byte.is_empty()
    }

    /// Longest piece.
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// Visit every token whose piece `step` accepts byte by byte: `step(state, byte)` returns
    /// the next state or `None` to prune that prefix; `emit(id, state)` gets each accepted
    /// token with the state after its last byte.
    #[inline]
    pub fn walk<S: Copy>(
        &self,
        start: S,
        mut step: impl FnMut(S, u8) -> Option<S>,
        mut emit: impl FnMut(u32, S),
    ) {
        let n = self.byte.len();
        // `states[d]`: the state after the first `d` bytes of the current path.
        let mut states: Vec<S> = vec![start; self.max_depth + 1];
        let mut k = 0;
        while k < n {
            let d = self.depth[k] as usize;
            match step(states[d - 1], self.byte[k]) {
                None => k = self.end[k] as usize,
                Some(s) => {
                    states[d] = s;
                    let (a, b) = (self.tok_start[k] as usize, self.tok_start[k + 1] as usize);
                    for &id in &self.tokens[a..b] {
                        emit(id, s);
                    }
                    k += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_exactly_the_accepted_tokens() {
        let pieces: Vec<Vec<u8>> = ["a", "ab", "abc", "b", "", "ab", "ba", "c"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let t = TokenTrie::new(&pieces);
        // Accept strings over {a, b} only.
        let mut got = Vec::new();
        t.walk(0u8, |s, b| (b != b'c').then_some(s), |id, _| got.push(id));
        got.sort();
        assert_eq!(got, vec![0, 1, 3, 5, 6]);
        // Accept only prefixes of "ab".
        let mut got = Vec::new();
        t.walk(
            0usize,
            |d, b| (d < 2 && b"ab"[d] == b).then_some(d + 1),
            |id, _| got.push(id),
        );
        got.sort();
        assert_eq!(got, vec![0, 1, 5]);
    }
}
