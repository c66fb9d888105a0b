//! The standard sampling policy, as plain Rust over the SDK's [`Logits`] view.

use orcd_plugin_sdk::candidates::{draw, min_p_len, top_p_len, weights};
use orcd_plugin_sdk::{Candidate, Error, Logits, Rng, Sampler, SamplerParams, best_first};

/// Candidates fetched when `top_k` is 0: the per-token cost stays a few microseconds, and the
/// tokens past the 256th carry a negligible share of a language model's mass at the usual
/// temperatures. A request can change it with the extra parameter `candidates` (0 = the whole
/// vocabulary).
pub const DEFAULT_WINDOW: u32 = 256;

/// How much the window grows each time min-p keeps every candidate fetched.
const WIDEN: u32 = 8;

/// The standard sampler's state for one request.
#[derive(Debug)]
pub struct Standard {
    params: SamplerParams,
    window: u32,
    rng: Rng,
}

impl Sampler for Standard {
    const NAME: &'static str = "standard";
    const DESCRIPTION: &'static str =
        "penalties, temperature, top-k, top-p, min-p (llama.cpp order), seeded draw";

    fn new(params: &SamplerParams) -> Result<Self, Error> {
        params.validate()?;
        params.only_extras(&["candidates"])?;
        let window = match params.extra("candidates") {
            None => DEFAULT_WINDOW,
            Some(n) if n.is_finite() && n >= 0.0 && n <= u32::MAX as f64 && n.fract() == 0.0 => {
                if n == 0.0 { u32::MAX } else { n as u32 }
            }
            Some(n) => {
                return Err(Error::InvalidParam {
                    name: "candidates",
                    message: format!("must be a whole number >= 0, got {n}"),
                });
            }
        };
        Ok(Standard {
            params: params.clone(),
            window,
            rng: Rng::new(params.seed),
        })
    }

    fn sample(&mut self, logits: &dyn Logits, history: &[u32]) -> Result<u32, Error> {
        let p = &self.params;
        let vocab = logits.vocab_size();
        if vocab == 0 {
            return Err(Error::NoValidLogits);
        }
        if p.penalties_active() {
            let window = p.penalized_tokens(history);
            if !window.is_empty() {
                logits.penalize(
                    window,
                    p.repetition_penalty,
                    p.frequency_penalty,
                    p.presence_penalty,
                )?;
            }
        }
        if p.temperature == 0.0 || p.top_k == 1 {
            let best = logits.argmax()?;
            if best.id >= vocab || best.logit.is_nan() || best.logit == f32::NEG_INFINITY {
                return Err(Error::NoValidLogits);
            }
            return Ok(best.id);
        }
        let (cands, w) = self.candidates(logits, vocab)?;
        let keep = self.kept(&w);
        let i = draw(&w[..keep], &mut self.rng).ok_or(Error::NoValidLogits)?;
        Ok(cands[i].id)
    }
}

impl Standard {
    /// The candidates the filters work on, best first, with their temperature weights
    /// (relative to the best). With `top_k` set they are exactly the top-k tokens; otherwise
    /// the window, widened while min-p would keep all of it (so the min-p set is exact).
    fn candidates(
        &self,
        logits: &dyn Logits,
        vocab: u32,
    ) -> Result<(Vec<Candidate>, Vec<f64>), Error> {
        let p = &self.params;
        let mut k = if p.top_k > 0 { p.top_k } else { self.window }.min(vocab);
        loop {
            let mut cands = logits.top_k(k)?;
            let exhausted = (cands.len() as u32) < k || k >= vocab;
            // Host output is checked, not trusted: ids in range, NaN out, best first.
            cands.retain(|c| c.id < vocab && !c.logit.is_nan());
            if !cands.is_sorted_by(|a, b| best_first(a, b).is_le()) {
                cands.sort_by(best_first);
            }
            let w = weights(&cands, p.temperature);
            if w.first().is_none_or(|&b| b <= 0.0) {
                return Err(Error::NoValidLogits);
            }
            let widen = p.top_k == 0
                && p.min_p > 0.0
                && !exhausted
                && min_p_len(&w, p.min_p) == cands.len();
            if !widen {
                return Ok((cands, w));
            }
            k = k.saturating_mul(WIDEN).min(vocab);
        }
    }

