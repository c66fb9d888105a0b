//! The CPU KV cache: a pool with a byte budget, carved into per-sequence slots.
//!
//! `alloc` reserves a slot of up to `max_tokens` positions against the budget (the memory is
//! allocated zeroed, so the OS backs it only as positions are written); `free` gives the bytes
//! back. A slot holds every layer's keys and values in the cache's [`KvType`]. A sliding-window
//! layer keeps only its window: `min(window, max_tokens)` rows used as a ring (position `p` at
//! row `p % rows`), so Gemma 3's five local layers of six, or Mistral's every layer, cost the
//! window and not the context; the budget counts those real bytes.

use std::collections::BTreeMap;

use crate::EngineError;
use crate::device::SeqSlot;
use crate::kv_type::KvType;

/// One layer's rows, K and V: `(rows, kv_dim)` each, f32 as they are or the type's bytes.
#[derive(Debug)]
enum Rows {
    F32 { k: Vec<f32>, v: Vec<f32> },
    Bytes { k: Vec<u8>, v: Vec<u8> },
}

/// One sequence's cache.
#[derive(Debug)]
pub struct SlotCache {
    /// Positions this slot may hold.
    pub max_tokens: usize,
    /// Positions written so far (the next token's position).
    pub len: usize,
    kv_type: KvType,
    kv_dim: usize,
    /// Per layer: rows kept (`max_tokens`, or the window) and the rows themselves.
    layers: Vec<(usize, Rows)>,
}

impl SlotCache {
    /// Store the key and value rows `k, v (kv_dim)` of `layer` at `pos`.
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let (ty, kv_dim) = (self.kv_type, self.kv_dim);
        let (cap, rows) = &mut self.layers[layer];
        let r = pos % *cap;
        match rows {
            Rows::F32 { k: kc, v: vc } => {
                kc[r * kv_dim..(r + 1) * kv_dim].copy_from_slice(k);
                vc[r * kv_dim..(r + 1) * kv_dim].copy_from_slice(v);
            }
            Rows::Bytes { k: kc, v: vc } => {
                let rb = ty.row_bytes(kv_dim);
                ty.store_row(k, &mut kc[r * rb..(r + 1) * rb]);
                ty.store_row(v, &mut vc[r * rb..(r + 1) * rb]);
            }
        }
    }

    /// Read the key and value rows of `layer` at `pos` (still kept) into `k, v (kv_dim)`.
    pub fn load(&self, layer: usize, pos: usize, k: &mut [f32], v: &mut [f32]) {
        let (ty, kv_dim) = (self.kv_type, self.kv_dim);
        let (cap, rows) = &self.layers[layer];
        let r = pos % *cap;
        match rows {
            Rows::F32 { k: kc, v: vc } => {
                k.copy_from_slice(&kc[r * kv_dim..(r + 1) * kv_dim]);
                v.copy_from_slice(&vc[r * kv_dim..(r + 1) * kv_dim]);
            }
            Rows::Bytes { k: kc, v: vc } => {
                let rb = ty.row_bytes(kv_dim);
                ty.load_row(&kc[r * rb..(r + 1) * rb], k);
                ty.load_row(&vc[r * rb..(r + 1) * rb], v);
            }
        }
    }

    /// `(max_tokens, kv_dim)` keys and values of `layer`, position `p` at row `p`, when the
    /// layer keeps every position in f32 (the attention then reads the cache in place).
    pub fn direct(&self, layer: usize) -> Option<(&[f32], &[f32])> {
        match &self.layers[layer] {
            (cap, Rows::F32 { k, v }) if *cap == self.max_tokens => {
                Some((k.as_slice(), v.as_slice()))
            }
            _ => None,
        }
    }
}

/// All slots, and the budget they share.
#[derive(Debug)]
pub struct KvCache {
    kv_type: KvType,
    kv_dim: usize,
    /// Per layer: the window it keeps, `None` for every position.
    kept: Vec<Option<usize>>,
    /// Longest slot (the model's context).
    max_slot_tokens: usize,
    budget_bytes: usize,
    reserved_bytes: usize,
    next_id: u32,
    slots: BTreeMap<SeqSlot, SlotCache>,
}

impl KvCache {
    /// A cache of `budget_bytes` for rows of `kv_dim` values in `kv_type`; `kept[l]` is the
    /// window layer `l` keeps (`None`: every position); slots of up to `max_slot_tokens`.
    pub fn new(
        kv_type: KvType,
        kv_dim: usize,
        kept: Vec<Option<usize>>,
        max_slot_tokens: usize,
        budget_bytes: usize,
    ) -> KvCache {
        KvCache {
            kv_type,
            kv_dim,
            kept,
            max_slot_tokens,
            budget_bytes,
            reserved_bytes: 0,
            next_id: 0,
            slots: BTreeMap::new(),
        }
    }

    pub fn kv_type(&self) -> KvType {
        self.kv_type
    }

    /// Values per row (one layer's keys, or values, at one position).
    pub fn kv_dim(&self) -> usize {
        self.kv_dim
    }

    /// Whether layer `l` is read in place (f32, every position kept).
    pub fn direct_layer(&self, l: usize) -> bool {
        self.kv_type == KvType::F32 && self.kept[l].is_none()
    }

    /// Bytes one cached position takes on a layer that keeps every position (keys and values).
    pub fn row_pair_bytes(&self) -> usize {
        2 * self.kv_type.row_bytes(self.kv_dim)
    }

    /// Rows layer `l` keeps for a slot of `max_tokens` positions.
    fn layer_rows(&self, l: usize, max_tokens: usize) -> usize {
        self.kept[l].map_or(max_tokens, |w| w.min(max_tokens))
    }

