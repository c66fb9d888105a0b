//! Admission: which waiting jobs join the running batch this step, in queue order, each with a
//! KV slot reserved for its whole length and its prompt's start copied from the prefix cache or
//! from a running sequence that shares it.

use std::time::Instant;

use orcd_device::{EngineError, SeqSlot};
use tracing::{debug, warn};

use super::Batcher;
use crate::error_code::ErrorCode;
use crate::job::{Job, JobEvent};
use crate::scheduler::prefix_cache::{BLOCK_TOKENS, Hit, common_prefix};
use crate::scheduler::sequence::{Sequence, ToolPhase};
use crate::telemetry;

/// Where a job gets its prompt's KV from a running sequence: a later choice of an `n` > 1
/// request from its first choice, any other job from a running sequence whose prompt starts
/// with at least [`MIN_RUNNING_SHARE`] of the same tokens (chats under one system prompt
/// arriving together), so a shared prompt is computed once, not once per arrival.
enum RunningPrompt {
    /// Nothing to share with a running sequence (or sharing is off, or the prefix cache holds
    /// as much): the prefix cache is looked up as usual.
    None,
    /// The sequence to copy from has not computed the shared part yet: this job waits, without
    /// holding up the jobs behind it.
    Wait,
    /// Copy the shared part from that sequence's slot.
    Copy(Hit),
}

/// Prompt tokens (whole blocks of the prefix cache's hash chain) a job must share with a
/// running sequence to wait for it rather than compute them itself: four blocks, below which
/// waiting for another sequence's prefill could cost more than the copy saves.
const MIN_RUNNING_SHARE: usize = 4 * BLOCK_TOKENS;

