//! A sampler with two bugs the conformance kit must catch: it ignores the request's seed
//! (every session draws the same stream), and at temperature 2.0 and above it answers one
//! past the last token id.

use orcd_plugin_sdk::candidates::{draw, weights};
use orcd_plugin_sdk::{Error, Logits, Rng, Sampler, SamplerParams};

pub struct Broken {
    temperature: f32,
    rng: Rng,
}

impl Sampler for Broken {
    const NAME: &'static str = "broken";
    const DESCRIPTION: &'static str = "ignores its seed, returns out-of-range ids when hot";

    fn new(params: &SamplerParams) -> Result<Self, Error> {
        // Bug 1: the seed is ignored.
        Ok(Broken {
            temperature: params.temperature,
            rng: Rng::new(0),
        })
    }

    fn sample(&mut self, logits: &dyn Logits, _history: &[u32]) -> Result<u32, Error> {
        if self.temperature >= 2.0 {
            // Bug 2: one past the vocabulary.
            return Ok(logits.vocab_size());
        }
        if self.temperature == 0.0 {
            return Ok(logits.argmax()?.id);
        }
        let cands = logits.top_k(64)?;
        let w = weights(&cands, self.temperature);
        let i = draw(&w, &mut self.rng).ok_or(Error::NoValidLogits)?;
        Ok(cands[i].id)
    }
}

orcd_plugin_sdk::export_sampler!(Broken);
