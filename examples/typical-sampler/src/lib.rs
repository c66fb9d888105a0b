//! Locally typical sampling (Meister et al., "Locally Typical Sampling", TACL 2023) as a
//! team-style sampler plugin: `"sampler": "typical"`, with its own parameters
//! `"sampler_params": {"p": 0.9, "candidates": 256}`.
//!
//! Each token: the `candidates` best tokens come from the host (one `top-k` call, never the
//! whole row); with their probabilities q at the request's temperature and the entropy
//! H = -sum q ln q, the tokens whose surprise -ln q is closest to H are kept until their mass
//! reaches `p`, and one is drawn from them. `p` 1.0 keeps every candidate.
//!
//! Parameters are checked at admission: the SDK's default `validate` runs [`Sampler::new`], so
//! `"p": 0` or a misspelt name is a 400 naming `sampler_params.p` before the request starts.

use orcd_plugin_sdk::candidates::{draw, weights};
use orcd_plugin_sdk::{Error, Logits, Rng, Sampler, SamplerParams};

/// Candidates asked of the host per token unless the request says otherwise.
const DEFAULT_CANDIDATES: u32 = 256;
/// Most candidates a request may ask for.
const MAX_CANDIDATES: f64 = 4096.0;
/// The sampler's own `sampler_params` names.
const PARAMS: &[&str] = &["p", "candidates"];

pub struct Typical {
    params: SamplerParams,
    /// Mass of the typical set, in (0, 1].
    p: f64,
    candidates: u32,
    rng: Rng,
}

impl Sampler for Typical {
    const NAME: &'static str = "typical";
    const DESCRIPTION: &'static str = "locally typical sampling (sampler_params: p, candidates)";

    fn new(params: &SamplerParams) -> Result<Self, Error> {
        params.validate()?;
        params.only_extras(PARAMS)?;
        let p = params.extra("p").unwrap_or(0.9);
        if !(p > 0.0 && p <= 1.0) {
            return Err(bad("p", format!("must be in (0, 1], got {p}")));
        }
        let candidates = match params.extra("candidates") {
            None => DEFAULT_CANDIDATES,
            Some(n) if (1.0..=MAX_CANDIDATES).contains(&n) && n.fract() == 0.0 => n as u32,
            Some(n) => {
                return Err(bad(
                    "candidates",
                    format!("must be a whole number in 1..={MAX_CANDIDATES}, got {n}"),
                ));
            }
        };
        Ok(Typical {
            params: params.clone(),
            p,
            candidates,
            rng: Rng::new(params.seed),
        })
    }

    fn sample(&mut self, logits: &dyn Logits, history: &[u32]) -> Result<u32, Error> {
        let sp = &self.params;
        if sp.penalties_active() {
            let window = sp.penalized_tokens(history);
            logits.penalize(
                window,
                sp.repetition_penalty,
                sp.frequency_penalty,
                sp.presence_penalty,
            )?;
        }
        if sp.temperature == 0.0 {
            let best = logits.argmax()?;
            return best
                .logit
                .is_finite()
                .then_some(best.id)
                .ok_or(Error::NoValidLogits);
        }
        let k = match sp.top_k {
            0 => self.candidates,
            k => k.min(self.candidates),
        };
        let cands = logits.top_k(k)?;
        // Relative weights w = exp(s) with s the logit over the temperature minus the best's
        // (one exponential per candidate, none after); zero-weight candidates (NaN, -inf,
        // underflow) are a suffix, as the candidates come best first.
        let w = weights(&cands, sp.temperature);
        let live = w.iter().take_while(|&&x| x > 0.0).count();
        if live == 0 {
            return Err(Error::NoValidLogits);
        }
        let best = cands[0].logit;
        let inv_t = 1.0 / f64::from(sp.temperature);
        let scaled: Vec<f64> = if best == f32::INFINITY {
            // Only the +inf candidates have weight, all 1.
            vec![0.0; live]
        } else {
            cands[..live]
                .iter()
                .map(|c| f64::from(c.logit - best) * inv_t)
                .collect()
        };
        let i = draw_typical(&scaled, &w[..live], self.p, &mut self.rng)?;
        Ok(cands[i].id)
    }
}