impl Batcher {
    /// Reserve a slot of `need` positions, evicting kept slots (least recently used first,
    /// `hit`'s source last) while the reservation fails for want of room: the cache never
    /// holds a request back. Returns the slot and `hit` when its source survived.
    fn reserve(
        &mut self,
        need: usize,
        mut hit: Option<Hit>,
    ) -> Result<(SeqSlot, Option<Hit>), EngineError> {
        loop {
            match self.device.alloc_seq(need) {
                Ok(slot) => return Ok((slot, hit)),
                Err(e @ EngineError::KvCacheExhausted { .. }) => {
                    if let Some(victim) = self.cache.pop_lru(hit.map(|h| h.slot)) {
                        self.evict(victim);
                    } else if let Some(h) = hit.take() {
                        self.evict(h.slot);
                    } else {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Copy the prefix `hit` (a kept slot's, or with `sibling` the running first choice's of
    /// the same request) into the new `slot` of `reserved` positions: at most
    /// `prompt_len - 1` tokens, so the prompt's last token is computed and gives the first
    /// generated token's logits. Returns the positions copied (0: nothing, prefill it all).
    fn copy_prefix(
        &mut self,
        job: &Job,
        hit: Hit,
        sibling: bool,
        slot: SeqSlot,
        prompt_len: usize,
        reserved: usize,
    ) -> usize {
        let n = hit.tokens.min(prompt_len - 1);
        if n == 0 {
            return 0;
        }
        if !self.device.kv_prefix_kept(hit.slot, n, reserved) {
            // A sliding-window layer kept only its window and that moved past the prefix.
            debug!(job_id = %job.id, from = hit.slot.0, n, "prefix cache: source no longer keeps the prefix");
            return 0;
        }
        match self.device.copy_kv_prefix(hit.slot, slot, n) {
            Ok(()) if sibling => {
                metrics::counter!(telemetry::PROMPT_SHARED_TOKENS_TOTAL).increment(n as u64);
                n
            }
            Ok(()) => {
                metrics::counter!(telemetry::PREFIX_CACHE_HITS_TOTAL).increment(1);
                metrics::counter!(telemetry::PREFIX_CACHE_HIT_TOKENS_TOTAL).increment(n as u64);
                n
            }
            Err(e) => {
                // Nothing was copied: the prompt is prefilled whole (the same output).
                warn!(event = "error", worker_id = %self.config.worker_id, job_id = %job.id, code = e.code().as_str(), "prefix cache: copy failed, prefilling the whole prompt: {e}");
                0
            }
        }
    }

    /// Where a job gets its prompt's KV from a running sequence, if it does.
    fn sibling_prompt(&self, job: &Job) -> RunningPrompt {
        // Sharing copies KV between slots, as the prefix cache does: off with it.
        if !self.config.prefix_cache {
            return RunningPrompt::None;
        }
        let Some(first) = job.shares_prompt_of.as_deref() else {
            return self.running_share(&job.prompt_tokens);
        };
        if self.waiting.iter().any(|j| j.id == first) {
            return RunningPrompt::Wait;
        }
        let prompt_len = job.prompt_tokens.len();
        match self.running.iter().find(|s| s.job.id == first) {
            None => RunningPrompt::None,
            Some(src) if src.cached < prompt_len => RunningPrompt::Wait,
            Some(src) if src.tokens[..prompt_len] != job.prompt_tokens[..] => RunningPrompt::None,
            Some(src) => RunningPrompt::Copy(Hit {
                slot: src.slot,
                tokens: prompt_len,
            }),
        }
    }

    /// The first running sequence (the earliest admitted) whose prompt shares at least
    /// [`MIN_RUNNING_SHARE`] tokens with `prompt`, counted in whole blocks and leaving the
    /// prompt's last token to compute; none when the prefix cache's kept slots share as much.
    fn running_share(&self, prompt: &[u32]) -> RunningPrompt {
        let limit = prompt.len().saturating_sub(1);
        let found = self.running.iter().find_map(|s| {
            let n = common_prefix(&s.tokens[..s.prompt_len.min(limit)], prompt);
            let n = n / BLOCK_TOKENS * BLOCK_TOKENS;
            (n >= MIN_RUNNING_SHARE).then_some((s, n))
        });
        match found {
            None => RunningPrompt::None,
            Some((_, n)) if self.cache.longest(prompt) >= n => RunningPrompt::None,
            Some((src, n)) if src.cached < n => RunningPrompt::Wait,
            Some((src, n)) => RunningPrompt::Copy(Hit {
                slot: src.slot,
                tokens: n,
            }),
        }
    }

    /// Move waiting jobs into the running batch, first come first served, while their KV-cache
    /// slots can be reserved. A later choice of an `n` > 1 request whose first choice has not
    /// finished its prefill waits for it (the others go ahead of it), then copies its prompt.
    pub(super) fn admit(&mut self) {
        let mut deferred: Vec<Job> = Vec::new();
        self.admit_in_order(&mut deferred);
        // Back at the head of the line, in their order, for the next turn.
        for job in deferred.into_iter().rev() {
            self.waiting.push_front(job);
        }
    }

    fn admit_in_order(&mut self, deferred: &mut Vec<Job>) {
        while self.running.len() < self.config.max_running {
            let Some(mut job) = self.waiting.pop_front() else {
                break;
            };
            let sibling = match self.sibling_prompt(&job) {
                RunningPrompt::Wait => {
                    deferred.push(job);
                    continue;
                }
                RunningPrompt::Copy(hit) => Some(hit),
                RunningPrompt::None => None,
            };
            let prompt_len = job.prompt_tokens.len();
            if prompt_len == 0 || prompt_len >= self.context_length {
                let msg = format!(
                    "prompt: {prompt_len} tokens, the model's context holds {}",
                    self.context_length
                );
                self.end_job(&job, JobEvent::error(ErrorCode::InvalidRequest, msg));
                continue;
            }
            let room = self.context_length - prompt_len;
            let max_new = (job.params.max_tokens as usize).min(room);
            let need = prompt_len + max_new;
            if need > self.kv_total {
                let msg = format!(
                    "the KV cache cannot hold this request: {need} tokens needed, the cache holds {} in all",
                    self.kv_total
                );
                warn!(event = "error", worker_id = %self.config.worker_id, job_id = %job.id, code = ErrorCode::VramOom.as_str(), "{msg}");
                self.end_job(&job, JobEvent::error(ErrorCode::VramOom, msg));
                continue;
            }
            let hit = if sibling.is_some() {
                None
            } else if self.config.prefix_cache {
                self.cache.lookup(&job.prompt_tokens)
            } else {
                None
            };
            let (slot, hit) = match self.reserve(need, hit) {
                Ok(reserved) => reserved,
                Err(EngineError::KvCacheExhausted { .. }) if !self.running.is_empty() => {
                    // Others hold the cache; this job waits (first in line) for them to finish.
                    self.waiting.push_front(job);
                    break;
                }
                Err(e) => {
                    warn!(event = "error", worker_id = %self.config.worker_id, job_id = %job.id, code = e.code().as_str(), "{e}");
                    self.end_job(&job, JobEvent::error(e.code(), e.to_string()));
                    continue;
                }
            };
            let sessions = self
                .plugins
                .sampler
                .session(&job.params, job.seed)
                .and_then(|s| Ok((s, self.plugins.tokenizer.decoder()?)));
            let (sampler, decoder) = match sessions {
                Ok(s) => s,
                Err(f) => {
                    self.device.free_seq(slot);
                    warn!(event = "error", worker_id = %self.config.worker_id, job_id = %job.id, code = %f.code, "{f}");
                    self.end_job(&job, JobEvent::error(f.code, f.to_string()));
                    continue;
                }
            };
            if self.config.prefix_cache && sibling.is_none() {
                // Counted once per admitted job (a job that waits for room looks again).
                metrics::counter!(telemetry::PREFIX_CACHE_LOOKUPS_TOTAL).increment(1);
            }
            let reused = match (sibling, hit) {
                (Some(h), _) => self.copy_prefix(&job, h, true, slot, prompt_len, need),
                (None, Some(h)) => self.copy_prefix(&job, h, false, slot, prompt_len, need),
                (None, None) => 0,
            };
            metrics::counter!(telemetry::TOKENS_IN_TOTAL).increment(prompt_len as u64);
            debug!(job_id = %job.id, prompt_len, max_new, slot = slot.0, reused, "admitted");
            let now = Instant::now();
            // `tool_choice: "auto"`: the trigger masks until it is decided; the call waits.
            let (constraint, tool) = match (job.trigger.take(), job.constraint.take()) {
                (Some(trigger), Some(call)) => (Some(trigger), ToolPhase::Undecided { call }),
                (_, constraint) => (constraint, ToolPhase::Off),
            };
            self.running.push(Sequence {
                constraint,
                tool,
                tokens: std::mem::take(&mut job.prompt_tokens),
                prompt_len,
                cached: reused,
                reused,
                reserved: need,
                max_new,
                context_bound: max_new < job.params.max_tokens as usize,
                sampler,
                decoder,
                text: String::new(),
                emitted: 0,
                token_events: 0,
                pending_logprobs: Vec::new(),
                admitted_at: now,
                first_token_at: None,
                last_token_at: None,
                last_metrics_at: now,
                slot,
                job,
            });
        }
    }
}
