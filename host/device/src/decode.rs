//! Backend-generic drivers over a [`Device`]: greedy generation and teacher-forced scoring.
//! The `generate` and `score` subcommands and the golden tests call these, so the CLI and the
//! tests exercise the same code on every backend.

use std::time::{Duration, Instant};

use crate::EngineError;
use crate::{Device, LogitsWanted, SeqInput};

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

/// Tokens per step of [`score_positions`]: bounds the logits held at once (a Gemma 3 row is
/// 1 MiB) without changing the results (a chunked prefill equals a single one).
pub const SCORE_CHUNK: usize = 128;

/// Teacher-forced pass over `ids` (in steps of [`SCORE_CHUNK`] tokens); for each position the
/// `top` best next-token candidates `(id, logit)`, best first.
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
        let mut out = Vec::with_capacity(ids.len());
        for (c, chunk) in ids.chunks(SCORE_CHUNK).enumerate() {
            let rows = dev.forward(&[SeqInput {
                slot,
                start_pos: c * SCORE_CHUNK,
                tokens: chunk,
                logits: LogitsWanted::All,
            }])?;
            for r in 0..rows {
                out.push(dev.logits_top_k(r, top)?);
            }
        }
        Ok(out)
    })();
    dev.free_seq(slot);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::MockDevice;

    #[test]
    fn chunked_scoring_equals_one_pass() {
        let ids: Vec<u32> = (0..300).map(|i| (i * 7 % 50) as u32).collect();
        let mut dev = MockDevice::new(64, 7).unwrap();
        let scored = score_positions(&mut dev, &ids, 3).unwrap();
        assert_eq!(scored.len(), ids.len());
        let slot = dev.alloc_seq(ids.len()).unwrap();
        let rows = dev
            .forward(&[SeqInput {
                slot,
                start_pos: 0,
                tokens: &ids,
                logits: LogitsWanted::All,
            }])
            .unwrap();
        assert_eq!(rows, ids.len());
        for (r, want) in scored.iter().enumerate() {
            assert_eq!(&dev.logits_top_k(r, 3).unwrap(), want);
        }
        assert!(score_positions(&mut dev, &[], 3).is_err());
    }

    #[test]
    fn greedy_stops_at_a_stop_token_and_frees_its_slot() {
        let mut dev = MockDevice::new(64, 3).unwrap();
        let free = dev.free_kv_tokens();
        let all = greedy_generate(&mut dev, &[1, 2, 3], 20, &[])
            .unwrap()
            .tokens;
        assert_eq!(all.len(), 20);
        let stop = all[5];
        let first = all.iter().position(|&t| t == stop).unwrap();
        let cut = greedy_generate(&mut dev, &[1, 2, 3], 20, &[stop])
            .unwrap()
            .tokens;
        assert_eq!(cut, all[..=first]);
        assert_eq!(dev.free_kv_tokens(), free);
        assert!(greedy_generate(&mut dev, &[], 5, &[]).is_err());
        assert!(greedy_generate(&mut dev, &[1], 5000, &[]).is_err());
    }
}
