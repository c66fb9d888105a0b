//! The CPU KV cache: a pool with a byte budget, carved into per-sequence slots.
//!
//! `alloc` reserves a slot of up to `max_tokens` positions against the budget (the memory is
//! allocated zeroed, so the OS backs it only as positions are written); `free` gives the bytes
//! back. A slot holds every layer's keys and values in the cache's [`KvType`]. A sliding-window
//! layer keeps only its window: `min(window, max_tokens)` rows used as a ring (position `p` at
//! row `p % rows`), so Gemma 3's five local layers of six, or Mistral's every layer, cost the
//! window and not the context; the budget counts those real bytes.

use std::collections::BTreeMap;

use orcd_device::EngineError;
use orcd_device::SeqSlot;
use orcd_model::kv_type::KvType;

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

/// A prefix copy of one layer: positions `0..n_tokens` from a ring of `cap_from` rows into
/// one of `cap_to` rows (a full layer is a ring that never wraps), rows of `unit` elements.
struct Ring {
    cap_from: usize,
    cap_to: usize,
    n_tokens: usize,
    unit: usize,
}

impl Ring {
    /// Copy the positions the destination keeps (its last `cap_to`), position `p` from row
    /// `p % cap_from` to row `p % cap_to`; one contiguous copy when neither ring wraps.
    fn copy<T: Copy>(&self, from: &[T], to: &mut [T]) {
        let (n, u) = (self.n_tokens, self.unit);
        if self.cap_from >= n && self.cap_to >= n {
            to[..n * u].copy_from_slice(&from[..n * u]);
            return;
        }
        for pos in n.saturating_sub(self.cap_to)..n {
            let (a, b) = (pos % self.cap_from, pos % self.cap_to);
            to[b * u..(b + 1) * u].copy_from_slice(&from[a * u..(a + 1) * u]);
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

    /// Whether slot `from` still keeps, on every layer, the positions a slot of `to_max_tokens`
    /// positions holds after a prefix of `n_tokens`: the last `rows` of them, `rows` being
    /// what the new slot keeps of the layer (all `n_tokens` on a full layer). A full layer
    /// keeps every position; a window layer's ring of `cap` rows holds only the last `cap`
    /// positions written (`len - cap ..`), so a shorter prefix that needs older ones fails.
    pub fn prefix_kept(&self, from: SeqSlot, n_tokens: usize, to_max_tokens: usize) -> bool {
        let Some(src) = self.slots.get(&from) else {
            return false;
        };
        n_tokens <= src.len
            && (0..self.kept.len()).all(|l| {
                let (cap_old, cap_new) = (src.layers[l].0, self.layer_rows(l, to_max_tokens));
                n_tokens.saturating_sub(cap_new) >= src.len.saturating_sub(cap_old)
            })
    }

    /// Copy positions `0..n_tokens` of `from` into the empty slot `to` (checked by the caller:
    /// both known, distinct, `to` empty and long enough), every layer's keys and values, as
    /// their bytes: `to` then reads exactly what `from` wrote. On a window layer only the
    /// positions `to` keeps are copied, each to its own ring row. Fails (copying nothing)
    /// when `from` no longer keeps them ([`KvCache::prefix_kept`]).
    pub fn copy_prefix(
        &mut self,
        from: SeqSlot,
        to: SeqSlot,
        n_tokens: usize,
    ) -> Result<(), EngineError> {
        let to_max = self.slots.get(&to).map_or(0, |s| s.max_tokens);
        if !self.prefix_kept(from, n_tokens, to_max) {
            return Err(EngineError::InvalidInput(format!(
                "slot {}: a window layer no longer keeps the positions a prefix of {n_tokens} \
                 tokens needs",
                from.0
            )));
        }
        let mut dst = self
            .slots
            .remove(&to)
            .ok_or_else(|| EngineError::InvalidInput(format!("unknown KV slot {}", to.0)))?;
        let src = &self.slots[&from];
        let unit = match self.kv_type {
            KvType::F32 => self.kv_dim,
            t => t.row_bytes(self.kv_dim),
        };
        for ((cap_old, src_rows), (cap_new, dst_rows)) in src.layers.iter().zip(&mut dst.layers) {
            let ring = Ring {
                cap_from: *cap_old,
                cap_to: *cap_new,
                n_tokens,
                unit,
            };
            match (src_rows, dst_rows) {
                (Rows::F32 { k: ka, v: va }, Rows::F32 { k: kb, v: vb }) => {
                    ring.copy(ka, kb);
                    ring.copy(va, vb);
                }
                (Rows::Bytes { k: ka, v: va }, Rows::Bytes { k: kb, v: vb }) => {
                    ring.copy(ka, kb);
                    ring.copy(va, vb);
                }
                _ => unreachable!("every slot of a cache keeps its rows in the cache's type"),
            }
        }
        dst.len = n_tokens;
        self.slots.insert(to, dst);
        Ok(())
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

    #[test]
    fn a_copied_prefix_reads_back_the_same_bits_and_nothing_more() {
        // Layer 0 keeps everything, layer 1 a window of 4 (a ring).
        for ty in KvType::ALL {
            let mut kv = KvCache::new(ty, 32, vec![None, Some(4)], 100, 1 << 20);
            let row = |p: usize, l: usize| -> Vec<f32> {
                (0..32).map(|i| (p * 7 + l * 3 + i) as f32 / 8.0).collect()
            };
            let (mut k, mut v) = (vec![0.0; 32], vec![0.0; 32]);
            let (mut k2, mut v2) = (vec![0.0; 32], vec![0.0; 32]);
            // A short source: 3 positions, no ring wrapped; any prefix of it can be copied.
            let a = kv.alloc(20).unwrap();
            for p in 0..3 {
                for l in 0..2 {
                    kv.get_mut(a)
                        .unwrap()
                        .store(l, p, &row(p, l), &row(p + 50, l));
                }
            }
            kv.get_mut(a).unwrap().len = 3;
            let b = kv.alloc(20).unwrap();
            assert!(kv.prefix_kept(a, 2, 20) && !kv.prefix_kept(a, 4, 20));
            kv.copy_prefix(a, b, 2).unwrap();
            assert_eq!(kv.get(b).unwrap().len, 2);
            for l in 0..2 {
                for p in 0..2 {
                    kv.get(a).unwrap().load(l, p, &mut k, &mut v);
                    kv.get(b).unwrap().load(l, p, &mut k2, &mut v2);
                    assert!(k == k2 && v == v2, "{ty} layer {l} position {p}");
                }
                // Position 2 was not copied: still zero in the new slot.
                kv.get(b).unwrap().load(l, 2, &mut k2, &mut v2);
                assert!(k2.iter().chain(&v2).all(|&x| x == 0.0), "{ty} layer {l}");
            }
            // A long source: 10 positions, the window ring holds only 6..10. A prefix of 10
            // copies (the new ring gets 6..10 in its own rows); one of 8 needs 4, 5: refused.
            let c = kv.alloc(20).unwrap();
            for p in 0..10 {
                for l in 0..2 {
                    kv.get_mut(c)
                        .unwrap()
                        .store(l, p, &row(p, l), &row(p + 50, l));
                }
            }
            kv.get_mut(c).unwrap().len = 10;
            assert!(!kv.prefix_kept(c, 8, 20) && kv.prefix_kept(c, 10, 20));
            let d = kv.alloc(20).unwrap();
            assert!(matches!(
                kv.copy_prefix(c, d, 8),
                Err(EngineError::InvalidInput(_))
            ));
            assert_eq!(kv.get(d).unwrap().len, 0, "a refused copy copies nothing");
            kv.copy_prefix(c, d, 10).unwrap();
            for (l, positions) in [(0, 0..10), (1, 6..10)] {
                for p in positions {
                    kv.get(c).unwrap().load(l, p, &mut k, &mut v);
                    kv.get(d).unwrap().load(l, p, &mut k2, &mut v2);
                    assert!(k == k2 && v == v2, "{ty} layer {l} position {p}");
                }
            }
            assert!(!kv.prefix_kept(SeqSlot(999), 1, 20));
        }
    }
}
