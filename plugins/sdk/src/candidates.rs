//! Helpers over candidate lists (best first, as [`crate::Logits::top_k`] returns them): softmax
//! weights under a temperature, the top-p and min-p cut-offs, and the seeded draw.
//!
//! Weights are relative to the best candidate (the best has weight 1, so no normalizer over the
//! whole vocabulary is needed); NaN and -inf logits get weight 0 and are never drawn.

use crate::{Candidate, Rng};

/// Relative probabilities `exp((logit - best) / temperature)` of candidates sorted best first.
///
/// `temperature` must be positive. A NaN or -inf logit gets 0. If the best logit is +inf, the
/// +inf candidates share the mass equally and every other one gets 0.
pub fn weights(cands: &[Candidate], temperature: f32) -> Vec<f64> {
    let best = cands
        .iter()
        .map(|c| c.logit)
        .filter(|l| !l.is_nan())
        .fold(f32::NEG_INFINITY, f32::max);
    let inv_t = 1.0 / temperature;
    cands
        .iter()
        .map(|c| {
            let l = c.logit;
            if l.is_nan() || l == f32::NEG_INFINITY {
                0.0
            } else if best == f32::INFINITY {
                if l == f32::INFINITY { 1.0 } else { 0.0 }
            } else {
                // f32 `exp` is several times cheaper than f64 in Wasm and exact enough for
                // relative weights (the difference to the best is at most a few hundred).
                f64::from(((l - best) * inv_t).exp())
            }
        })
        .collect()
}

/// Normalised probabilities of the candidates alone (they sum to 1 unless all weights are 0).
pub fn softmax(cands: &[Candidate], temperature: f32) -> Vec<f64> {
    let mut w = weights(cands, temperature);
    let total: f64 = w.iter().sum();
    if total > 0.0 {
        for x in &mut w {
            *x /= total;
        }
    }
    w
}

/// Length of the top-p (nucleus) prefix: the fewest leading candidates whose weights reach
/// `top_p * total`, at least 1. `None` when the weights given never reach it (the nucleus
/// extends past the candidates).
pub fn top_p_len(weights: &[f64], total: f64, top_p: f32) -> Option<usize> {
    let target = top_p as f64 * total;
    let mut cum = 0.0;
    for (i, w) in weights.iter().enumerate() {
        cum += w;
        if cum >= target {
            return Some(i + 1);
        }
    }
    None
}

/// Length of the min-p prefix: the leading candidates whose weight is at least `min_p` times the
/// best one's. At least 1 when the best weight is positive.
pub fn min_p_len(weights: &[f64], min_p: f32) -> usize {
    let Some(&best) = weights.first() else {
        return 0;
    };
    let floor = best * min_p as f64;
    weights
        .iter()
        .take_while(|&&w| w >= floor && w > 0.0)
        .count()
}

/// Draw an index with probability proportional to `weights`; `None` when all weights are 0.
pub fn draw(weights: &[f64], rng: &mut Rng) -> Option<usize> {
    let total: f64 = weights.iter().sum();
    if total.is_nan() || total <= 0.0 || total.is_infinite() {
        return None;
    }
    let r = rng.next_f64() * total;
    let mut cum = 0.0;
    let mut last_positive = None;
    for (i, &w) in weights.iter().enumerate() {
        if w <= 0.0 {
            continue;
        }
        cum += w;
        last_positive = Some(i);
        if r < cum {
            return Some(i);
        }
    }
    // Rounding can leave r a hair above the final sum: the last positive weight takes it.
    last_positive
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(logits: &[f32]) -> Vec<Candidate> {
        logits
            .iter()
            .enumerate()
            .map(|(i, &logit)| Candidate {
                id: i as u32,
                logit,
            })
            .collect()
    }

    #[test]
    fn weights_are_relative_to_the_best() {
        let w = weights(&cands(&[2.0, 1.0, f32::NEG_INFINITY, f32::NAN]), 1.0);
        assert_eq!(w[0], 1.0);
        assert!((w[1] - (-1.0f64).exp()).abs() < 1e-6);
        assert_eq!(&w[2..], &[0.0, 0.0]);
    }

    #[test]
    fn temperature_sharpens_and_flattens() {
        let c = cands(&[1.0, 0.0]);
        let cold = softmax(&c, 0.1);
        let hot = softmax(&c, 10.0);
        assert!(cold[0] > 0.99);
        assert!((hot[0] - 0.5).abs() < 0.03);
    }

    #[test]
    fn positive_infinity_takes_all_mass() {
        let w = weights(&cands(&[f32::INFINITY, f32::INFINITY, 3.0]), 1.0);
        assert_eq!(w, [1.0, 1.0, 0.0]);
    }

    #[test]
    fn top_p_keeps_the_smallest_sufficient_prefix() {
        let w = [0.5, 0.3, 0.15, 0.05];
        assert_eq!(top_p_len(&w, 1.0, 0.5), Some(1));
        assert_eq!(top_p_len(&w, 1.0, 0.6), Some(2));
        assert_eq!(top_p_len(&w, 1.0, 0.0), Some(1));
        assert_eq!(top_p_len(&w, 1.0, 1.0), Some(4));
        assert_eq!(top_p_len(&w, 2.0, 0.9), None);
    }

    #[test]
    fn min_p_is_relative_to_the_best() {
        let w = [1.0, 0.5, 0.25, 0.125, 0.0];
        assert_eq!(min_p_len(&w, 0.25), 3);
        assert_eq!(min_p_len(&w, 0.0), 4);
        assert_eq!(min_p_len(&w, 1.0), 1);
    }

    #[test]
    fn draw_follows_the_weights_and_skips_zeros() {
        let mut rng = Rng::new(3);
        let w = [0.0, 3.0, 0.0, 1.0];
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[draw(&w, &mut rng).unwrap()] += 1;
        }
        assert_eq!(counts[0] + counts[2], 0);
        // Expect 30000 / 10000; allow well over 5 standard deviations (~87).
        assert!((29_400..30_600).contains(&counts[1]), "{counts:?}");
        assert_eq!(draw(&[0.0, 0.0], &mut rng), None);
        assert_eq!(draw(&[], &mut rng), None);
    }
}