/// Draw a candidate of the locally typical set (see [`typical_set`]) with probability
/// proportional to its weight. The set is a run of indices around the pivot (the walk outward
/// takes each side's next index), so the draw reads that slice of `w` in place; only a run of
/// equal distances cut part-way leaves a gap, drawn over a copy. The same index as
/// [`draw_typical_reference`] for the same generator state (the same sums in the same order).
fn draw_typical(scaled: &[f64], w: &[f64], p: f64, rng: &mut Rng) -> Result<usize, Error> {
    let kept = typical_range(scaled, w, p);
    let i = if kept.gap.is_empty() {
        draw(&w[kept.lo..kept.hi], rng)
    } else {
        let mut part = w[kept.lo..kept.hi].to_vec();
        part[kept.gap.start - kept.lo..kept.gap.end - kept.lo].fill(0.0);
        draw(&part, rng)
    };
    i.map(|i| i + kept.lo).ok_or(Error::NoValidLogits)
}

/// The unoptimised draw [`draw_typical`] must equal: the set as a list of indices, every other
/// candidate's weight zeroed over the whole window, one draw over it.
#[cfg_attr(not(test), allow(dead_code))]
fn draw_typical_reference(
    scaled: &[f64],
    w: &[f64],
    p: f64,
    rng: &mut Rng,
) -> Result<usize, Error> {
    let mut kept = vec![0.0; w.len()];
    for i in typical_set(scaled, w, p) {
        kept[i] = w[i];
    }
    draw(&kept, rng).ok_or(Error::NoValidLogits)
}

/// The typical set as [`typical_set`] takes it, as index bounds: `lo..hi` less `gap` (empty
/// unless a run of equal distances on the left was cut part-way).
#[derive(Debug, PartialEq)]
struct Kept {
    lo: usize,
    hi: usize,
    gap: std::ops::Range<usize>,
}

/// [`typical_set`]'s walk, keeping bounds instead of a list.
fn typical_range(scaled: &[f64], w: &[f64], p: f64) -> Kept {
    let z: f64 = w.iter().sum();
    let ln_z = z.ln();
    let entropy = entropy(scaled, w, z, ln_z);
    let d = |i: usize| ln_z - scaled[i] - entropy;
    let n = scaled.len();
    let pivot = (0..n).find(|&i| d(i) >= 0.0).unwrap_or(n);
    let (mut left, mut right) = (pivot, pivot);
    let mut mass = 0.0;
    let target = p * z;
    while left > 0 || right < n {
        if left > 0 && (right == n || -d(left - 1) <= d(right)) {
            let run_end = left;
            let dist = d(left - 1);
            while left > 0 && d(left - 1) == dist {
                left -= 1;
            }
            for (i, &wi) in (left..run_end).zip(&w[left..run_end]) {
                mass += wi;
                if mass >= target {
                    return Kept {
                        lo: left,
                        hi: right,
                        gap: (i + 1).min(run_end)..run_end,
                    };
                }
            }
        } else {
            mass += w[right];
            right += 1;
            if mass >= target {
                break;
            }
        }
    }
    Kept {
        lo: left,
        hi: right,
        gap: 0..0,
    }
}

/// H = -sum q ln q with q_i = w_i / z and -ln q_i = ln z - scaled_i (one division in all).
fn entropy(scaled: &[f64], w: &[f64], z: f64, ln_z: f64) -> f64 {
    let sum: f64 = w.iter().zip(scaled).map(|(&wi, &s)| wi * (ln_z - s)).sum();
    sum / z
}

