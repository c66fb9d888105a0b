//! The Wasm side of a sampler plugin: bindings for the `sampler` world and the glue that
//! [`crate::export_sampler!`] expands to. Compiled only for `wasm32`.

use crate::bindings::worker::plugin::{logits as wit_logits, types};
use crate::{Candidate, Error, Logits, SamplerParams};

/// [`Logits`] over the host's `logits` resource.
pub struct HostLogits<'a>(pub &'a wit_logits::Logits);

impl Logits for HostLogits<'_> {
    fn vocab_size(&self) -> u32 {
        self.0.vocab_size()
    }

    fn argmax(&self) -> Result<Candidate, Error> {
        let c = self.0.argmax();
        Ok(Candidate {
            id: c.id,
            logit: c.logit,
        })
    }

    fn top_k(&self, k: u32) -> Result<Vec<Candidate>, Error> {
        Ok(self
            .0
            .top_k(k)
            .into_iter()
            .map(|c| Candidate {
                id: c.id,
                logit: c.logit,
            })
            .collect())
    }

    fn penalize(
        &self,
        history: &[u32],
        repeat: f32,
        frequency: f32,
        presence: f32,
    ) -> Result<(), Error> {
        self.0.penalize(history, repeat, frequency, presence);
        Ok(())
    }

    fn full(&self) -> Result<Vec<f32>, Error> {
        Ok(self.0.full())
    }
}

/// The WIT parameter record and seed as [`SamplerParams`].
pub fn params_from_wit(p: types::SamplingParams, seed: u64) -> SamplerParams {
    SamplerParams {
        temperature: p.temperature,
        top_k: p.top_k,
        top_p: p.top_p,
        min_p: p.min_p,
        repetition_penalty: p.repetition_penalty,
        frequency_penalty: p.frequency_penalty,
        presence_penalty: p.presence_penalty,
        penalty_window: p.penalty_window,
        seed,
        extra: p.extra,
    }
}

/// An SDK error as the WIT `error` record (code in SCREAMING_SNAKE_CASE).
pub fn error_to_wit(e: Error) -> types::Error {
    let code = match &e {
        Error::NoValidLogits => "NO_VALID_LOGITS",
        Error::InvalidParam { .. } => "INVALID_PARAM",
        Error::UnknownParam { .. } => "UNKNOWN_PARAM",
        Error::Host(_) => "HOST_ERROR",
    };
    types::Error {
        code: code.to_string(),
        message: e.to_string(),
    }
}

/// The WIT `plugin-info` record.
pub fn info(name: &str, version: &str, description: &str) -> types::PluginInfo {
    types::PluginInfo {
        name: name.to_string(),
        version: version.to_string(),
        description: description.to_string(),
    }
}

/// The outcome of [`crate::Sampler::validate`] as the WIT `validate` result.
pub fn validated(r: Result<(), Error>) -> Result<(), types::InvalidField> {
    r.map_err(|e| {
        let (field, message) = e
            .field()
            .unwrap_or_else(|| ("sampler_params".to_string(), e.to_string()));
        types::InvalidField { field, message }
    })
}
