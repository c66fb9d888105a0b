//! Special-token partitioning (llama.cpp's `tokenizer_st_partition`): before the model's
//! algorithm runs, the texts of control, unknown and user-defined tokens are cut out of the
//! input and become their ids. Tokens are tried longest first; each one splits every remaining
//! text fragment at all its (non-overlapping, leftmost-first) occurrences. Without
//! `parse_special` only user-defined tokens are cut out.
//!
//! A vocabulary can hold thousands of special tokens (Gemma 3: 6414), so a byte trie first finds
//! which ones occur in the text at all; only those are tried, which gives the same fragments
//! as trying every one.

/// A piece of the input after partitioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// The byte range `start..end` of the input, still to be tokenized.
    Text(usize, usize),
    /// A special token found in the input.
    Token(u32),
}

/// One special token.
#[derive(Debug, Clone)]
struct Entry {
    id: u32,
    text: String,
    /// A control or unknown token (only matched with `parse_special`).
    control: bool,
    /// Drop whitespace to the left of a match.
    lstrip: bool,
    /// Drop whitespace to the right of a match.
    rstrip: bool,
}

/// One trie node: children sorted by byte, and the entry whose text ends here.
#[derive(Debug, Default, Clone)]
struct Node {
    children: Vec<(u8, u32)>,
    entry: Option<u32>,
}

/// The special tokens of a vocabulary, longest first.
#[derive(Debug, Default, Clone)]
pub struct SpecialTokens {
    entries: Vec<Entry>,
    trie: Vec<Node>,
}

/// A special token as given to [`SpecialTokens::new`].
#[derive(Debug, Clone)]
pub struct SpecialToken {
    pub id: u32,
    pub text: String,
    pub control: bool,
    pub lstrip: bool,
    pub rstrip: bool,
}

impl SpecialTokens {
    /// Orders the tokens longest first (ties by id) and indexes them.
    pub fn new(tokens: Vec<SpecialToken>) -> Self {
        let mut entries: Vec<Entry> = tokens
            .into_iter()
            .filter(|t| !t.text.is_empty())
            .map(|t| Entry {
                id: t.id,
                text: t.text,
                control: t.control,
                lstrip: t.lstrip,
                rstrip: t.rstrip,
            })
            .collect();
        entries.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.id.cmp(&b.id)));
        let mut trie = vec![Node::default()];
        for (index, e) in entries.iter().enumerate() {
            let mut node = 0usize;
            for &b in e.text.as_bytes() {
                node = match trie[node].children.binary_search_by_key(&b, |&(k, _)| k) {
                    Ok(i) => trie[node].children[i].1 as usize,
                    Err(i) => {
                        let child = trie.len() as u32;
                        trie.push(Node::default());
                        trie[node].children.insert(i, (b, child));
                        child as usize
                    }
                };
            }
            // Texts are unique in a vocabulary; keep the first if not.
            trie[node].entry.get_or_insert(index as u32);
        }
        SpecialTokens { entries, trie }
    }

    /// Number of special tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Cuts the special tokens out of `text`.
    pub fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        if text.is_empty() {
            return Vec::new();
        }
        let mut frags = vec![Fragment::Text(0, text.len())];
        for index in self.present(text, parse_special) {
            let e = &self.entries[index];
            frags = split_at_token(text, &frags, e);
        }
        frags
    }

    /// Indices of the entries (usable with `parse_special`) whose text occurs in `text`,
    /// in entry order.
    fn present(&self, text: &str, parse_special: bool) -> Vec<usize> {
        let mut found = vec![false; self.entries.len()];
        let bytes = text.as_bytes();
        for start in 0..bytes.len() {
            let mut node = 0usize;
            for &b in &bytes[start..] {
                match self.trie[node]
                    .children
                    .binary_search_by_key(&b, |&(k, _)| k)
                {
                    Ok(i) => node = self.trie[node].children[i].1 as usize,
                    Err(_) => break,
                }
                if let Some(e) = self.trie[node].entry {
                    found[e as usize] = true;
                }
            }
        }
        (0..self.entries.len())
            .filter(|&i| found[i] && (parse_special || !self.entries[i].control))
            .collect()
    }
}

/// C's `isspace` in the C locale, which llama.cpp uses for lstrip/rstrip.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// Splits every text fragment at the occurrences of one special token.
fn split_at_token(text: &str, frags: &[Fragment], e: &Entry) -> Vec<Fragment> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(frags.len() + 2);
    for &frag in frags {
        let Fragment::Text(mut start, end) = frag else {
            out.push(frag);
            continue;
        };
        while start < end {
            let Some(rel) = text[start..end].find(e.text.as_str()) else {
                break;
            };
            let at = start + rel;
            let mut left_end = at;
            if e.lstrip {
                while left_end > start && is_c_space(bytes[left_end - 1]) {
                    left_end -= 1;
                }
            }
            if left_end > start {
                out.push(Fragment::Text(start, left_end));
            }
            out.push(Fragment::Token(e.id));
            start = at + e.text.len();
            if e.rstrip {
                while start < end && is_c_space(bytes[start]) {
                    start += 1;
                }
            }
        }
        if start < end {
            out.push(Fragment::Text(start, end));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(id: u32, text: &str, control: bool) -> SpecialToken {
        SpecialToken {
            id,
            text: text.into(),
            control,
            lstrip: false,
            rstrip: false,
        }
    }

    #[test]
    fn longest_token_wins_and_control_needs_parse_special() {
        let st = SpecialTokens::new(vec![
            tok(1, "<a>", true),
            tok(2, "<a><a>", true),
            tok(3, "\n\n", false),
        ]);
        let text = "x<a><a>y<a>\n\nz";
        use Fragment::*;
        assert_eq!(
            st.partition(text, true),
            [
                Text(0, 1),
                Token(2),
                Text(7, 8),
                Token(1),
                Token(3),
                Text(13, 14)
            ]
        );
        assert_eq!(
            st.partition(text, false),
            [Text(0, 11), Token(3), Text(13, 14)]
        );
        assert!(st.partition("", true).is_empty());
    }

    #[test]
    fn rstrip_drops_following_spaces() {
        let mut t = tok(7, "<|end|>", true);
        t.rstrip = true;
        let st = SpecialTokens::new(vec![t]);
        assert_eq!(
            st.partition("a<|end|>  b", true),
            [
                Fragment::Text(0, 1),
                Fragment::Token(7),
                Fragment::Text(10, 11)
            ]
        );
    }
}
