//! The step loop of the scheduler thread: admit, build one batch, run one device step, sample
//! every row, stream, retire.

use std::any::Any;
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

use orcd_device::{LogitsWanted, SeqInput, SeqSlot};
use tracing::{debug, error, info, warn};

use super::logprobs::{RawRow, SavingPenalized};
use super::prefix_cache::PrefixCache;
use super::queue::Admission;
use super::sequence::{Progress, Sequence};
use super::{Command, SchedulerConfig};
use crate::error_code::ErrorCode;
use crate::job::{Job, JobEvent};
use crate::plugins::Plugins;
use crate::served_device::{Residency, ServedDevice};
use crate::telemetry::{self, outcome};

mod admit;

struct Batcher {
    device: Box<dyn ServedDevice>,
    plugins: Plugins,
    config: SchedulerConfig,
    admission: Admission,
    /// KV-cache tokens the device holds when no slot is reserved.
    kv_total: usize,
    context_length: usize,
    waiting: VecDeque<Job>,
    running: Vec<Sequence>,
    /// Finished sequences' slots kept for prefix reuse (empty when prefix caching is off).
    cache: PrefixCache,
    /// The residency checks' outcome, read by `/health`.
    residency: Arc<Residency>,
    last_residency_check: Instant,
}

/// The scheduler thread's body: runs until `Command::Stop` or until every handle is gone.
pub(super) fn run(
    device: Box<dyn ServedDevice>,
    plugins: Plugins,
    config: SchedulerConfig,
    commands: Receiver<Command>,
    admission: Admission,
    residency: Arc<Residency>,
) {
    let kv_total = device.free_kv_tokens();
    let context_length = device.context_length();
    let mut b = Batcher {
        device,
        plugins,
        config,
        admission,
        kv_total,
        context_length,
        waiting: VecDeque::new(),
        running: Vec::new(),
        cache: PrefixCache::default(),
        residency,
        last_residency_check: Instant::now(),
    };
    b.check_residency();
    loop {
        // Block only when there is nothing to do.
        let first = if b.waiting.is_empty() && b.running.is_empty() {
            let until_check = b
                .config
                .residency_interval
                .saturating_sub(b.last_residency_check.elapsed());
            match commands.recv_timeout(until_check) {
                Ok(c) => Some(c),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            None
        };
        let mut stop = false;
        for cmd in first
            .into_iter()
            .chain(std::iter::from_fn(|| match commands.try_recv() {
                Ok(c) => Some(c),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => Some(Command::Stop),
            }))
        {
            match cmd {
                Command::Submit(job) => b.waiting.push_back(*job),
                Command::Wake => {}
                Command::Stop => stop = true,
            }
        }
        if stop {
            b.abort_all();
            break;
        }
        if b.last_residency_check.elapsed() >= b.config.residency_interval {
            b.check_residency();
        }
        // A panic below (device, plugin bridge, our own bug) must not take the worker down:
        // the sequences in flight end with INTERNAL and the loop goes on.
        let turn = std::panic::catch_unwind(AssertUnwindSafe(|| {
            b.retire_cancelled_and_expired();
            b.admit();
            b.publish_gauges();
            if !b.running.is_empty() {
                b.step();
            }
        }));
        if let Err(panic) = turn {
            b.recover_from_panic(panic.as_ref());
        }
        // Again after the step: the step may have retired the last sequences, and the loop may
        // block next; read before the step only, the gauge kept the batch's last size while
        // the worker sat idle.
        b.publish_gauges();
    }
    info!(event = "shutdown", worker_id = %b.config.worker_id, "scheduler stopped");
}

/// Mask logits row `row` with the constraint's allowed tokens; a dead end (no token allowed)
/// or a failure is the job's terminal event.
fn constrain(
    c: &mut dyn crate::plugins::ConstraintSession,
    device: &mut dyn ServedDevice,
    row: usize,
    remaining: u32,
) -> Result<(), JobEvent> {
    let allowed = c
        .allowed(remaining)
        .map_err(|f| JobEvent::error(f.code, f.to_string()))?;
    if allowed.iter().all(|&w| w == 0) {
        return Err(JobEvent::error(
            ErrorCode::ConstraintDeadEnd,
            "no token of the vocabulary can continue the output towards its constraint",
        ));
    }
    device
        .logits_mask(row, &allowed)
        .map_err(|e| JobEvent::error(e.code(), e.to_string()))
}

impl Batcher {
    fn publish_gauges(&self) {
        metrics::gauge!(telemetry::QUEUE_DEPTH).set(self.waiting.len() as f64);
        metrics::gauge!(telemetry::RUNNING_SEQUENCES).set(self.running.len() as f64);
        if self.config.prefix_cache {
            metrics::gauge!(telemetry::PREFIX_CACHE_SLOTS).set(self.cache.slots() as f64);
            metrics::gauge!(telemetry::PREFIX_CACHE_TOKENS).set(self.cache.tokens() as f64);
            metrics::gauge!(telemetry::PREFIX_CACHE_RESERVED_TOKENS)
                .set(self.cache.reserved_tokens() as f64);
        }
    }

    /// Worker spec 1012: a failed check logs at error level and turns `/health` unhealthy.
    fn check_residency(&mut self) {
        self.last_residency_check = Instant::now();
        let outcome = self.device.verify_residency();
        if let Err(e) = &outcome {
            error!(
                event = "error",
                code = e.code().as_str(),
                "VRAM residency check failed: {e}"
            );
        }
        self.residency.record(&outcome);
    }

    /// End a job that never got a slot or whose sequence is already freed.
    fn end_job(&self, job: &Job, event: JobEvent) {
        let label = match &event {
            JobEvent::End { .. } => outcome::SUCCESS,
            JobEvent::Error {
                code: ErrorCode::Cancelled,
                ..
            } => outcome::CANCELLED,
            JobEvent::Error {
                code: ErrorCode::InferenceTimeout,
                ..
            } => outcome::TIMEOUT,
            _ => outcome::ERROR,
        };
        metrics::counter!(telemetry::REQUESTS_TOTAL, "outcome" => label).increment(1);
        if let JobEvent::Error { code, .. } = &event {
            telemetry::count_error(*code);
        }
        metrics::histogram!(telemetry::INFERENCE_DURATION_MS)
            .record(job.accepted_at.elapsed().as_secs_f64() * 1000.0);
        match &event {
            JobEvent::End {
                tokens_out,
                stop_reason,
                ..
            } => {
                info!(event = "execute_end", worker_id = %self.config.worker_id, job_id = %job.id, tokens_out, stop_reason = ?stop_reason, "job finished")
            }
            JobEvent::Error { code, message, .. } => {
                info!(event = "execute_end", worker_id = %self.config.worker_id, job_id = %job.id, code = %code, message = %message, "job ended with an error")
            }
            _ => {}
        }
        let _ = job.events.send(event);
        self.admission.finish(&job.id);
    }

    /// End the running sequence `idx` with `event`. Its slot is kept for prefix reuse when
    /// `reusable` (its KV holds exactly `tokens[..cached]`: every step it took succeeded) and
    /// prefix caching is on; otherwise freed.
    fn finish_seq(&mut self, idx: usize, event: JobEvent, reusable: bool) {
        let seq = self.running.swap_remove(idx);
        self.release_slot(&seq, reusable);
        self.end_job(&seq.job, event);
    }

    fn release_slot(&mut self, seq: &Sequence, reusable: bool) {
        if !(reusable && self.config.prefix_cache) {
            self.device.free_seq(seq.slot);
            return;
        }
        let tokens = seq.tokens[..seq.cached].to_vec();
        let (kept, covered) = self.cache.insert(seq.slot, tokens, seq.reserved);
        if !kept {
            self.device.free_seq(seq.slot);
        }
        // Slots whose tokens the new one holds and more: they can give nothing it cannot.
        for slot in covered {
            self.device.free_seq(slot);
        }
    }

    /// Free a kept slot to make room.
    fn evict(&mut self, slot: SeqSlot) {
        self.cache.remove(slot);
        self.device.free_seq(slot);
        metrics::counter!(telemetry::PREFIX_CACHE_EVICTIONS_TOTAL).increment(1);
        debug!(slot = slot.0, "prefix cache: evicted");
    }

    /// Why a job must stop now, if it must.
    fn interruption(&self, job: &Job) -> Option<JobEvent> {
        if job.cancel.is_cancelled() || job.events.is_closed() {
            Some(JobEvent::error(
                ErrorCode::Cancelled,
                "the job was cancelled",
            ))
        } else if job.accepted_at.elapsed() >= self.config.inference_timeout {
            Some(JobEvent::error(
                ErrorCode::InferenceTimeout,
                format!(
                    "the job ran past the inference timeout of {} s",
                    self.config.inference_timeout.as_secs_f64()
                ),
            ))
        } else {
            None
        }
    }

    fn retire_cancelled_and_expired(&mut self) {
        let mut i = 0;
        while i < self.waiting.len() {
            if let Some(ev) = self.interruption(&self.waiting[i]) {
                if let Some(job) = self.waiting.remove(i) {
                    self.end_job(&job, ev);
                }
            } else {
                i += 1;
            }
        }
        let mut i = 0;
        while i < self.running.len() {
            if let Some(ev) = self.interruption(&self.running[i].job) {
                // Every step of the sequence succeeded: its KV is sound and can be kept.
                self.finish_seq(i, ev, true);
            } else {
                i += 1;
            }
        }
    }

    /// One device step over the running batch: every decoding sequence contributes its last
    /// token, prefilling sequences contribute chunks while the token budget lasts.
    fn step(&mut self) {
        let mut budget = self.config.step_token_budget.max(1);
        // (index into running, token range, logits wanted)
        let mut plan: Vec<(usize, std::ops::Range<usize>, LogitsWanted)> = Vec::new();
        for (i, seq) in self.running.iter().enumerate() {
            if seq.tokens.len() - seq.cached == 1 && seq.generated() > 0 {
                plan.push((i, seq.cached..seq.tokens.len(), LogitsWanted::Last));
                budget = budget.saturating_sub(1);
            }
        }
        // Prefill, while the budget lasts: first the sequences that have not started (each
        // newcomer's first chunk, in admission order), then those part-way through their
        // prompts (older first). A short request that arrives during a long prompt's prefill
        // starts in the next step instead of waiting for that prompt to finish. (A prompt
        // whose prefix was copied from the prefix cache has not started until it computes.)
        let mut prefill: Vec<usize> = (0..self.running.len())
            .filter(|&i| !plan.iter().any(|p| p.0 == i))
            .collect();
        prefill.sort_by_key(|&i| {
            let seq = &self.running[i];
            (seq.cached > seq.reused, seq.admitted_at)
        });
        for i in prefill {
            if budget == 0 {
                break;
            }
            let (range, logits) = self.running[i].step_tokens(budget);
            budget -= range.len();
            plan.push((i, range, logits));
        }
        if plan.is_empty() {
            return;
        }
        let inputs: Vec<SeqInput<'_>> = plan
            .iter()
            .map(|(i, range, logits)| {
                let seq = &self.running[*i];
                SeqInput {
                    slot: seq.slot,
                    start_pos: range.start,
                    tokens: &seq.tokens[range.clone()],
                    logits: *logits,
                }
            })
            .collect();
        let step_tokens: usize = plan.iter().map(|p| p.1.len()).sum();
        metrics::histogram!(telemetry::STEP_TOKENS).record(step_tokens as f64);
        let prompt_computed: usize = plan
            .iter()
            .map(|(i, r, _)| {
                r.end
                    .min(self.running[*i].prompt_len)
                    .saturating_sub(r.start)
            })
            .sum();
        let result = self.device.forward(&inputs);
        drop(inputs);
        if let Err(e) = result {
            // The step failed for the whole batch: end every sequence in it, keep serving.
            warn!(event = "error", worker_id = %self.config.worker_id, code = e.code().as_str(), "device step failed: {e}");
            let mut idx: Vec<usize> = plan.iter().map(|p| p.0).collect();
            idx.sort_unstable_by(|a, b| b.cmp(a));
            for i in idx {
                self.finish_seq(i, JobEvent::error(e.code(), e.to_string()), false);
            }
            return;
        }
        metrics::counter!(telemetry::PROMPT_TOKENS_COMPUTED_TOTAL)
            .increment(prompt_computed as u64);
        // Sample every row before the next step (rows live until then).
        let mut row = 0;
        let mut done: Vec<(usize, JobEvent)> = Vec::new();
        for (i, range, logits) in &plan {
            let seq = &mut self.running[*i];
            seq.cached = range.end;
            if *logits != LogitsWanted::Last {
                continue;
            }
            let this_row = row;
            row += 1;
            // A constrained sequence's row is masked on the device first, so argmax, top-k
            // and any sampler plugin see only the tokens the constraint allows.
            // An end token does not count against `max_new`, so it fits while a text token does.
            let remaining = seq.max_new.saturating_sub(seq.generated()) as u32;
            // Log-probabilities are of the raw row: read before the mask and the sampler.
            let raw = match seq.job.params.logprobs {
                None => None,
                Some(k) => match RawRow::read(self.device.as_ref(), this_row, k) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        done.push((*i, JobEvent::error(e.code(), e.to_string())));
                        continue;
                    }
                },
            };
            if let Some(c) = seq.constraint.as_mut()
                && let Err(ev) = constrain(c.as_mut(), self.device.as_mut(), this_row, remaining)
            {
                warn!(event = "error", worker_id = %self.config.worker_id, job_id = %seq.job.id, "constrained decoding ended the job");
                done.push((*i, ev));
                continue;
            }
            let (sampled, logprob) = match &raw {
                None => (
                    seq.sampler
                        .sample(self.device.as_mut(), this_row, &seq.tokens),
                    None,
                ),
                Some(raw) => {
                    let mut saving = SavingPenalized {
                        inner: self.device.as_mut(),
                        row: this_row,
                        saved: Vec::new(),
                    };
                    let sampled = seq.sampler.sample(&mut saving, this_row, &seq.tokens);
                    let saved = saving.saved;
                    let offset = seq.text.len();
                    let entry = sampled.as_ref().ok().map(|&token| {
                        raw.entry(self.device.as_ref(), this_row, token, &saved, offset)
                    });
                    match entry {
                        Some(Err(e)) => {
                            done.push((*i, JobEvent::error(e.code(), e.to_string())));
                            continue;
                        }
                        Some(Ok(entry)) => (sampled, Some(entry)),
                        None => (sampled, None),
                    }
                }
            };
            let progress = sampled.and_then(|token| {
                if let Some(c) = seq.constraint.as_mut() {
                    c.advance(token)?;
                }
                let eog = self.plugins.tokenizer.is_end_of_generation(token);
                seq.push_token(token, eog, logprob, self.plugins.handler.as_ref())
            });
            match progress {
                Ok(Progress::Continue) => {
                    if seq.last_metrics_at.elapsed() >= self.config.metrics_interval {
                        seq.last_metrics_at = Instant::now();
                        let _ = seq.job.events.send(JobEvent::Metrics {
                            job_id: seq.job.id.clone(),
                            tokens_out: seq.generated() as u32,
                            decode_time_ms: seq.decode_ms(),
                            vram_bytes: self.config.vram_bytes,
                        });
                    }
                }
                Ok(Progress::Finished(stop_reason)) => done.push((
                    *i,
                    JobEvent::End {
                        tokens_out: seq.generated() as u32,
                        tokens_in: seq.prompt_len as u32,
                        decode_time_ms: seq.decode_ms(),
                        stop_reason,
                        seed: seq.job.seed,
                    },
                )),
                Err(f) => {
                    warn!(event = "error", worker_id = %self.config.worker_id, job_id = %seq.job.id, code = %f.code, "{f}");
                    done.push((*i, JobEvent::error(f.code, f.to_string())));
                }
            }
        }
        done.sort_unstable_by_key(|d| std::cmp::Reverse(d.0));
        for (i, ev) in done {
            // The step succeeded: each of these holds the KV of its tokens up to `cached`.
            self.finish_seq(i, ev, true);
        }
    }

    /// After a panic inside a turn: the running sequences may be half-updated, so they end with
    /// `INTERNAL` and their slots are freed; waiting jobs go on.
    fn recover_from_panic(&mut self, panic: &(dyn Any + Send)) {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        error!(event = "error", worker_id = %self.config.worker_id, code = ErrorCode::Internal.as_str(), running = self.running.len(), "scheduler turn panicked: {what}");
        while !self.running.is_empty() {
            let i = self.running.len() - 1;
            self.finish_seq(
                i,
                JobEvent::error(ErrorCode::Internal, "internal error"),
                false,
            );
        }
    }

    /// Shutdown of the thread itself: whatever is left ends with `CANCELLED`.
    fn abort_all(&mut self) {
        while let Some(job) = self.waiting.pop_front() {
            self.end_job(
                &job,
                JobEvent::error(ErrorCode::Cancelled, "the worker stopped"),
            );
        }
        while !self.running.is_empty() {
            let i = self.running.len() - 1;
            self.finish_seq(
                i,
                JobEvent::error(ErrorCode::Cancelled, "the worker stopped"),
                false,
            );
        }
        for slot in self.cache.drain() {
            self.device.free_seq(slot);
        }
    }
}
