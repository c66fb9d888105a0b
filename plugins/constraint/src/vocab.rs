//! The vocabulary as the constraint sees it: each token's output bytes (exactly what the
//! tokenizer plugin streams for it), the trie over them, and the end-of-generation ids.

use orcd_common::Vocab;
use orcd_tokenizer::Tokenizer;

use crate::error::ConstraintError;
use crate::trie::TokenTrie;

/// A vocabulary ready for masking.
#[derive(Debug)]
pub struct Vocabulary {
    /// `(size,)`: the bytes of each token; empty for tokens never allowed as text (control
    /// tokens, unused slots).
    pieces: Vec<Vec<u8>>,
    trie: TokenTrie,
    /// EOS and end-of-turn: allowed exactly when the output is complete.
    end_ids: Vec<u32>,
}

impl Vocabulary {
    /// From the GGUF vocabulary, through the tokenizer library's `token_to_piece` so that
    /// the bytes are those the worker streams.
    pub fn from_spec(spec: Vocab) -> Result<Vocabulary, ConstraintError> {
        let end_ids: Vec<u32> = spec.eos.into_iter().chain(spec.eot).collect();
        let n = spec.tokens.len() as u32;
        let tok = Tokenizer::new(spec).map_err(|e| ConstraintError::Vocab(e.to_string()))?;
        let mut pieces = Vec::with_capacity(n as usize);
        for id in 0..n {
            let piece = if tok.is_control(id) {
                Vec::new()
            } else {
                tok.token_to_piece(id, false)
                    .map_err(|e| ConstraintError::Vocab(e.to_string()))?
            };
            pieces.push(piece);
        }
        Ok(Vocabulary::from_pieces(pieces, end_ids))
    }

    /// From token bytes directly (`end_ids` are the end-of-generation tokens).
    pub fn from_pieces(mut pieces: Vec<Vec<u8>>, mut end_ids: Vec<u32>) -> Vocabulary {
        end_ids.retain(|&id| (id as usize) < pieces.len());
        end_ids.sort_unstable();
        end_ids.dedup();
        for &id in &end_ids {
            // An end token is never text.
            pieces[id as usize].clear();
        }
        let trie = TokenTrie::new(&pieces);
        Vocabulary {
            pieces,
            trie,
            end_ids,
        }
    }

    /// Number of tokens (the mask's length in bits).
    pub fn size(&self) -> usize {
        self.pieces.len()
    }

    /// The bytes of `id` (empty for a token never produced as text).
    pub fn piece(&self, id: u32) -> &[u8] {
        self.pieces
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn trie(&self) -> &TokenTrie {
        &self.trie
    }

    pub fn end_ids(&self) -> &[u32] {
        &self.end_ids
    }

    /// Whether `id` ends generation.
    pub fn is_end(&self, id: u32) -> bool {
        self.end_ids.binary_search(&id).is_ok()
    }
}
