//! The continuous-batching scheduler. One thread owns the device; HTTP tasks hand it tokenized
//! jobs and read events back.
//!
//! - `queue`: admission — a bounded number of jobs in flight (running + waiting); past it a
//!   submit fails with `WORKER_BUSY` (503, retriable) instead of piling work up.
//! - `batcher`: the step loop. Between two device steps sequences join (when their KV-cache slot
//!   can be reserved; waiting jobs in arrival order) and leave (finished, cancelled, timed out).
//!   Each step carries at most `step_token_budget` tokens, in this order: one token per decoding
//!   sequence; then the first prefill chunk of every sequence that has not started (admission
//!   order); then the next chunks of prompts part-way through (older first). So a long prompt
//!   does not stall the others, and a newcomer starts within one step.
//! - `sequence`: the per-job state of a running sequence.
//! - `logprobs`: log-probabilities of sampled tokens, read from the raw row on the device.
//! - `prefix_cache`: finished sequences' slots kept, keyed by a hash chain of their tokens; a
//!   new prompt starting with cached tokens copies their KV and prefills only the rest.

mod batcher;
mod logprobs;
mod prefix_cache;
mod queue;
mod sequence;

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use std::sync::Arc;

use crate::job::{CancelFlag, Job};
use crate::plugins::Plugins;
use crate::served_device::{Residency, ServedDevice};

pub use queue::{Admission, SubmitError};

/// Scheduler knobs (from the CLI and the backend).
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The worker's id, on every log line of the scheduler.
    pub worker_id: String,
    /// Sequences decoded together at most.
    pub max_running: usize,
    /// Jobs allowed to wait for admission beyond the running ones.
    pub queue_capacity: usize,
    /// Tokens one device step computes at most (decode tokens + prefill chunks).
    pub step_token_budget: usize,
    /// A job still running this long after it was accepted ends with `INFERENCE_TIMEOUT`.
    pub inference_timeout: Duration,
    /// How often a running job gets a `metrics` event.
    pub metrics_interval: Duration,
    /// Device bytes in use, reported in `metrics` events.
    pub vram_bytes: u64,
    /// How often the scheduler thread re-checks VRAM residency between steps.
    pub residency_interval: Duration,
    /// Keep finished sequences' KV slots and copy a cached prompt prefix into new sequences
    /// (`prefix_cache`); off: every prompt is prefilled whole.
    pub prefix_cache: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            worker_id: String::new(),
            max_running: 32,
            queue_capacity: 64,
            step_token_budget: 128,
            inference_timeout: Duration::from_secs(300),
            metrics_interval: Duration::from_secs(1),
            vram_bytes: 0,
            residency_interval: Duration::from_secs(60),
            prefix_cache: true,
        }
    }
}

pub(crate) enum Command {
    Submit(Box<Job>),
    /// Look at the cancel flags now.
    Wake,
    /// Finish: cancel whatever is left and return the device.
    Stop,
}

/// Handle to the scheduler thread. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    commands: mpsc::Sender<Command>,
    admission: Admission,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

/// Owns the scheduler thread; joining it returns when the thread has stopped.
pub struct SchedulerThread {
    handle: Option<JoinHandle<()>>,
    scheduler: Scheduler,
}

impl std::fmt::Debug for SchedulerThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerThread").finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Start the scheduler thread; it owns `device` until [`SchedulerThread::stop`]. A failed
    /// residency check is recorded in `residency` (the worker turns `unhealthy`).
    pub fn spawn(
        device: Box<dyn ServedDevice>,
        plugins: Plugins,
        config: SchedulerConfig,
        residency: Arc<Residency>,
    ) -> std::io::Result<SchedulerThread> {
        let (tx, rx) = mpsc::channel();
        let admission = Admission::new(config.max_running + config.queue_capacity);
        let loop_admission = admission.clone();
        let handle = std::thread::Builder::new()
            .name("orcd-scheduler".into())
            .spawn(move || batcher::run(device, plugins, config, rx, loop_admission, residency))?;
        Ok(SchedulerThread {
            handle: Some(handle),
            scheduler: Scheduler {
                commands: tx,
                admission,
            },
        })
    }

    /// Register `job_id` and reserve a place for it, before the prompt is tokenized. The
    /// returned flag cancels it.
    pub fn reserve(&self, job_id: &str) -> Result<CancelFlag, SubmitError> {
        self.admission.reserve(job_id)
    }

    /// Give back a reservation that never became a job (the request failed before submit).
    pub fn release(&self, job_id: &str) {
        self.admission.finish(job_id);
    }

    /// Hand a reserved job to the scheduler thread.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        let id = job.id.clone();
        self.commands
            .send(Command::Submit(Box::new(job)))
            .map_err(|_| {
                self.admission.finish(&id);
                SubmitError::Stopped
            })
    }

    /// Cancel a job by id. Unknown ids (finished, never seen) are ignored: cancel is idempotent.
    pub fn cancel(&self, job_id: &str) {
        if self.admission.cancel(job_id) {
            let _ = self.commands.send(Command::Wake);
        }
    }

    /// Wake the loop so that it sees a flag set elsewhere (a client that went away).
    pub fn wake(&self) {
        let _ = self.commands.send(Command::Wake);
    }

    /// Jobs reserved, waiting or running.
    pub fn in_flight(&self) -> usize {
        self.admission.in_flight()
    }

    /// Refuse new jobs from now on (shutdown); running and queued ones go on.
    pub fn close(&self) {
        self.admission.close();
    }

    /// Wait until no job is in flight.
    pub async fn drained(&self) {
        self.admission.drained().await
    }
}

impl SchedulerThread {
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Stop the thread (jobs still running end with `CANCELLED`) and wait for it.
    pub fn stop(mut self) {
        let _ = self.scheduler.commands.send(Command::Stop);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
