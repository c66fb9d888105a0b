//! The logits of one sequence as a sampler sees them: a handle to a row that stays on the host
//! (on the GPU for the CUDA backend), with the few operations a sampler needs.
//!
//! The point is per-token cost: ask for [`Logits::argmax`] or [`Logits::top_k`] candidates (a
//! few hundred, best first) rather than copying the whole vocabulary with [`Logits::full`].
//!
//! What each call costs a plugin, measured with `cargo bench -p orcd-plugin-host --bench
//! plugin_cost` (128k vocabulary, the host's own work left out; 2-core VM, 2026-12-07, median
//! µs of a `sample()` making that one call; `docs/plugins.md` has the table):
//!
//! | call | µs |
//! |---|---|
//! | `argmax()` | 0.9 |
//! | `top_k(1)` / `top_k(64)` / `top_k(256)` / `top_k(1024)` | 1.1 / 1.1 / 1.2 / 1.5 |
//! | `penalize(64 ids)` then `argmax()` | 1.2 |
//! | `full()` | 565 |
//!
//! About 1 µs a call; a whole sampler at 256 candidates is 5-9 µs.

use std::cell::RefCell;

use crate::Error;

/// A token and its logit.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Candidate {
    pub id: u32,
    pub logit: f32,
}

/// Host-side operations on one logits row.
pub trait Logits {
    /// Length of the row.
    fn vocab_size(&self) -> u32;
    /// The best token (NaN never wins; ties go to the lower id). About 1 µs a call.
    fn argmax(&self) -> Result<Candidate, Error>;
    /// The `k` best tokens, best first (ties: lower id first), NaN excluded; fewer than `k` when
    /// the row holds fewer non-NaN logits. About 1 µs, 1.2 µs for 256 candidates.
    fn top_k(&self, k: u32) -> Result<Vec<Candidate>, Error>;
    /// Repetition / presence / frequency penalties over `history`, in place, llama.cpp's way: for
    /// each distinct token with count c, a positive logit is divided by `repeat` (a negative one
    /// multiplied), then `c * frequency + presence` is subtracted.
    fn penalize(
        &self,
        history: &[u32],
        repeat: f32,
        frequency: f32,
        presence: f32,
    ) -> Result<(), Error>;
    /// The whole row, copied into the guest (expensive: ~570 µs at 128k tokens; avoid on the
    /// per-token path).
    fn full(&self) -> Result<Vec<f32>, Error>;
}

/// A logits row held in guest memory: the reference implementation of [`Logits`], used by unit
/// tests and by samplers that already copied a row.
#[derive(Clone, Debug)]
pub struct RowLogits {
    row: RefCell<Vec<f32>>,
}

impl RowLogits {
    pub fn new(row: Vec<f32>) -> Self {
        RowLogits {
            row: RefCell::new(row),
        }
    }
}

impl Logits for RowLogits {
    fn vocab_size(&self) -> u32 {
        self.row.borrow().len() as u32
    }

    fn argmax(&self) -> Result<Candidate, Error> {
        let row = self.row.borrow();
        let mut best: Option<Candidate> = None;
        for (i, &v) in row.iter().enumerate() {
            if v.is_nan() {
                continue;
            }
            if best.is_none_or(|b| v > b.logit) {
                best = Some(Candidate {
                    id: i as u32,
                    logit: v,
                });
            }
        }
        best.ok_or(Error::NoValidLogits)
    }

    fn top_k(&self, k: u32) -> Result<Vec<Candidate>, Error> {
        let row = self.row.borrow();
        let mut all: Vec<Candidate> = row
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_nan())
            .map(|(i, &logit)| Candidate {
                id: i as u32,
                logit,
            })
            .collect();
        all.sort_by(best_first);
        all.truncate(k as usize);
        Ok(all)
    }

    fn penalize(
        &self,
        history: &[u32],
        repeat: f32,
        frequency: f32,
        presence: f32,
    ) -> Result<(), Error> {
        let mut row = self.row.borrow_mut();
        let mut counts: Vec<(u32, u32)> = Vec::new();
        for &t in history {
            if (t as usize) >= row.len() {
                continue;
            }
            match counts.iter_mut().find(|(id, _)| *id == t) {
                Some((_, c)) => *c += 1,
                None => counts.push((t, 1)),
            }
        }
        for (t, c) in counts {
            let v = &mut row[t as usize];
            if repeat != 1.0 && repeat > 0.0 {
                *v = if *v > 0.0 { *v / repeat } else { *v * repeat };
            }
            *v -= c as f32 * frequency + presence;
        }
        Ok(())
    }

    fn full(&self) -> Result<Vec<f32>, Error> {
        Ok(self.row.borrow().clone())
    }
}

/// Order of candidates: higher logit first, then lower id.
pub fn best_first(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_logits_follow_the_host_contract() {
        let l = RowLogits::new(vec![0.5, 2.0, f32::NAN, 2.0, -1.0]);
        assert_eq!(l.argmax().unwrap(), Candidate { id: 1, logit: 2.0 });
        let ids: Vec<u32> = l.top_k(3).unwrap().iter().map(|c| c.id).collect();
        assert_eq!(ids, [1, 3, 0]);
        assert_eq!(l.top_k(10).unwrap().len(), 4);
        l.penalize(&[0, 4, 4], 2.0, 0.5, 0.25).unwrap();
        let r = l.full().unwrap();
        assert_eq!(r[0], 0.5 / 2.0 - 0.75);
        assert_eq!(r[4], -2.0 - 1.25);
        assert_eq!(r[1], 2.0);
    }

    #[test]
    fn all_nan_row_has_no_argmax() {
        let l = RowLogits::new(vec![f32::NAN; 4]);
        assert_eq!(l.argmax(), Err(Error::NoValidLogits));
        assert!(l.top_k(4).unwrap().is_empty());
    }
}
