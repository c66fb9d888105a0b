//! `choice`: an example of a team's own constraint plugin (the `constraint` world of contract
//! 0.2.0), dropped into `--plugin-dir` and selected per request with `"constraint_plugin":
//! "choice"`. The output must be exactly one of a fixed list of answers, given as a regular
//! expression of literal alternatives: `"regex": "yes|no|maybe"`. Any other regex, and any
//! other constraint kind, is refused (the request gets a 400 naming its field), so the plugin
//! never pretends to enforce what it does not.
//!
//! How it masks: a token is allowed when the output so far plus the token's bytes is still a
//! prefix of some answer from which the vocabulary can spell the rest (so it fails closed); an
//! end token when the output is an answer. The logic is plain Rust, tested natively; the Wasm
//! glue is in `guest.rs`.

#[cfg(target_arch = "wasm32")]
mod guest;
pub mod pieces;

use std::collections::HashMap;

/// Longest answer list, in bytes.
const MAX_SPEC: usize = 4096;

/// Why a spec is refused: (code, message), as the WIT `error` carries them.
pub type Refusal = (&'static str, String);

/// The answers of a `regex` spec of literal alternatives.
pub fn answers(kind: &str, spec: &str) -> Result<Vec<String>, Refusal> {
    if kind != "regex" {
        return Err((
            "UNSUPPORTED_KIND",
            format!("choice compiles only `regex` constraints, not `{kind}`"),
        ));
    }
    let literal = |a: &str| {
        !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b' ' | b'_' | b'-' | b','))
    };
    let list: Vec<String> = spec.split('|').map(str::to_string).collect();
    if spec.len() > MAX_SPEC || !list.iter().all(|a| literal(a)) {
        return Err((
            "UNSUPPORTED",
            "choice takes only literal alternatives such as `yes|no|maybe` (letters, digits, \
             spaces, `_`, `-` and `,`; at most 4096 bytes)"
                .into(),
        ));
    }
    Ok(list)
}

/// One request's progress: the output so far against the answers.
pub struct Choice {
    answers: Vec<String>,
    /// Bytes of each token (empty: never allowed as text).
    pieces: std::sync::Arc<Vec<Vec<u8>>>,
    end_ids: Vec<u32>,
    out: Vec<u8>,
    ended: bool,
    /// Whether an answer can still be spelt from a prefix, by prefix.
    completable: HashMap<Vec<u8>, bool>,
}

impl Choice {
    pub fn new(
        answers: Vec<String>,
        pieces: std::sync::Arc<Vec<Vec<u8>>>,
        end_ids: Vec<u32>,
    ) -> Choice {
        Choice {
            answers,
            pieces,
            end_ids,
            out: Vec::new(),
            ended: false,
            completable: HashMap::new(),
        }
    }

    fn is_answer(&self, s: &[u8]) -> bool {
        self.answers.iter().any(|a| a.as_bytes() == s)
    }

    fn is_prefix(&self, s: &[u8]) -> bool {
        self.answers.iter().any(|a| a.as_bytes().starts_with(s))
    }

    /// Whether some tokens turn `s` (a prefix of an answer) into an answer.
    fn can_complete(&mut self, s: &[u8]) -> bool {
        if self.is_answer(s) {
            return true;
        }
        if let Some(&known) = self.completable.get(s) {
            return known;
        }
        // Assume not while looking (a token with an empty piece never helps).
        self.completable.insert(s.to_vec(), false);
        let pieces = self.pieces.clone();
        let ok = pieces.iter().any(|p| {
            if p.is_empty() {
                return false;
            }
            let next = [s, p].concat();
            self.is_prefix(&next) && self.can_complete(&next)
        });
        self.completable.insert(s.to_vec(), ok);
        ok
    }

    /// The allowed-token bitset (`ceil(vocab / 32)` words).
    pub fn allowed(&mut self) -> Vec<u32> {
        let mut words = vec![0u32; self.pieces.len().div_ceil(32)];
        if self.ended {
            return words;
        }
        let pieces = self.pieces.clone();
        let out = self.out.clone();
        for (id, p) in pieces.iter().enumerate() {
            if p.is_empty() {
                continue;
            }
            let next = [out.as_slice(), p].concat();
            if self.is_prefix(&next) && self.can_complete(&next) {
                words[id / 32] |= 1 << (id % 32);
            }
        }
        if self.is_answer(&out) {
            for &id in &self.end_ids {
                words[id as usize / 32] |= 1 << (id % 32);
            }
        }
        words
    }

    /// Take the sampled token; an error when the mask did not allow it.
    pub fn advance(&mut self, token: u32) -> Result<(), Refusal> {
        let refused = || {
            (
                "TOKEN_NOT_ALLOWED",
                format!("token {token} is not allowed here"),
            )
        };
        if self.ended {
            return Err(refused());
        }
        if self.end_ids.contains(&token) {
            if !self.is_answer(&self.out) {
                return Err(refused());
            }
            self.ended = true;
            return Ok(());
        }
        let piece = self.pieces.get(token as usize).ok_or_else(refused)?;
        let next = [self.out.as_slice(), piece].concat();
        if piece.is_empty() || !self.is_prefix(&next) {
            return Err(refused());
        }
        self.out = next;
        Ok(())
    }

    pub fn is_complete(&self) -> bool {
        self.is_answer(&self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ids(words: &[u32]) -> Vec<u32> {
        (0..words.len() as u32 * 32)
            .filter(|&i| words[i as usize / 32] >> (i % 32) & 1 == 1)
            .collect()
    }

    #[test]
    fn only_answers_and_only_what_can_be_spelt() {
        // 0 end, 1 "y", 2 "yes", 3 "n", 4 "o", 5 "ma", 6 "ybe", 7 "e" (no "s" alone).
        let pieces: Vec<Vec<u8>> = ["", "y", "yes", "n", "o", "ma", "ybe", "e"]
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        let mut c = Choice::new(
            answers("regex", "yes|no|maybe").unwrap(),
            Arc::new(pieces),
            vec![0],
        );
        // "y" alone cannot become "yes" (no token continues "y" with "es"); "e" starts nothing.
        assert_eq!(ids(&c.allowed()), vec![2, 3, 5]);
        c.advance(5).unwrap();
        assert_eq!(ids(&c.allowed()), vec![6]);
        assert!(c.advance(4).is_err());
        c.advance(6).unwrap();
        assert!(c.is_complete());
        assert_eq!(ids(&c.allowed()), vec![0]);
        c.advance(0).unwrap();
        assert!(ids(&c.allowed()).is_empty());
    }

    #[test]
    fn refuses_what_it_cannot_enforce() {
        assert_eq!(answers("regex", "[0-9]+").unwrap_err().0, "UNSUPPORTED");
        assert_eq!(answers("regex", "a||b").unwrap_err().0, "UNSUPPORTED");
        assert_eq!(
            answers("gbnf", "root ::= \"a\"").unwrap_err().0,
            "UNSUPPORTED_KIND"
        );
    }
}
