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

use orcd_plugin_sdk::candidates::{draw, softmax};
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
        let probs = softmax(&cands, sp.temperature);
        // Scaled logits relative to the best give every surprise without a logarithm per
        // candidate (see `typical_set`).
        let best = cands
            .iter()
            .map(|c| c.logit)
            .filter(|l| !l.is_nan())
            .fold(f32::NEG_INFINITY, f32::max);
        let inv_t = 1.0 / f64::from(sp.temperature);
        let scaled: Vec<f64> = cands
            .iter()
            .zip(&probs)
            .map(|(c, &q)| {
                if q > 0.0 {
                    f64::from(c.logit - best) * inv_t
                } else {
                    f64::NEG_INFINITY
                }
            })
            .collect();
        let keep = typical_set(&scaled, &probs, self.p);
        let mut weights = vec![0.0; probs.len()];
        for &i in &keep {
            weights[i] = probs[i];
        }
        let i = draw(&weights, &mut self.rng).ok_or(Error::NoValidLogits)?;
        Ok(cands[i].id)
    }
}

/// Indices of the locally typical set: candidates ordered by how far their surprise is from
/// the entropy, taken until their mass reaches `p` (at least one; zero-probability candidates
/// never). `scaled[i]` is candidate i's logit divided by the temperature minus the best one's
/// (so 0 for the best, `-inf` for no mass) and `probs` its normalised probability.
///
/// No logarithm per candidate: -ln q_i = ln Z - scaled_i, with Z the sum of `exp(scaled)`.
fn typical_set(scaled: &[f64], probs: &[f64], p: f64) -> Vec<usize> {
    let z: f64 = scaled.iter().map(|&x| x.exp()).sum();
    let ln_z = z.ln();
    let entropy: f64 = probs
        .iter()
        .zip(scaled)
        .filter(|&(&q, _)| q > 0.0)
        .map(|(&q, &x)| q * (ln_z - x))
        .sum();
    let mut order: Vec<(f64, usize)> = probs
        .iter()
        .zip(scaled)
        .enumerate()
        .filter(|&(_, (&q, _))| q > 0.0)
        .map(|(i, (_, &x))| ((ln_z - x - entropy).abs(), i))
        .collect();
    order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut kept = Vec::new();
    let mut mass = 0.0;
    for (_, i) in order {
        kept.push(i);
        mass += probs[i];
        if mass >= p {
            break;
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
        let scaled: Vec<f64> = probs.iter().map(|q| (q / 0.3f64).ln()).collect();
        let set = typical_set(&scaled, &probs, 0.2);
        assert!(!set.contains(&0), "{set:?}");
        assert!(!set.is_empty());
        // p 1.0 keeps everything with mass.
        assert_eq!(typical_set(&scaled, &probs, 1.0).len(), probs.len());
        let ninf = f64::NEG_INFINITY;
        assert_eq!(
            typical_set(&[ninf, 0.0, ninf], &[0.0, 1.0, 0.0], 0.5),
            vec![1]
        );
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
    }
}
