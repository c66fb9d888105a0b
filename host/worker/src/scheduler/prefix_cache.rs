//! Automatic prefix caching, first step: the KV-cache slots of finished sequences are kept,
//! indexed by a hash chain over their tokens in blocks of [`BLOCK_TOKENS`], so that a new
//! request whose prompt starts with tokens a kept slot holds copies that slot's keys and values
//! (`Device::copy_kv_prefix`) and prefills only the rest.
//!
//! What this is and is not: compute is shared (the prefix is not recomputed), memory is not
//! (each sequence has its own copy of the prefix's rows; no page is shared read-only between
//! slots). A kept slot keeps its whole reservation (prompt + `max_tokens`), and is evicted,
//! least recently used first, whenever a reservation would otherwise fail: the cache never
//! makes a request wait or fail. The block chain finds the slot with the longest block-aligned
//! match; the match then extends token by token inside that slot, and is cut to leave at least
//! the prompt's last token to compute (its logits give the first generated token).
//!
//! The chain: the hash of block `i` covers block `i`'s tokens and the hash of block `i - 1`, so
//! equal hashes at depth `i` mean (up to a collision) equal first `16 (i + 1)` tokens. A
//! collision cannot give wrong output: the match length is always recounted on the tokens.

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use orcd_device::SeqSlot;

/// Tokens per block of the hash chain.
pub(crate) const BLOCK_TOKENS: usize = 16;

/// A kept slot.
#[derive(Debug)]
struct Kept {
    /// The tokens whose keys and values the slot holds, in position order.
    tokens: Vec<u32>,
    /// Positions the slot reserves (its `alloc_seq` size).
    reserved: usize,
    /// The block chain's hashes, one per full block of `tokens`.
    chain: Vec<u64>,
    /// When it was kept or last matched (a tick of the cache's clock).
    used: u64,
}

/// A match: the kept slot to copy from and how many leading tokens it shares with the prompt.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hit {
    pub slot: SeqSlot,
    pub tokens: usize,
}

/// The kept slots and their index.
#[derive(Debug, Default)]
pub(crate) struct PrefixCache {
    kept: HashMap<SeqSlot, Kept>,
    /// Chain hash of a slot's first `d + 1` blocks -> the slots with that chain at depth `d`.
    index: HashMap<u64, BTreeSet<SeqSlot>>,
    clock: u64,
}

/// The hash chain of `tokens`' full blocks.
fn chain(tokens: &[u32]) -> Vec<u64> {
    let mut prev = 0u64;
    tokens
        .chunks_exact(BLOCK_TOKENS)
        .map(|block| {
            let mut h = DefaultHasher::new();
            prev.hash(&mut h);
            block.hash(&mut h);
            prev = h.finish();
            prev
        })
        .collect()
}

