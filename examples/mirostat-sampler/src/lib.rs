//! Mirostat v2 (Basu et al., "Mirostat: a neural text decoding algorithm that directly
//! controls perplexity", 2021) as a sampler plugin: `"sampler": "mirostat"`, with
//! `"sampler_params": {"tau": 5.0, "eta": 0.1}` (target surprise in bits, learning rate).
//!
//! Each token: drop the candidates more surprising than `mu` bits, draw from the rest, and
//! move `mu` toward the target by the surprise observed. Build it with
//! `cargo build --release --target wasm32-wasip2 -p mirostat-sampler`.

use orcd_plugin_sdk::candidates::{draw, softmax};
use orcd_plugin_sdk::{Error, Logits, Rng, Sampler, SamplerParams};

/// Candidates asked of the host per token; tokens past these carry (far) more than `mu` bits
/// of surprise at any useful `tau`.
const CANDIDATES: u32 = 256;

pub struct Mirostat {
    params: SamplerParams,
    tau: f64,
    eta: f64,
    /// Maximum surprise (bits) a token may have; starts at `2 * tau`.
    mu: f64,
    rng: Rng,
}

impl Sampler for Mirostat {
    const NAME: &'static str = "mirostat";
    const DESCRIPTION: &'static str = "Mirostat v2: holds the surprise near `tau` bits";

    fn new(params: &SamplerParams) -> Result<Self, Error> {
        params.validate()?;
        params.only_extras(&["tau", "eta"])?;
        let tau = params.extra("tau").unwrap_or(5.0);
        let eta = params.extra("eta").unwrap_or(0.1);
        if !(tau > 0.0 && tau <= 64.0) {
            return Err(bad("tau", "must be in (0, 64]"));
        }
        if !(eta > 0.0 && eta <= 1.0) {
            return Err(bad("eta", "must be in (0, 1]"));
        }
        let rng = Rng::new(params.seed);
        let params = params.clone();
        Ok(Mirostat {
            params,
            tau,
            eta,
            mu: 2.0 * tau,
            rng,
        })
    }

    fn sample(&mut self, logits: &dyn Logits, history: &[u32]) -> Result<u32, Error> {
        let p = &self.params;
        if p.penalties_active() {
            let (r, f, pr) = (
                p.repetition_penalty,
                p.frequency_penalty,
                p.presence_penalty,
            );
            logits.penalize(p.penalized_tokens(history), r, f, pr)?;
        }
        if p.temperature == 0.0 {
            let best = logits.argmax()?;
            return best
                .logit
                .is_finite()
                .then_some(best.id)
                .ok_or(Error::NoValidLogits);
        }
        // A request's top_k still bounds the candidates (top_k 1 is greedy).
        let k = if p.top_k > 0 {
            p.top_k.min(CANDIDATES)
        } else {
            CANDIDATES
        };
        let cands = logits.top_k(k)?;
        let probs = softmax(&cands, p.temperature);
        // Keep the prefix (best first) whose surprise -log2 q is within mu, that is whose
        // probability is at least 2^-mu (one power, no logarithm per candidate); always the
        // best one.
        let floor = (-self.mu).exp2();
        let keep = probs.iter().take_while(|&&q| q > 0.0 && q >= floor).count();
        let kept = &probs[..keep.max(1).min(probs.len())];
        let i = draw(kept, &mut self.rng).ok_or(Error::NoValidLogits)?;
        let observed = -(kept[i] / kept.iter().sum::<f64>()).log2();
        self.mu -= self.eta * (observed - self.tau);
        Ok(cands[i].id)
    }
}

fn bad(name: &'static str, message: &str) -> Error {
    Error::InvalidParam {
        name,
        message: message.to_string(),
    }
}

orcd_plugin_sdk::export_sampler!(Mirostat);

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

    /// A Zipf-like row: logit of rank r is -ln(r + 1).
    fn zipf(n: usize) -> Vec<f32> {
        (0..n).map(|r| -((r + 1) as f32).ln()).collect()
    }

    #[test]
    fn surprise_tracks_tau() {
        for tau in [4.0, 6.0] {
            let mut s = Mirostat::new(&params(1, &[("tau", tau)])).unwrap();
            let row = zipf(1000);
            let n = 3000;
            let mut total = 0.0;
            let probs = softmax(&RowLogits::new(row.clone()).top_k(1000).unwrap(), 1.0);
            for _ in 0..n {
                let t = s.sample(&RowLogits::new(row.clone()), &[]).unwrap();
                total += -probs[t as usize].log2();
            }
            let mean = total / n as f64;
            // Surprise under the full distribution stays near tau (its minimum here is ~2.9 bits).
            assert!((mean - tau).abs() < 1.0, "tau {tau}: mean surprise {mean}");
        }
    }

    #[test]
    fn same_seed_same_tokens() {
        let run = |seed| {
            let mut s = Mirostat::new(&params(seed, &[])).unwrap();
            (0..100)
                .map(|_| s.sample(&RowLogits::new(zipf(500)), &[]).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn bad_params_and_rows_are_errors() {
        assert!(Mirostat::new(&params(0, &[("tau", -1.0)])).is_err());
        assert!(Mirostat::new(&params(0, &[("eta", 0.0)])).is_err());
        // A misspelt name is refused at admission (the SDK's default `validate` runs `new`).
        match Mirostat::validate(&params(0, &[("tua", 5.0)])) {
            Err(e) => assert_eq!(e.field().unwrap().0, "sampler_params.tua"),
            Ok(()) => panic!("tua accepted"),
        }
        let mut s = Mirostat::new(&params(0, &[])).unwrap();
        let r = s.sample(&RowLogits::new(vec![f32::NAN; 10]), &[]);
        assert_eq!(r, Err(Error::NoValidLogits));
    }

    #[test]
    fn the_probability_floor_keeps_what_the_surprise_bound_keeps() {
        let mut rng = Rng::new(9);
        for _ in 0..20_000 {
            let q = rng.next_f64().powi(3);
            let mu = rng.next_f64() * 20.0;
            // Away from the boundary, where rounding of log2 and exp2 may differ by an ulp.
            if (-q.log2() - mu).abs() > 1e-9 {
                assert_eq!(q >= (-mu).exp2(), -q.log2() <= mu, "q {q}, mu {mu}");
            }
        }
    }
}
