//! The paged KV cache's bookkeeping on the host: a fixed pool of pages (allocated once at
//! startup, so a request never allocates device memory), slots that own whole pages, and the
//! page-table rows the attention kernels read.
//!
//! Device layout (see `kernels/attention.cu`): per layer, K then V, each
//! (n_pages, page_tokens, kv_dim) f32; page table (max_slots, pages_per_slot) i32.

use std::collections::BTreeMap;

use orcd_device::{EngineError, SeqSlot};

/// Tokens per page.
pub const PAGE_TOKENS: usize = 16;

/// One sequence's reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotPages {
    /// Page ids, in position order: position p lives in `pages[p / PAGE_TOKENS]`.
    pub pages: Vec<u32>,
    /// Positions reserved (`alloc_seq`'s max_tokens).
    pub max_tokens: usize,
    /// Positions already cached.
    pub len: usize,
}

/// The page pool and the slots that hold pages.
#[derive(Debug)]
pub struct PagePool {
    n_pages: usize,
    pages_per_slot: usize,
    /// Free page ids; taken from the end (the lowest ids are handed out first).
    free_pages: Vec<u32>,
    /// Free slot indices, taken from the end.
    free_slots: Vec<u32>,
    slots: BTreeMap<u32, SlotPages>,
}

impl PagePool {
    /// A pool of `n_pages` pages for up to `max_slots` sequences of up to `context` tokens.
    pub fn new(n_pages: usize, max_slots: usize, context: usize) -> PagePool {
        PagePool {
            n_pages,
            pages_per_slot: context.div_ceil(PAGE_TOKENS),
            free_pages: (0..n_pages as u32).rev().collect(),
            free_slots: (0..max_slots as u32).rev().collect(),
            slots: BTreeMap::new(),
        }
    }

    pub fn n_pages(&self) -> usize {
        self.n_pages
    }

    /// Page-table entries per slot (the context rounded up to whole pages).
    pub fn pages_per_slot(&self) -> usize {
        self.pages_per_slot
    }

    /// Tokens the free pages can hold.
    pub fn free_tokens(&self) -> usize {
        self.free_pages.len() * PAGE_TOKENS
    }

    /// Reserve pages for `max_tokens` positions (1..=context, checked by the caller).
    /// Fails with [`EngineError::KvCacheExhausted`] (taking nothing) when the pages or the
    /// slots run out.
    pub fn alloc(&mut self, max_tokens: usize) -> Result<(SeqSlot, &SlotPages), EngineError> {
        let need = max_tokens.div_ceil(PAGE_TOKENS);
        let exhausted = EngineError::KvCacheExhausted {
            needed_tokens: max_tokens,
            free_tokens: self.free_tokens(),
        };
        if need > self.free_pages.len() || need > self.pages_per_slot {
            return Err(exhausted);
        }
        let Some(slot) = self.free_slots.pop() else {
            return Err(exhausted);
        };
        let pages = self.free_pages.split_off(self.free_pages.len() - need);
        let pages: Vec<u32> = pages.into_iter().rev().collect();
        let entry = self.slots.entry(slot).or_insert(SlotPages {
            pages,
            max_tokens,
            len: 0,
        });
        Ok((SeqSlot(slot), entry))
    }

    /// Return a slot's pages; unknown slots are ignored.
    pub fn free(&mut self, slot: SeqSlot) {
        if let Some(s) = self.slots.remove(&slot.0) {
            self.free_pages.extend(s.pages.into_iter().rev());
            self.free_slots.push(slot.0);
        }
    }

    pub fn get(&self, slot: SeqSlot) -> Option<&SlotPages> {
        self.slots.get(&slot.0)
    }

    pub fn get_mut(&mut self, slot: SeqSlot) -> Option<&mut SlotPages> {
        self.slots.get_mut(&slot.0)
    }

    /// The page-table row of a slot: its pages, then zeros (never read: positions past the
    /// reservation are rejected before a step).
    pub fn table_row(&self, pages: &[u32]) -> Vec<i32> {
        let mut row = vec![0i32; self.pages_per_slot];
        for (r, &p) in row.iter_mut().zip(pages) {
            *r = p as i32;
        }
        row
    }

    /// Tokens reserved by all slots.
    pub fn reserved_tokens(&self) -> usize {
        (self.n_pages - self.free_pages.len()) * PAGE_TOKENS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_take_whole_pages_and_give_them_back() {
        let mut pool = PagePool::new(10, 4, 100);
        assert_eq!(pool.pages_per_slot(), 7);
        let (a, pa) = pool.alloc(17).unwrap();
        assert_eq!(pa.pages, vec![0, 1]);
        let (b, pb) = pool.alloc(16).unwrap();
        assert_eq!(pb.pages, vec![2]);
        assert_eq!(pool.free_tokens(), 7 * PAGE_TOKENS);
        pool.free(a);
        assert_eq!(pool.free_tokens(), 9 * PAGE_TOKENS);
        pool.free(a); // twice: no-op
        assert_eq!(pool.free_tokens(), 9 * PAGE_TOKENS);
        let (_, pc) = pool.alloc(32).unwrap();
        assert_eq!(pc.pages, vec![0, 1], "freed pages are reused first");
        assert_eq!(pool.get(b).unwrap().max_tokens, 16);
    }

    #[test]
    fn exhaustion_is_a_typed_error_and_takes_nothing() {
        let mut pool = PagePool::new(4, 2, 1000);
        let (_, _) = pool.alloc(40).unwrap(); // 3 pages
        match pool.alloc(40) {
            Err(EngineError::KvCacheExhausted {
                needed_tokens: 40,
                free_tokens: 16,
            }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(pool.free_tokens(), 16);
        let _ = pool.alloc(1).unwrap();
        // Out of slots, though pages would remain after a free.
        assert!(matches!(
            pool.alloc(1),
            Err(EngineError::KvCacheExhausted { .. })
        ));
    }

    #[test]
    fn table_rows_list_pages_in_position_order() {
        let mut pool = PagePool::new(8, 2, 64);
        let (_, p) = pool.alloc(40).unwrap();
        let pages = p.pages.clone();
        assert_eq!(pool.table_row(&pages), vec![0, 1, 2, 0]);
    }
}
