//! Rebuilding a [`Vocab`] inside a guest from the WIT `vocab` import, in bulk chunks. Each
//! guest's generated bindings are their own types, so a guest implements [`VocabImport`] over
//! them (a few lines of field copies) and [`read_vocab`] does the chunking and the checks once.

use crate::vocab::{TokenType, Vocab};

/// How many entries one bulk call asks for.
pub const CHUNK: u32 = 16_384;

/// Byte strings packed end to end (the WIT `packed-bytes`): entry `i` is `lengths[i]` bytes of
/// `data` after the entries before it.
pub struct Packed {
    pub data: Vec<u8>,
    pub lengths: Vec<u32>,
}

/// How many entries the import holds.
pub struct VocabSizes {
    pub tokens: u32,
    pub merges: u32,
    /// Whether `tokenizer.ggml.scores` is present (no scores are asked for otherwise).
    pub has_scores: bool,
}

/// The WIT `vocab` interface as a guest's bindings give it.
pub trait VocabImport {
    /// The scalar facts: a [`Vocab`] whose entry lists are still empty, and the counts.
    fn header(&self) -> (Vocab, VocabSizes);
    /// Tokens `start .. start + count`.
    fn tokens(&self, start: u32, count: u32) -> Packed;
    /// Scores of tokens `start .. start + count`.
    fn scores(&self, start: u32, count: u32) -> Vec<f32>;
    /// Types of tokens `start .. start + count`.
    fn token_types(&self, start: u32, count: u32) -> Vec<TokenType>;
    /// Merge rules `start .. start + count`.
    fn merges(&self, start: u32, count: u32) -> Packed;
}

/// The whole vocabulary, read in chunks of [`CHUNK`]. Refused (with a message for the guest's
/// own error type): more than `max_entries` tokens or merges, a packed length that overruns
/// its data, or fewer entries than the counts promised.
pub fn read_vocab(import: &impl VocabImport, max_entries: usize) -> Result<Vocab, String> {
    let (mut vocab, sizes) = import.header();
    let (n, n_merges) = (sizes.tokens, sizes.merges);
    if n as usize > max_entries || n_merges as usize > max_entries {
        return Err(format!(
            "{n} tokens and {n_merges} merges (at most {max_entries} each)"
        ));
    }
    let mut start = 0;
    while start < n {
        let count = CHUNK.min(n - start);
        unpack(import.tokens(start, count), &mut vocab.tokens)?;
        if sizes.has_scores {
            vocab.scores.extend(import.scores(start, count));
        }
        vocab.token_types.extend(import.token_types(start, count));
        start += count;
    }
    if vocab.tokens.len() != n as usize
        || vocab.token_types.len() != n as usize
        || (sizes.has_scores && vocab.scores.len() != n as usize)
    {
        return Err(format!(
            "host gave {} tokens, {} types and {} scores for a vocabulary of {n}",
            vocab.tokens.len(),
            vocab.token_types.len(),
            vocab.scores.len()
        ));
    }
    let mut start = 0;
    while start < n_merges {
        let count = CHUNK.min(n_merges - start);
        unpack(import.merges(start, count), &mut vocab.merges)?;
        start += count;
    }
    if vocab.merges.len() != n_merges as usize {
        return Err(format!(
            "host gave {} merges of {n_merges}",
            vocab.merges.len()
        ));
    }
    Ok(vocab)
}

/// Splits packed entries into their byte strings, refusing lengths that overrun the data.
fn unpack(p: Packed, into: &mut Vec<Vec<u8>>) -> Result<(), String> {
    let mut at = 0usize;
    for len in p.lengths {
        let end = at
            .checked_add(len as usize)
            .filter(|&e| e <= p.data.len())
            .ok_or("packed vocabulary entry overruns its data")?;
        into.push(p.data[at..end].to_vec());
        at = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An import over a vocabulary of `n` tokens, `"t{i}"`, that can lie about its data.
    struct Fake {
        n: u32,
        overrun: bool,
        short: bool,
    }

    impl VocabImport for Fake {
        fn header(&self) -> (Vocab, VocabSizes) {
            let sizes = VocabSizes {
                tokens: self.n,
                merges: 2,
                has_scores: true,
            };
            let header = Vocab {
                model: "gpt2".into(),
                ..Vocab::default()
            };
            (header, sizes)
        }
        fn tokens(&self, start: u32, count: u32) -> Packed {
            let end = (start + count).min(self.n - u32::from(self.short));
            let words: Vec<String> = (start..end).map(|i| format!("t{i}")).collect();
            let mut lengths: Vec<u32> = words.iter().map(|w| w.len() as u32).collect();
            if self.overrun {
                lengths[0] += 1000;
            }
            Packed {
                data: words.concat().into_bytes(),
                lengths,
            }
        }
        fn scores(&self, start: u32, count: u32) -> Vec<f32> {
            (start..(start + count).min(self.n))
                .map(|i| i as f32)
                .collect()
        }
        fn token_types(&self, start: u32, count: u32) -> Vec<TokenType> {
            vec![TokenType::Normal; ((start + count).min(self.n) - start) as usize]
        }
        fn merges(&self, _start: u32, _count: u32) -> Packed {
            Packed {
                data: b"t 0t 1".to_vec(),
                lengths: vec![3, 3],
            }
        }
    }

    #[test]
    fn reads_every_chunk_in_order() {
        let n = 2 * CHUNK + 5;
        let fake = Fake {
            n,
            overrun: false,
            short: false,
        };
        let v = read_vocab(&fake, 1 << 22).unwrap();
        assert_eq!(v.model, "gpt2");
        assert_eq!(v.tokens.len(), n as usize);
        assert_eq!(
            v.tokens[CHUNK as usize + 1],
            format!("t{}", CHUNK + 1).into_bytes()
        );
        assert_eq!(v.scores[n as usize - 1], (n - 1) as f32);
        assert_eq!(v.merges, vec![b"t 0".to_vec(), b"t 1".to_vec()]);
    }

    #[test]
    fn refuses_overruns_short_answers_and_oversized_vocabularies() {
        let overrun = Fake {
            n: 10,
            overrun: true,
            short: false,
        };
        assert!(read_vocab(&overrun, 100).unwrap_err().contains("overruns"));
        let short = Fake {
            n: 10,
            overrun: false,
            short: true,
        };
        assert!(
            read_vocab(&short, 100)
                .unwrap_err()
                .contains("host gave 9 tokens")
        );
        let big = Fake {
            n: 101,
            overrun: false,
            short: false,
        };
        assert!(read_vocab(&big, 100).unwrap_err().contains("at most 100"));
    }
}