/// Leading tokens `a` and `b` share.
pub(crate) fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PrefixCache {
    /// Slots kept.
    pub fn slots(&self) -> usize {
        self.kept.len()
    }

    /// Positions whose keys and values the kept slots hold.
    pub fn tokens(&self) -> usize {
        self.kept.values().map(|k| k.tokens.len()).sum()
    }

    /// Positions the kept slots reserve (what evicting them all would give back).
    pub fn reserved_tokens(&self) -> usize {
        self.kept.values().map(|k| k.reserved).sum()
    }

    /// Whether `slot` is kept here.
    #[cfg(test)]
    pub fn contains(&self, slot: SeqSlot) -> bool {
        self.kept.contains_key(&slot)
    }

    /// Keep `slot`, which holds the keys and values of `tokens` and reserves `reserved`
    /// positions. A slot holding less than one block is not worth keeping: the caller frees
    /// it (returns false). Kept slots whose tokens are a prefix of `tokens` can give nothing
    /// that `slot` cannot: they are returned for the caller to free.
    pub fn insert(
        &mut self,
        slot: SeqSlot,
        tokens: Vec<u32>,
        reserved: usize,
    ) -> (bool, Vec<SeqSlot>) {
        if tokens.len() < BLOCK_TOKENS {
            return (false, Vec::new());
        }
        let covered: Vec<SeqSlot> = self
            .kept
            .iter()
            .filter(|(_, k)| k.tokens.len() <= tokens.len() && tokens.starts_with(&k.tokens))
            .map(|(&s, _)| s)
            .collect();
        for &s in &covered {
            self.remove(s);
        }
        let chain = chain(&tokens);
        for &h in &chain {
            self.index.entry(h).or_default().insert(slot);
        }
        self.clock += 1;
        self.kept.insert(
            slot,
            Kept {
                tokens,
                reserved,
                chain,
                used: self.clock,
            },
        );
        (true, covered)
    }

    /// The kept slot sharing the longest prefix with `prompt`, if it shares at least one
    /// block; marks it used. The deepest block of the chain that some kept slot has picks the
    /// candidates; the match is counted on the tokens themselves and the longest wins (then
    /// the most recently used).
    pub fn lookup(&mut self, prompt: &[u32]) -> Option<Hit> {
        let hit = self.find(prompt)?;
        self.clock += 1;
        self.kept.get_mut(&hit.slot)?.used = self.clock;
        Some(hit)
    }

    /// Tokens the best kept slot shares with `prompt` (0: none), as [`Self::lookup`] would find
    /// it, without marking it used.
    pub fn longest(&self, prompt: &[u32]) -> usize {
        self.find(prompt).map_or(0, |h| h.tokens)
    }

    fn find(&self, prompt: &[u32]) -> Option<Hit> {
        let mut best: Option<&BTreeSet<SeqSlot>> = None;
        for h in chain(prompt) {
            match self.index.get(&h) {
                Some(slots) => best = Some(slots),
                None => break,
            }
        }
        // Of the slots reaching that block, the longest match on the tokens (past the last
        // common full block it can differ), then the most recently used.
        let (tokens, _, slot) = best?
            .iter()
            .filter_map(|&s| {
                let k = self.kept.get(&s)?;
                Some((common_prefix(&k.tokens, prompt), k.used, s))
            })
            .max()?;
        (tokens >= BLOCK_TOKENS).then_some(Hit { slot, tokens })
    }

    /// The least recently used kept slot other than `except`, no longer kept.
    pub fn pop_lru(&mut self, except: Option<SeqSlot>) -> Option<SeqSlot> {
        let slot = self
            .kept
            .iter()
            .filter(|(s, _)| Some(**s) != except)
            .min_by_key(|(_, k)| k.used)
            .map(|(&s, _)| s)?;
        self.remove(slot);
        Some(slot)
    }

    /// Forget `slot` (the caller frees it on the device).
    pub fn remove(&mut self, slot: SeqSlot) {
        let Some(k) = self.kept.remove(&slot) else {
            return;
        };
        for h in k.chain {
            if let Some(set) = self.index.get_mut(&h) {
                set.remove(&slot);
                if set.is_empty() {
                    self.index.remove(&h);
                }
            }
        }
    }

    /// Forget every kept slot and return them (the caller frees them).
    pub fn drain(&mut self) -> Vec<SeqSlot> {
        self.index.clear();
        self.kept.drain().map(|(s, _)| s).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(range: std::ops::Range<u32>) -> Vec<u32> {
        range.collect()
    }

    #[test]
    fn the_longest_match_wins_and_is_counted_on_tokens() {
        let mut c = PrefixCache::default();
        // Slot 1: 0..40 (two full blocks and 8 more); slot 2: 0..20 then 100..120.
        assert_eq!(c.insert(SeqSlot(1), toks(0..40), 64), (true, vec![]));
        let mut other = toks(0..20);
        other.extend(100..120);
        assert_eq!(c.insert(SeqSlot(2), other, 64), (true, vec![]));
        assert_eq!((c.slots(), c.tokens(), c.reserved_tokens()), (2, 80, 128));
        // Shares 37 tokens with slot 1 (beyond its two full blocks), 20 with slot 2.
        let mut prompt = toks(0..37);
        prompt.extend([7, 7, 7]);
        assert_eq!(
            c.lookup(&prompt),
            Some(Hit {
                slot: SeqSlot(1),
                tokens: 37
            })
        );
        // Both reach the first block only (the second block differs from both); slot 2
        // shares more tokens after it (24 against slot 1's 20), though slot 1 is more recent.
        let mut p24 = toks(0..20);
        p24.extend(100..104);
        p24.extend([1000; 30]);
        assert_eq!(
            c.lookup(&p24),
            Some(Hit {
                slot: SeqSlot(2),
                tokens: 24
            })
        );
        // Only the first block in common with both, equally long: the most recently used
        // (slot 2, just now) wins.
        let mut p2 = toks(0..16);
        p2.extend([1000; 30]);
        assert_eq!(
            c.lookup(&p2),
            Some(Hit {
                slot: SeqSlot(2),
                tokens: 16
            })
        );
        // Less than a block in common: a miss.
        assert_eq!(c.lookup(&toks(0..15)), None);
        let mut p3 = toks(0..10);
        p3.extend([5000; 30]);
        assert_eq!(c.lookup(&p3), None);
        assert_eq!(c.lookup(&toks(500..540)), None);
    }

    #[test]
    fn longest_finds_what_lookup_would_without_marking_it_used() {
        let mut c = PrefixCache::default();
        c.insert(SeqSlot(1), toks(0..32), 40);
        c.insert(SeqSlot(2), toks(200..232), 40);
        let mut prompt = toks(0..20);
        prompt.push(9);
        assert_eq!(c.longest(&prompt), 20);
        assert_eq!(c.longest(&toks(500..540)), 0);
        // Peeking left slot 1 the least recently used: it goes first.
        assert_eq!(c.pop_lru(None), Some(SeqSlot(1)));
        // A lookup marks it: slot 2 is then the older one.
        c.insert(SeqSlot(1), toks(0..32), 40);
        assert_eq!(c.lookup(&prompt).map(|h| h.tokens), Some(20));
        assert_eq!(c.pop_lru(None), Some(SeqSlot(2)));
    }

    #[test]
    fn eviction_is_least_recently_used_and_forgets_the_index() {
        let mut c = PrefixCache::default();
        c.insert(SeqSlot(1), toks(0..32), 40);
        c.insert(SeqSlot(2), toks(100..132), 40);
        c.insert(SeqSlot(3), toks(200..232), 40);
        // Slot 1 used again: slot 2 is now the oldest.
        assert!(c.lookup(&toks(0..32)).is_some());
        assert_eq!(c.pop_lru(None), Some(SeqSlot(2)));
        assert_eq!(c.lookup(&toks(100..132)), None);
        // `except` protects a slot being copied from.
        assert_eq!(c.pop_lru(Some(SeqSlot(3))), Some(SeqSlot(1)));
        assert_eq!(c.pop_lru(Some(SeqSlot(3))), None);
        assert_eq!(c.drain(), vec![SeqSlot(3)]);
        assert_eq!((c.slots(), c.tokens()), (0, 0));
        assert!(c.index.is_empty());
    }

    #[test]
    fn short_slots_are_not_kept_and_covered_ones_are_replaced() {
        let mut c = PrefixCache::default();
        assert_eq!(c.insert(SeqSlot(1), toks(0..15), 20), (false, vec![]));
        assert!(c.insert(SeqSlot(2), toks(0..20), 30).0);
        // Slot 3 holds everything slot 2 does and more: slot 2 goes.
        assert_eq!(
            c.insert(SeqSlot(3), toks(0..50), 60),
            (true, vec![SeqSlot(2)])
        );
        assert!(!c.contains(SeqSlot(2)) && c.contains(SeqSlot(3)));
        assert_eq!(c.lookup(&toks(0..20)).map(|h| h.slot), Some(SeqSlot(3)));
        c.remove(SeqSlot(3));
        assert!(c.index.is_empty());
    }
}
