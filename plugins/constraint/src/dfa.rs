//! The byte-level automaton of a constraint: a dense DFA from `regex-automata` (anchored at
//! the start, all-matches semantics so no alternative is pruned after an early match), plus
//! the set of *live* states, those from which some byte string completes a match.
//!
//! Liveness is what makes the mask fail closed: a token is allowed only when the state it
//! leads to is live, so every allowed prefix can still be completed.

use std::collections::HashMap;

use regex_automata::dfa::{Automaton as _, StartKind, dense};
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};

use crate::error::ConstraintError;

/// Bytes the determinizer and the final DFA may use.
const DFA_BYTES: usize = 96 << 20;

/// A compiled regular language over bytes.
pub struct Automaton {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
    /// `live[index(s)]`: a match is reachable from `s` (the empty continuation included).
    live: Vec<bool>,
    /// `complete[index(s)]`: the bytes so far form a match.
    complete: Vec<bool>,
    /// `distance[index(s)]`: fewest bytes that complete a match from `s` (`u32::MAX` when
    /// none does).
    distance: Vec<u32>,
    states: usize,
}

impl Automaton {
    /// Build the DFA of `pattern`, matched against the whole output.
    pub fn new(pattern: &str) -> Result<Automaton, ConstraintError> {
        Automaton::with_limit(pattern, DFA_BYTES)
    }

    /// [`Automaton::new`] with at most `bytes` for the determinizer and the DFA (construction
    /// time grows with it).
    pub fn with_limit(pattern: &str, bytes: usize) -> Result<Automaton, ConstraintError> {
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .match_kind(MatchKind::All)
                    .start_kind(StartKind::Anchored)
                    .minimize(false)
                    .determinize_size_limit(Some(bytes))
                    .dfa_size_limit(Some(bytes)),
            )
            .build(pattern)
            .map_err(|e| {
                if e.is_size_limit_exceeded() {
                    ConstraintError::TooLarge(e.to_string())
                } else {
                    ConstraintError::InvalidRegex(e.to_string())
                }
            })?;
        let start = dfa
            .start_state(&start::Config::new().anchored(Anchored::Yes))
            .map_err(|e| ConstraintError::InvalidRegex(e.to_string()))?;
        let mut a = Automaton {
            dfa,
            start,
            live: Vec::new(),
            complete: Vec::new(),
            distance: Vec::new(),
            states: 0,
        };
        a.analyse();
        if !a.is_live(start) {
            return Err(ConstraintError::Unsatisfiable);
        }
        Ok(a)
    }

    /// Reachable states, which are complete, and which are live (backwards from complete).
    fn analyse(&mut self) {
        let reps: Vec<u8> = self
            .dfa
            .byte_classes()
            .representatives(..)
            .filter_map(|u| u.as_u8())
            .collect();
        let mut index: HashMap<StateID, usize> = HashMap::new();
        let mut order = vec![self.start];
        index.insert(self.start, 0);
        // Reverse edges by state position in `order`.
        let mut preds: Vec<Vec<usize>> = vec![Vec::new()];
        let mut i = 0;
        while i < order.len() {
            let s = order[i];
            for &b in &reps {
                let t = self.dfa.next_state(s, b);
                if self.dfa.is_dead_state(t) || self.dfa.is_quit_state(t) {
                    continue;
                }
                let j = *index.entry(t).or_insert_with(|| {
                    order.push(t);
                    preds.push(Vec::new());
                    order.len() - 1
                });
                preds[j].push(i);
            }
            i += 1;
        }
        let max = order.iter().map(|&s| self.idx(s)).max().unwrap_or(0);
        self.live = vec![false; max + 1];
        self.complete = vec![false; max + 1];
        self.distance = vec![u32::MAX; max + 1];
        // Breadth first backwards from the complete states: distances are shortest.
        let mut queue = std::collections::VecDeque::new();
        for (p, &s) in order.iter().enumerate() {
            let eoi = self.dfa.next_eoi_state(s);
            if self.dfa.is_match_state(eoi) {
                let k = self.idx(s);
                self.complete[k] = true;
                self.live[k] = true;
                self.distance[k] = 0;
                queue.push_back(p);
            }
        }
        while let Some(p) = queue.pop_front() {
            let d = self.distance[self.idx(order[p])];
            for &q in &preds[p] {
                let k = self.idx(order[q]);
                if !self.live[k] {
                    self.live[k] = true;
                    self.distance[k] = d + 1;
                    queue.push_back(q);
                }
            }
        }
        self.states = order.len();
    }

    fn idx(&self, s: StateID) -> usize {
        s.as_usize() >> self.dfa.stride2()
    }

    /// The state before any output.
    pub fn start(&self) -> StateID {
        self.start
    }

    /// The state after `byte`; `None` when it cannot lead to a match.
    #[inline]
    pub fn next(&self, s: StateID, byte: u8) -> Option<StateID> {
        let t = self.dfa.next_state(s, byte);
        self.is_live(t).then_some(t)
    }

    /// Whether some continuation (possibly empty) from `s` matches.
    #[inline]
    pub fn is_live(&self, s: StateID) -> bool {
        self.live.get(self.idx(s)).copied().unwrap_or(false)
    }

    /// Whether the output so far matches.
    pub fn is_complete(&self, s: StateID) -> bool {
        self.complete.get(self.idx(s)).copied().unwrap_or(false)
    }

    /// Fewest bytes that complete a match from `s` (`None` when no continuation does).
    pub fn distance(&self, s: StateID) -> Option<u32> {
        self.distance
            .get(self.idx(s))
            .copied()
            .filter(|&d| d != u32::MAX)
    }

    /// Whether the whole of `bytes` matches.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        self.walk(self.start, bytes)
            .is_some_and(|s| self.is_complete(s))
    }

    /// The state after `bytes` from `s`, if every prefix stays live.
    pub fn walk(&self, mut s: StateID, bytes: &[u8]) -> Option<StateID> {
        for &b in bytes {
            s = self.next(s, b)?;
        }
        Some(s)
    }

    /// Reachable states (for reports and benchmarks).
    pub fn state_count(&self) -> usize {
        self.states
    }

    /// Bytes the DFA's tables use.
    pub fn memory_usage(&self) -> usize {
        self.dfa.memory_usage()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_prefixes_and_completion() {
        let a = Automaton::new("ab|abc").unwrap();
        assert!(a.matches(b"ab"));
        assert!(
            a.matches(b"abc"),
            "all-matches semantics keep the longer branch"
        );
        assert!(!a.matches(b"a"));
        assert!(a.walk(a.start(), b"abd").is_none());
    }

    #[test]
    fn an_empty_language_is_refused() {
        assert_eq!(
            Automaton::new("[a&&b]").err(),
            Some(ConstraintError::Unsatisfiable)
        );
    }

    #[test]
    fn states_that_cannot_complete_are_not_live() {
        // `x[a&&b]` can never complete after `x`: `x` must not be offered.
        let a = Automaton::new("y|x[a&&b]").unwrap();
        assert!(a.next(a.start(), b'x').is_none());
        assert!(a.next(a.start(), b'y').is_some());
    }
}
