//! The CPU KV cache: a pool with a token budget, carved into per-sequence slots.
//!
//! `alloc` reserves a slot of up to `max_tokens` positions against the budget (the memory is
//! allocated zeroed, so the OS backs it only as positions are written); `free` gives the tokens
//! back. A slot holds every layer's keys and values for its positions, f32.

use std::collections::BTreeMap;

use crate::EngineError;
use crate::device::SeqSlot;

/// One sequence's cache.
#[derive(Debug)]
pub struct SlotCache {
    /// Positions this slot may hold.
    pub max_tokens: usize,
    /// Positions written so far (the next token's position).
    pub len: usize,
    /// (n_layers, max_tokens, kv_dim) keys, after RoPE.
    k: Vec<f32>,
    /// (n_layers, max_tokens, kv_dim) values.
    v: Vec<f32>,
    kv_dim: usize,
}

impl SlotCache {
    fn offset(&self, layer: usize, pos: usize) -> usize {
        (layer * self.max_tokens + pos) * self.kv_dim
    }

    /// (kv_dim) the key row of `layer` at `pos`, writable.
    pub fn k_mut(&mut self, layer: usize, pos: usize) -> &mut [f32] {
        let o = self.offset(layer, pos);
        &mut self.k[o..o + self.kv_dim]
    }

    /// (kv_dim) the value row of `layer` at `pos`, writable.
    pub fn v_mut(&mut self, layer: usize, pos: usize) -> &mut [f32] {
        let o = self.offset(layer, pos);
        &mut self.v[o..o + self.kv_dim]
    }

    /// (n, kv_dim) the keys of `layer` at positions `from..from + n`.
    pub fn keys(&self, layer: usize, from: usize, n: usize) -> &[f32] {
        let o = self.offset(layer, from);
        &self.k[o..o + n * self.kv_dim]
    }

    /// (n, kv_dim) the values of `layer` at positions `from..from + n`.
    pub fn values(&self, layer: usize, from: usize, n: usize) -> &[f32] {
        let o = self.offset(layer, from);
        &self.v[o..o + n * self.kv_dim]
    }
}

/// All slots, and the budget they share.
#[derive(Debug)]
pub struct KvCache {
    n_layers: usize,
    kv_dim: usize,
    budget_tokens: usize,
    reserved_tokens: usize,
    next_id: u32,
    slots: BTreeMap<SeqSlot, SlotCache>,
}

impl KvCache {
    pub fn new(n_layers: usize, kv_dim: usize, budget_tokens: usize) -> KvCache {
        KvCache {
            n_layers,
            kv_dim,
            budget_tokens,
            reserved_tokens: 0,
            next_id: 0,
            slots: BTreeMap::new(),
        }
    }

    /// Bytes one cached position takes (keys and values of every layer).
    pub fn bytes_per_token(&self) -> usize {
        2 * self.n_layers * self.kv_dim * size_of::<f32>()
    }

    /// Tokens not reserved by any slot.
    pub fn free_tokens(&self) -> usize {
        self.budget_tokens - self.reserved_tokens
    }

    /// Tokens reserved by all slots.
    pub fn reserved_tokens(&self) -> usize {
        self.reserved_tokens
    }

    /// Reserve a slot of `max_tokens` positions.
    pub fn alloc(&mut self, max_tokens: usize) -> Result<SeqSlot, EngineError> {
        if max_tokens > self.free_tokens() {
            return Err(EngineError::KvCacheExhausted {
                needed_tokens: max_tokens,
                free_tokens: self.free_tokens(),
            });
        }
        // Ids are not reused while a slot holds them; skip any still taken after a wrap.
        let mut id = SeqSlot(self.next_id);
        while self.slots.contains_key(&id) {
            id = SeqSlot(id.0.wrapping_add(1));
        }
        self.next_id = id.0.wrapping_add(1);
        let n = self.n_layers * max_tokens * self.kv_dim;
        self.slots.insert(
            id,
            SlotCache {
                max_tokens,
                len: 0,
                k: vec![0.0; n],
                v: vec![0.0; n],
                kv_dim: self.kv_dim,
            },
        );
        self.reserved_tokens += max_tokens;
        Ok(id)
    }

    /// Release a slot; unknown slots are ignored.
    pub fn free(&mut self, slot: SeqSlot) {
        if let Some(s) = self.slots.remove(&slot) {
            self.reserved_tokens -= s.max_tokens;
        }
    }

    pub fn get(&self, slot: SeqSlot) -> Option<&SlotCache> {
        self.slots.get(&slot)
    }

    pub fn get_mut(&mut self, slot: SeqSlot) -> Option<&mut SlotCache> {
        self.slots.get_mut(&slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_enforced_and_returned_on_free() {
        let mut kv = KvCache::new(2, 4, 10);
        let a = kv.alloc(6).unwrap();
        assert_eq!(kv.free_tokens(), 4);
        let err = kv.alloc(5).unwrap_err();
        assert!(matches!(
            err,
            EngineError::KvCacheExhausted {
                needed_tokens: 5,
                free_tokens: 4
            }
        ));
        assert_eq!(
            kv.free_tokens(),
            4,
            "a failed alloc leaves nothing reserved"
        );
        let b = kv.alloc(4).unwrap();
        assert_ne!(a, b);
        kv.free(a);
        kv.free(a);
        assert_eq!(kv.free_tokens(), 6);
        kv.free(b);
        assert_eq!(kv.free_tokens(), 10);
    }

    #[test]
    fn rows_of_layers_and_positions_do_not_overlap() {
        let mut kv = KvCache::new(2, 3, 8);
        let s = kv.alloc(4).unwrap();
        let slot = kv.get_mut(s).unwrap();
        slot.k_mut(1, 2).copy_from_slice(&[1.0, 2.0, 3.0]);
        slot.v_mut(0, 3).copy_from_slice(&[4.0, 5.0, 6.0]);
        assert_eq!(slot.keys(1, 2, 1), &[1.0, 2.0, 3.0]);
        assert_eq!(slot.keys(0, 0, 4), &[0.0; 12]);
        assert_eq!(slot.values(0, 2, 2), &[0.0, 0.0, 0.0, 4.0, 5.0, 6.0]);
    }
}