/// Indices of the locally typical set, in the order taken: candidates ordered by how far their
/// surprise is from the entropy (ties: lower index first), taken until their probability mass
/// reaches `p` (at least one). `scaled[i]` is candidate i's logit divided by the temperature
/// minus the best one's (0 for the best, non-increasing: the candidates come best first) and
/// `w[i] = exp(scaled[i])` its relative weight, positive.
///
/// No logarithm per candidate: with Z the sum of the weights, q_i = w_i / Z and the surprise
/// -ln q_i = ln Z - scaled_i, which grows down the list. So the distances to the entropy fall
/// then rise, and the order by distance is a merge of two runs walked outward from where the
/// surprise crosses the entropy: no sort.
#[cfg_attr(not(test), allow(dead_code))]
fn typical_set(scaled: &[f64], w: &[f64], p: f64) -> Vec<usize> {
    let z: f64 = w.iter().sum();
    let ln_z = z.ln();
    let entropy = entropy(scaled, w, z, ln_z);
    // Signed distance of the surprise from the entropy: non-decreasing in i.
    let d = |i: usize| ln_z - scaled[i] - entropy;
    let n = scaled.len();
    let pivot = (0..n).find(|&i| d(i) >= 0.0).unwrap_or(n);
    // Left: indices below the pivot, distance -d growing as the index falls; right: from the
    // pivot up, distance d growing.
    let (mut left, mut right) = (pivot, pivot);
    let mut kept = Vec::new();
    let mut mass = 0.0;
    let target = p * z;
    while left > 0 || right < n {
        let take_left = left > 0 && (right == n || -d(left - 1) <= d(right));
        if take_left {
            // A run of equal distances is taken lowest index first, as a sort by (distance,
            // index) would.
            let run_end = left;
            let dist = d(left - 1);
            while left > 0 && d(left - 1) == dist {
                left -= 1;
            }
            for (i, &wi) in (left..run_end).zip(&w[left..run_end]) {
                kept.push(i);
                mass += wi;
                if mass >= target {
                    return kept;
                }
            }
        } else {
            kept.push(right);
            mass += w[right];
            right += 1;
            if mass >= target {
                return kept;
            }
        }
    }
    kept
}

fn bad(name: &'static str, message: String) -> Error {
    Error::InvalidParam { name, message }
}

orcd_plugin_sdk::export_sampler!(Typical);

#[cfg(test)]
mod tests {
    use super::*;
    use orcd_plugin_sdk::RowLogits;

    fn params(seed: u64, extra: &[(&str, f64)]) -> SamplerParams {
        SamplerParams {
            seed,
            extra: extra.iter().map(|&(n, v)| (n.to_string(), v)).collect(),
            ..SamplerParams::default()
        }
    }

    #[test]
    fn the_typical_set_skips_the_too_likely_head() {
        // One head token (surprise far below the entropy) and many alike: with a small p the set
        // holds tokens whose surprise is near the entropy, not the head.
        // Head 0.3 (surprise 1.2 nats), 700 tokens of 0.001 (6.9 nats); entropy 5.2 nats.
        let mut probs = vec![0.3];
        probs.extend(std::iter::repeat_n(0.001, 700));
        let w: Vec<f64> = probs.iter().map(|q| q / 0.3).collect();
        let scaled: Vec<f64> = w.iter().map(|x| x.ln()).collect();
        let set = typical_set(&scaled, &w, 0.2);
        assert!(!set.contains(&0), "{set:?}");
        assert!(!set.is_empty());
        // p 1.0 keeps everything.
        assert_eq!(typical_set(&scaled, &w, 1.0).len(), probs.len());
        assert_eq!(typical_set(&[0.0], &[1.0], 0.5), vec![0]);
    }

    /// The typical set by its definition: every candidate's distance from the entropy, sorted
    /// by (distance, index), taken until the mass reaches `p`.
    fn typical_set_by_sort(scaled: &[f64], w: &[f64], p: f64) -> Vec<usize> {
        let z: f64 = w.iter().sum();
        let ln_z = z.ln();
        let entropy = entropy(scaled, w, z, ln_z);
        let mut order: Vec<(f64, usize)> = (0..w.len())
            .map(|i| ((ln_z - scaled[i] - entropy).abs(), i))
            .collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut kept = Vec::new();
        let mut mass = 0.0;
        for (_, i) in order {
            kept.push(i);
            mass += w[i];
            if mass >= p * z {
                break;
            }
        }
        kept
    }

