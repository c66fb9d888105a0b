//! Backend-generic drivers over a [`Device`]: greedy generation and teacher-forced scoring.
//! The `generate` and `score` subcommands and the golden tests call these, so the CLI and the
//! tests exercise the same code on every backend.

use std::time::{Duration, Instant};

use crate::EngineError;
use crate::device::{Device, LogitsWanted, SeqInput};

/// The result of [`greedy_generate`].
#[derive(Clone, Debug, Default)]
pub struct Generation {
    /// The generated tokens (a stop token, when hit, is the last).
    pub tokens: Vec<u32>,
    /// Wall time of the prompt step (it also yields the first token).
    pub prefill_time: Duration,
    /// Wall time of the one-token steps after it.
    pub decode_time: Duration,
}

/// Generate up to `max_tokens` tokens after `prompt` by argmax, stopping after the first token
/// in `stop` (which is included in the result). The prompt goes through in one step.
pub fn greedy_generate(
    dev: &mut dyn Device,
    prompt: &[u32],
    max_tokens: usize,
    stop: &[u32],
) -> Result<Generation, EngineError> {
    if prompt.is_empty() {
        return Err(EngineError::InvalidInput("empty prompt".into()));
    }
    let total = prompt.len() + max_tokens;
    if total > dev.context_length() {
        return Err(EngineError::InvalidInput(format!(
            "{} prompt + {max_tokens} new tokens exceed the context of {}",
            prompt.len(),
            dev.context_length()
        )));
    }
    let slot = dev.alloc_seq(total)?;
    let result = (|| {
        let mut out = Generation {
            tokens: Vec::with_capacity(max_tokens),
            ..Generation::default()
        };
        let mut pos = 0;
        let mut next: Vec<u32> = prompt.to_vec();
        while out.tokens.len() < max_tokens {
            let start = Instant::now();
            dev.forward(&[SeqInput {
                slot,
                start_pos: pos,
                tokens: &next,
                logits: LogitsWanted::Last,
            }])?;
            pos += next.len();
            let (tok, _) = dev.logits_argmax(0)?;
            if pos == prompt.len() {
                out.prefill_time = start.elapsed();
            } else {
                out.decode_time += start.elapsed();
            }
            out.tokens.push(tok);
            if stop.contains(&tok) {
                break;
            }
            next.clear();
            next.push(tok);
        }
        Ok(out)
    })();
    dev.free_seq(slot);
    result
}

/// One forward pass over `ids`; for each position the `top` best next-token candidates
/// `(id, logit)`, best first.
pub fn score_positions(
    dev: &mut dyn Device,
    ids: &[u32],
    top: usize,
) -> Result<Vec<Vec<(u32, f32)>>, EngineError> {
    if ids.is_empty() {
        return Err(EngineError::InvalidInput("no tokens to score".into()));
    }
    let slot = dev.alloc_seq(ids.len())?;
    let result = (|| {
        let rows = dev.forward(&[SeqInput {
            slot,
            start_pos: 0,
            tokens: ids,
            logits: LogitsWanted::All,
        }])?;
        (0..rows).map(|r| dev.logits_top_k(r, top)).collect()
    })();
    dev.free_seq(slot);
    result
}
