//! What a sampler plugin implements: one instance per request, built from the request's
//! sampling parameters, asked for one token per decode step.

use crate::{Error, Logits};

/// The sampling parameters of one request (the `/execute` fields), with the spec's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerParams {
    /// 0.0 means greedy (argmax); range 0.0-2.0.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: u32,
    /// 1.0 = off.
    pub top_p: f32,
    /// 0.0 = off.
    pub min_p: f32,
    /// 1.0 = off.
    pub repetition_penalty: f32,
    /// 0.0 = off.
    pub frequency_penalty: f32,
    /// 0.0 = off.
    pub presence_penalty: f32,
    /// How many of the most recent tokens the penalties look at; 0 = none.
    pub penalty_window: u32,
    /// Fixes every random draw of the request.
    pub seed: u64,
    /// Extra named numbers for custom samplers (e.g. mirostat `tau`, `eta`).
    pub extra: Vec<(String, f64)>,
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_window: 64,
            seed: 0,
            extra: Vec::new(),
        }
    }
}

impl SamplerParams {
    /// Check every field against its range (the request handler checked them already; a
    /// sampler checks again because the host may be driven by something else).
    pub fn validate(&self) -> Result<(), Error> {
        range("temperature", self.temperature, 0.0, 2.0)?;
        range("top_p", self.top_p, 0.0, 1.0)?;
        range("min_p", self.min_p, 0.0, 1.0)?;
        range("repetition_penalty", self.repetition_penalty, 0.0, 2.0)?;
        range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        Ok(())
    }

    /// The extra parameter `name`, if the request gave it.
    pub fn extra(&self, name: &str) -> Option<f64> {
        self.extra.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }

    /// Refuse `sampler_params` names outside `known` (the sampler's own parameters), so a
    /// misspelt name is a 400 at admission instead of a silently ignored setting.
    pub fn only_extras(&self, known: &'static [&'static str]) -> Result<(), Error> {
        match self
            .extra
            .iter()
            .find(|(n, _)| !known.contains(&n.as_str()))
        {
            Some((name, _)) => Err(Error::UnknownParam {
                name: name.clone(),
                known,
            }),
            None => Ok(()),
        }
    }

    /// Whether any penalty changes the logits.
    pub fn penalties_active(&self) -> bool {
        let repeat = self.repetition_penalty != 1.0 && self.repetition_penalty > 0.0;
        self.penalty_window > 0
            && (repeat || self.frequency_penalty != 0.0 || self.presence_penalty != 0.0)
    }

    /// The part of `history` the penalties look at.
    pub fn penalized_tokens<'h>(&self, history: &'h [u32]) -> &'h [u32] {
        let n = (self.penalty_window as usize).min(history.len());
        &history[history.len() - n..]
    }
}

fn range(name: &'static str, v: f32, lo: f32, hi: f32) -> Result<(), Error> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(Error::InvalidParam {
            name,
            message: format!("must be in {lo}..={hi}, got {v}"),
        })
    }
}

/// A sampling policy. One value lives for one request; it may keep state across tokens
/// (Mirostat's running surprise target, for instance).
pub trait Sampler: Sized {
    /// The name requests select it by (`"sampler": "<NAME>"`): lower case, unique among the
    /// loaded samplers.
    const NAME: &'static str;
    /// One line for plugin listings.
    const DESCRIPTION: &'static str;

    /// Build the sampler for a request; reject parameters it cannot honour.
    fn new(params: &SamplerParams) -> Result<Self, Error>;

    /// Check a request's parameters at admission, before its stream starts: a refusal is an
    /// HTTP 400 naming the field (`Error::InvalidParam { name: "tau", .. }` becomes
    /// `sampler_params.tau`). The default builds the sampler with [`Sampler::new`] and drops
    /// it, so a sampler that checks its parameters in `new` needs nothing more. `params.seed`
    /// is 0 here.
    fn validate(params: &SamplerParams) -> Result<(), Error> {
        Self::new(params).map(drop)
    }
    /// Pick the next token from `logits`, given the tokens of the sequence so far (prompt and
    /// generated). The returned id must be below `logits.vocab_size()`.
    fn sample(&mut self, logits: &dyn Logits, history: &[u32]) -> Result<u32, Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_penalty_free() {
        let p = SamplerParams::default();
        p.validate().unwrap();
        assert!(!p.penalties_active());
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let p = SamplerParams {
            top_p: 1.5,
            ..SamplerParams::default()
        };
        match p.validate() {
            Err(Error::InvalidParam { name, .. }) => assert_eq!(name, "top_p"),
            other => panic!("expected top_p error, got {other:?}"),
        }
        let p = SamplerParams {
            temperature: f32::NAN,
            ..SamplerParams::default()
        };
        assert!(p.validate().is_err());
    }

    #[test]
    fn unknown_extras_are_refused_by_name() {
        let p = SamplerParams {
            extra: vec![("tau".into(), 5.0), ("etta".into(), 0.1)],
            ..SamplerParams::default()
        };
        assert!(p.only_extras(&["tau", "eta", "etta"]).is_ok());
        match p.only_extras(&["tau", "eta"]) {
            Err(Error::UnknownParam { name, .. }) => assert_eq!(name, "etta"),
            other => panic!("expected etta refused, got {other:?}"),
        }
    }

    #[test]
    fn penalty_window_takes_the_most_recent_tokens() {
        let p = SamplerParams {
            penalty_window: 2,
            ..SamplerParams::default()
        };
        assert_eq!(p.penalized_tokens(&[1, 2, 3]), &[2, 3]);
        assert_eq!(p.penalized_tokens(&[1]), &[1]);
    }
}