    #[test]
    fn the_merge_takes_the_set_a_sort_would() {
        let mut rng = Rng::new(5);
        let mut gaps = 0;
        for case in 0..400 {
            let n = 1 + (rng.next_f64() * 300.0) as usize;
            // Coarse logits in some cases, so that equal distances (ties) occur.
            let coarse = case % 3 == 0;
            let mut logits: Vec<f32> = (0..n)
                .map(|_| {
                    let x = rng.next_f64() as f32 * 12.0;
                    if coarse { x.round() } else { x }
                })
                .collect();
            logits.sort_by(|a, b| b.total_cmp(a));
            let t = 0.3 + rng.next_f64() as f32 * 1.5;
            let cands: Vec<_> = logits
                .iter()
                .enumerate()
                .map(|(id, &logit)| orcd_plugin_sdk::Candidate {
                    id: id as u32,
                    logit,
                })
                .collect();
            let w = weights(&cands, t);
            let live = w.iter().take_while(|&&x| x > 0.0).count();
            let scaled: Vec<f64> = logits[..live]
                .iter()
                .map(|&l| f64::from(l - logits[0]) / f64::from(t))
                .collect();
            for p in [0.05, 0.3, 0.9, 1.0] {
                let set = typical_set(&scaled, &w[..live], p);
                assert_eq!(
                    set,
                    typical_set_by_sort(&scaled, &w[..live], p),
                    "case {case}, p {p}"
                );
                // The bounds the fast draw reads hold the same set.
                let k = typical_range(&scaled, &w[..live], p);
                let mut from_bounds: Vec<usize> =
                    (k.lo..k.hi).filter(|i| !k.gap.contains(i)).collect();
                let mut sorted = set.clone();
                sorted.sort_unstable();
                from_bounds.sort_unstable();
                assert_eq!(from_bounds, sorted, "case {case}, p {p}");
                // And the draw is the reference draw, generator state for generator state.
                let (mut a, mut b) = (Rng::new(case as u64), Rng::new(case as u64));
                gaps += usize::from(!k.gap.is_empty());
                for _ in 0..4 {
                    assert_eq!(
                        draw_typical(&scaled, &w[..live], p, &mut a),
                        draw_typical_reference(&scaled, &w[..live], p, &mut b),
                        "case {case}, p {p}"
                    );
                }
            }
        }
        // Ties cut part-way (a gap in the bounds) are among the cases.
        assert!(gaps > 0);
    }

    #[test]
    fn draws_stay_in_the_set_and_follow_the_seed() {
        let row: Vec<f32> = (0..300).map(|i| -(i as f32) / 20.0).collect();
        let run = |seed| {
            let mut s = Typical::new(&params(seed, &[("p", 0.5)])).unwrap();
            (0..50)
                .map(|_| s.sample(&RowLogits::new(row.clone()), &[]).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
        assert!(run(3).iter().all(|&t| t < 256), "only the candidate window");
    }

    #[test]
    fn its_own_params_are_validated_by_name() {
        assert!(Typical::validate(&params(0, &[("p", 0.5), ("candidates", 64.0)])).is_ok());
        for (bad, field) in [
            (("p", 0.0), "sampler_params.p"),
            (("p", 1.5), "sampler_params.p"),
            (("candidates", 0.5), "sampler_params.candidates"),
            (("tau", 1.0), "sampler_params.tau"),
        ] {
            let e = Typical::validate(&params(0, &[bad])).unwrap_err();
            assert_eq!(e.field().unwrap().0, field, "{bad:?}");
        }
        let mut s = Typical::new(&params(0, &[])).unwrap();
        let r = s.sample(&RowLogits::new(vec![f32::NAN; 10]), &[]);
        assert_eq!(r, Err(Error::NoValidLogits));
        let r = s.sample(&RowLogits::new(vec![f32::NEG_INFINITY; 10]), &[]);
        assert_eq!(r, Err(Error::NoValidLogits));
        // Only the candidates with mass are drawn: +inf takes it all, NaN and -inf none.
        let row = vec![
            f32::NAN,
            1.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::INFINITY,
        ];
        for _ in 0..50 {
            let t = s.sample(&RowLogits::new(row.clone()), &[]).unwrap();
            assert!(t == 2 || t == 4, "{t}");
        }
    }
}