    /// How many leading candidates survive top-p and min-p (at least 1).
    fn kept(&self, w: &[f64]) -> usize {
        let p = &self.params;
        let mut keep = w.iter().take_while(|&&x| x > 0.0).count();
        if p.top_p < 1.0 {
            let total: f64 = w.iter().sum();
            keep = keep.min(top_p_len(w, total, p.top_p).unwrap_or(keep));
        }
        if p.min_p > 0.0 {
            keep = keep.min(min_p_len(w, p.min_p));
        }
        keep.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orcd_plugin_sdk::RowLogits;

    fn sampler(f: impl FnOnce(&mut SamplerParams)) -> Standard {
        let mut p = SamplerParams {
            seed: 42,
            ..SamplerParams::default()
        };
        f(&mut p);
        Standard::new(&p).unwrap()
    }

    /// A pseudo-random row: logits in [-8, 8).
    fn row(n: usize, seed: u64) -> Vec<f32> {
        let mut r = Rng::new(seed);
        (0..n).map(|_| (r.next_f64() * 16.0 - 8.0) as f32).collect()
    }

    fn argmax(row: &[f32]) -> u32 {
        RowLogits::new(row.to_vec()).argmax().unwrap().id
    }

    #[test]
    fn temperature_zero_is_argmax() {
        let r = row(1000, 1);
        let mut s = sampler(|p| p.temperature = 0.0);
        assert_eq!(
            s.sample(&RowLogits::new(r.clone()), &[]).unwrap(),
            argmax(&r)
        );
    }

    #[test]
    fn top_k_one_is_argmax_at_any_temperature() {
        let r = row(1000, 2);
        let mut s = sampler(|p| {
            p.top_k = 1;
            p.temperature = 2.0;
        });
        for _ in 0..20 {
            assert_eq!(
                s.sample(&RowLogits::new(r.clone()), &[]).unwrap(),
                argmax(&r)
            );
        }
    }

    #[test]
    fn same_seed_same_tokens() {
        let rows: Vec<Vec<f32>> = (0..50).map(|i| row(5000, i)).collect();
        let run = |seed: u64| -> Vec<u32> {
            let mut s = sampler(|p| p.seed = seed);
            rows.iter()
                .map(|r| s.sample(&RowLogits::new(r.clone()), &[]).unwrap())
                .collect()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn nan_is_never_chosen_and_neg_inf_gets_no_mass() {
        let mut r = vec![f32::NAN; 64];
        r[10] = f32::NEG_INFINITY;
        r[20] = 0.0;
        r[30] = 0.5;
        let mut s = sampler(|p| p.temperature = 2.0);
        for _ in 0..200 {
            let t = s.sample(&RowLogits::new(r.clone()), &[]).unwrap();
            assert!(t == 20 || t == 30, "picked {t}");
        }
    }

    #[test]
    fn nothing_valid_is_a_typed_error() {
        for bad in [vec![f32::NAN; 8], vec![f32::NEG_INFINITY; 8]] {
            for temp in [0.0, 1.0] {
                let mut s = sampler(|p| p.temperature = temp);
                assert_eq!(
                    s.sample(&RowLogits::new(bad.clone()), &[]),
                    Err(Error::NoValidLogits)
                );
            }
        }
        let mut s = sampler(|_| {});
        assert_eq!(
            s.sample(&RowLogits::new(vec![]), &[]),
            Err(Error::NoValidLogits)
        );
    }

    #[test]
    fn top_k_limits_the_choice() {
        let r = row(2000, 3);
        let mut best: Vec<u32> = RowLogits::new(r.clone())
            .top_k(5)
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect();
        best.sort();
        let mut s = sampler(|p| {
            p.top_k = 5;
            p.temperature = 2.0;
        });
        for _ in 0..300 {
            let t = s.sample(&RowLogits::new(r.clone()), &[]).unwrap();
            assert!(best.binary_search(&t).is_ok());
        }
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // Probabilities at T=1: 0.5, 0.25, 0.125, ... (logits ln 2 apart).
        let r: Vec<f32> = (0..20)
            .map(|i| -(i as f32) * std::f32::consts::LN_2)
            .collect();
        let mut s = sampler(|p| p.top_p = 0.7);
        let mut seen = [false; 20];
        for _ in 0..500 {
            seen[s.sample(&RowLogits::new(r.clone()), &[]).unwrap() as usize] = true;
        }
        // 0.5 + 0.25 reaches 0.7 (of the window's mass): tokens 0 and 1 only.
        assert!(seen[0] && seen[1]);
        assert!(seen[2..].iter().all(|&x| !x));
    }

    #[test]
    fn min_p_drops_the_unlikely_and_widens_the_window() {
        // 600 equal logits: min-p keeps all of them, so the window must grow past 256.
        let r = vec![1.0f32; 600];
        let mut s = sampler(|p| p.min_p = 0.5);
        let mut max_id = 0;
        for _ in 0..3000 {
            max_id = max_id.max(s.sample(&RowLogits::new(r.clone()), &[]).unwrap());
        }
        assert!(max_id >= 256, "never went past the first window: {max_id}");

        let mut r = vec![0.0f32; 100];
        r[5] = 10.0;
        r[6] = 10.0 + 0.5f32.ln();
        let mut s = sampler(|p| p.min_p = 0.4);
        for _ in 0..300 {
            let t = s.sample(&RowLogits::new(r.clone()), &[]).unwrap();
            assert!(t == 5 || t == 6);
        }
    }

    #[test]
    fn repetition_penalty_steers_greedy_away_from_history() {
        let mut r = vec![0.0f32; 10];
        r[3] = 2.0;
        r[4] = 1.5;
        let mut s = sampler(|p| {
            p.temperature = 0.0;
            p.repetition_penalty = 2.0;
        });
        assert_eq!(s.sample(&RowLogits::new(r.clone()), &[3]).unwrap(), 4);
        assert_eq!(s.sample(&RowLogits::new(r.clone()), &[]).unwrap(), 3);
        // Outside the penalty window the token is no longer penalised.
        let mut s = sampler(|p| {
            p.temperature = 0.0;
            p.repetition_penalty = 2.0;
            p.penalty_window = 1;
        });
        assert_eq!(s.sample(&RowLogits::new(r), &[3, 7]).unwrap(), 3);
    }

    #[test]
    fn draws_follow_the_distribution() {
        // Two tokens with probabilities 0.8 / 0.2 at temperature 1.
        let r = vec![0.8f32.ln(), 0.2f32.ln()];
        let mut s = sampler(|_| {});
        let n = 20_000;
        let zeros = (0..n)
            .filter(|_| s.sample(&RowLogits::new(r.clone()), &[]).unwrap() == 0)
            .count();
        // Expect 16000, standard deviation about 57.
        assert!((15_600..16_400).contains(&zeros), "{zeros}");
    }

    /// Draw `n` tokens and compare each frequency with `expected` (id -> probability) within
    /// 5 standard deviations; ids outside `expected` must never appear.
    fn assert_distribution(s: &mut Standard, row: &[f32], expected: &[(u32, f64)], n: usize) {
        let mut counts = std::collections::HashMap::<u32, usize>::new();
        for _ in 0..n {
            *counts
                .entry(s.sample(&RowLogits::new(row.to_vec()), &[]).unwrap())
                .or_default() += 1;
        }
        for (id, c) in &counts {
            assert!(
                expected.iter().any(|(e, _)| e == id),
                "drew {id} ({c} times)"
            );
        }
        for &(id, p) in expected {
            let got = *counts.get(&id).unwrap_or(&0) as f64;
            let (mean, sd) = (p * n as f64, (p * (1.0 - p) * n as f64).sqrt());
            assert!(
                (got - mean).abs() <= 5.0 * sd + 1.0,
                "id {id}: {got} vs {mean:.0}"
            );
        }
    }

    #[test]
    fn top_k_top_p_and_temperature_give_the_renormalised_softmax() {
        // Logits 4, 3, 2, 1, 0, ... at T = 0.5: weights e^0, e^-2, e^-4, e^-6, ...
        let row: Vec<f32> = (0..50).map(|i| 4.0 - i as f32).collect();
        let w: Vec<f64> = (0..4).map(|i| (-2.0 * i as f64).exp()).collect();
        let norm = |ids: usize| -> Vec<(u32, f64)> {
            let z: f64 = w[..ids].iter().sum();
            (0..ids).map(|i| (i as u32, w[i] / z)).collect()
        };
        // top_k 4: the four best, renormalised.
        let mut s = sampler(|p| {
            p.temperature = 0.5;
            p.top_k = 4;
        });
        assert_distribution(&mut s, &row, &norm(4), 40_000);
        // top_p 0.95 over them: 0.865 + 0.117 = 0.982 reaches it with two tokens.
        let mut s = sampler(|p| {
            p.temperature = 0.5;
            p.top_k = 4;
            p.top_p = 0.95;
        });
        assert_distribution(&mut s, &row, &norm(2), 40_000);
        // min_p 0.02 keeps weights >= 0.02: e^-2 = 0.135 stays, e^-4 = 0.018 goes.
        let mut s = sampler(|p| {
            p.temperature = 0.5;
            p.min_p = 0.02;
        });
        assert_distribution(&mut s, &row, &norm(2), 40_000);
    }

    #[test]
    fn bad_params_are_refused() {
        let p = SamplerParams {
            temperature: 3.0,
            ..SamplerParams::default()
        };
        assert!(Standard::new(&p).is_err());
        let p = SamplerParams {
            extra: vec![("candidates".into(), -1.0)],
            ..SamplerParams::default()
        };
        assert!(Standard::new(&p).is_err());
    }
}