    /// Bytes a slot of `max_tokens` positions takes.
    pub fn slot_bytes(&self, max_tokens: usize) -> usize {
        let rows: usize = (0..self.kept.len())
            .map(|l| self.layer_rows(l, max_tokens))
            .sum();
        rows * self.row_pair_bytes()
    }

    /// Bytes not reserved by any slot.
    pub fn free_bytes(&self) -> usize {
        self.budget_bytes - self.reserved_bytes
    }

    /// Bytes reserved by all slots.
    pub fn reserved_bytes(&self) -> usize {
        self.reserved_bytes
    }

    /// The longest slot the free bytes hold. When every layer slides, a slot's cost stops
    /// growing at the window: then any length up to the context fits once the window does.
    pub fn free_tokens(&self) -> usize {
        let free = self.free_bytes();
        let per_row = self.row_pair_bytes().max(1);
        let upper = if self.kept.iter().any(Option::is_none) {
            free / per_row
        } else {
            (free / per_row).max(self.max_slot_tokens)
        };
        // slot_bytes grows with max_tokens: the largest n <= upper with slot_bytes(n) <= free.
        let (mut lo, mut hi) = (0, upper);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.slot_bytes(mid) <= free {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }

    /// Reserve a slot of `max_tokens` positions.
    pub fn alloc(&mut self, max_tokens: usize) -> Result<SeqSlot, EngineError> {
        let bytes = self.slot_bytes(max_tokens);
        if bytes > self.free_bytes() {
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
        let layers = (0..self.kept.len())
            .map(|l| {
                let cap = self.layer_rows(l, max_tokens);
                let rows = match self.kv_type {
                    KvType::F32 => Rows::F32 {
                        k: vec![0.0; cap * self.kv_dim],
                        v: vec![0.0; cap * self.kv_dim],
                    },
                    t => Rows::Bytes {
                        k: vec![0; cap * t.row_bytes(self.kv_dim)],
                        v: vec![0; cap * t.row_bytes(self.kv_dim)],
                    },
                };
                (cap, rows)
            })
            .collect();
        self.slots.insert(
            id,
            SlotCache {
                max_tokens,
                len: 0,
                kv_type: self.kv_type,
                kv_dim: self.kv_dim,
                layers,
            },
        );
        self.reserved_bytes += bytes;
        Ok(id)
    }

    /// Release a slot; unknown slots are ignored.
    pub fn free(&mut self, slot: SeqSlot) {
        if let Some(s) = self.slots.remove(&slot) {
            self.reserved_bytes -= self.slot_bytes(s.max_tokens);
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

    /// Two full layers of kv_dim 4 in f32: 64 bytes a position.
    fn cache(tokens: usize) -> KvCache {
        KvCache::new(KvType::F32, 4, vec![None, None], 64, tokens * 64)
    }

    #[test]
    fn budget_is_enforced_and_returned_on_free() {
        let mut kv = cache(10);
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
        for ty in KvType::ALL {
            let mut kv = KvCache::new(ty, 32, vec![None, None], 8, 1 << 20);
            let s = kv.alloc(4).unwrap();
            let slot = kv.get_mut(s).unwrap();
            let a: Vec<f32> = (0..32).map(|i| i as f32).collect();
            let b: Vec<f32> = (0..32).map(|i| -(i as f32) / 4.0).collect();
            slot.store(1, 2, &a, &b);
            slot.store(0, 3, &b, &a);
            let (mut k, mut v) = (vec![0.0; 32], vec![0.0; 32]);
            slot.load(1, 2, &mut k, &mut v);
            let mut want = (a.clone(), b.clone());
            ty.round_trip(&mut want.0, &mut Vec::new());
            ty.round_trip(&mut want.1, &mut Vec::new());
            assert_eq!((&k, &v), (&want.0, &want.1), "{ty}");
            slot.load(0, 2, &mut k, &mut v);
            assert!(k.iter().chain(&v).all(|&x| x == 0.0), "{ty}");
            slot.load(0, 3, &mut k, &mut v);
            assert_eq!((&k, &v), (&want.1, &want.0), "{ty}");
            assert_eq!(slot.direct(0).is_some(), ty == KvType::F32);
        }
    }

    #[test]
    fn sliding_layers_keep_and_charge_only_their_window() {
        // Layer 0 keeps everything, layer 1 a window of 4; kv_dim 32 in f16: 128 bytes a pair.
        let mut kv = KvCache::new(KvType::F16, 32, vec![None, Some(4)], 100, 128 * 30);
        assert_eq!(kv.slot_bytes(3), 128 * 6);
        assert_eq!(kv.slot_bytes(20), 128 * 24);
        // 30 rows: 26 + 4.
        assert_eq!(kv.free_tokens(), 26);
        let s = kv.alloc(20).unwrap();
        assert_eq!(kv.reserved_bytes(), 128 * 24);
        assert_eq!(kv.free_tokens(), 3);
        let slot = kv.get_mut(s).unwrap();
        let row = |p: usize| vec![p as f32; 32];
        for p in 0..10 {
            slot.store(1, p, &row(p), &row(p));
        }
        let (mut k, mut v) = (vec![0.0; 32], vec![0.0; 32]);
        for p in 6..10 {
            slot.load(1, p, &mut k, &mut v);
            assert_eq!(k, row(p), "the window's last positions are kept");
        }
        assert!(slot.direct(1).is_none());
        kv.free(s);
        assert_eq!(kv.free_bytes(), 128 * 30);
        // Every layer sliding (Mistral): any length up to the context fits the window's bytes.
        let kv = KvCache::new(KvType::F32, 32, vec![Some(4); 2], 100, 256 * 8);
        assert_eq!(kv.free_tokens(), 100);
    }
}
