//! The path every generation request takes before its stream starts: check the sampler and its
//! parameters (the plugin's `validate`), reserve the job id, tokenize
//! the prompt (off the async threads), check the token limits, pick the seed, hand the job to the
//! scheduler. Shared by `/execute` and the OpenAI endpoints.

use std::time::Instant;

use tokio::sync::mpsc;
use tracing::info;

use super::error::AppError;
use super::job_id::validate_job_id;
use super::state::AppState;
use crate::error_code::ErrorCode;
use crate::job::{BUILTIN_CONSTRAINT, CancelFlag, ConstraintSpec, GenParams, Job, JobEvent};
use crate::plugins::ConstraintSession;

/// A submitted job as its HTTP task holds it: the event stream, and a guard that cancels the
/// job if the task goes away before the terminal event (client disconnect).
pub struct Submitted {
    pub job_id: String,
    pub events: mpsc::UnboundedReceiver<JobEvent>,
    pub guard: CancelOnDrop,
}

/// Cancels its job when dropped, unless disarmed after the terminal event.
pub struct CancelOnDrop {
    flag: CancelFlag,
    state: AppState,
    armed: bool,
}

impl CancelOnDrop {
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.flag.cancel();
            self.state.scheduler.wake();
        }
    }
}

/// Releases a reservation unless the job reached the scheduler.
struct Reservation<'a> {
    state: &'a AppState,
    job_id: &'a str,
    kept: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.state.scheduler.release(self.job_id);
        }
    }
}

/// Reserve, tokenize, submit. Errors here are answered as plain HTTP errors.
pub async fn submit(
    state: &AppState,
    job_id: String,
    prompt: String,
    params: GenParams,
) -> Result<Submitted, AppError> {
    let mut all = submit_n(state, job_id, prompt, params, 1).await?;
    Ok(all.remove(0))
}

/// `n` jobs over one prompt (OpenAI's `n`): the prompt tokenized once, each job its own
/// sequence with its own constraint session and seed (the request's seed plus the choice's
/// index, so every choice is reproducible and no two share a seed). With `n` > 1 the job ids
/// are `{job_id}-{index}`. If any job cannot be submitted, those already submitted are
/// cancelled (their guards drop).
pub async fn submit_n(
    state: &AppState,
    job_id: String,
    prompt: String,
    params: GenParams,
    n: usize,
) -> Result<Vec<Submitted>, AppError> {
    let accepted_at = Instant::now();
    // The handler plugin checked an `/execute` id already; a plugin is not trusted.
    validate_job_id(&job_id)?;
    let ids: Vec<String> = if n == 1 {
        vec![job_id]
    } else {
        (0..n).map(|i| format!("{job_id}-{i}")).collect()
    };
    for id in &ids {
        validate_job_id(id)?;
    }
    // The sampler is loaded and accepts the parameters (a fresh plugin instance: off the
    // async threads), before anything is reserved or streamed.
    let sampler = state.plugins.sampler.clone();
    let checked = params.clone();
    tokio::task::spawn_blocking(move || sampler.validate(&checked))
        .await
        .map_err(|e| AppError::new(ErrorCode::Internal, format!("sampler task failed: {e}")))??;
    // The constraint compiles (the plugin's automaton for this vocabulary), off the async
    // threads: a schema it cannot enforce is a 400 naming the field, before any event. Each
    // choice gets its own session (the automaton is cached per constraint), and with
    // `tool_choice: "auto"` its own trigger session too.
    let mut constraints = Vec::with_capacity(n);
    for _ in 0..n {
        let trigger = params.tool_trigger.as_ref().map(|t| ConstraintSpec {
            plugin: BUILTIN_CONSTRAINT.into(),
            kind: "regex".into(),
            spec: t.regex.clone(),
            field: "tool_choice".into(),
        });
        constraints.push((
            compile(state, params.constraint.clone()).await?,
            compile(state, trigger).await?,
        ));
    }
    let mut reservations = Vec::with_capacity(n);
    for id in &ids {
        let flag = state.scheduler.reserve(id)?;
        reservations.push((
            Reservation {
                state,
                job_id: id,
                kept: false,
            },
            flag,
        ));
    }
    let tokenizer = state.plugins.tokenizer.clone();
    let tokens = tokio::task::spawn_blocking(move || tokenizer.encode(&prompt))
        .await
        .map_err(|e| AppError::new(ErrorCode::Internal, format!("tokenizer task failed: {e}")))??;
    let max_in = state
        .limits
        .max_tokens_in
        .unwrap_or(usize::MAX)
        .min(state.model.context_length.saturating_sub(1));
    if tokens.is_empty() {
        return Err(AppError::invalid("prompt", "tokenizes to no tokens"));
    }
    if tokens.len() > max_in {
        return Err(AppError::invalid(
            "prompt",
            format!("{} tokens, at most {max_in} allowed", tokens.len()),
        ));
    }
    // The budget bounds each sequence (each choice is one).
    if let Some(budget) = &state.limits.compute {
        budget.admit(tokens.len(), params.max_tokens, state.model.context_length)?;
    }
    let base_seed = params.seed.unwrap_or_else(rand::random);
    let first_id = ids[0].clone();
    let mut submitted = Vec::with_capacity(n);
    for (index, ((mut reservation, flag), (constraint, trigger))) in
        reservations.into_iter().zip(constraints).enumerate()
    {
        let seed = base_seed.wrapping_add(index as u64);
        let job_id = reservation.job_id.to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        info!(
            event = "execute_start",
            worker_id = %state.worker_id,
            job_id = %job_id,
            prompt_tokens = tokens.len(),
            max_tokens = params.max_tokens,
            seed,
            "job accepted"
        );
        let job = Job {
            id: job_id.clone(),
            prompt_tokens: tokens.clone(),
            params: params.clone(),
            seed,
            cancel: flag.clone(),
            accepted_at,
            events: tx,
            constraint,
            trigger,
            // The choices after the first copy its prompt's KV (when the device can).
            shares_prompt_of: (index > 0).then(|| first_id.clone()),
        };
        state.scheduler.submit(job)?;
        reservation.kept = true;
        drop(reservation);
        submitted.push(Submitted {
            job_id,
            events: rx,
            guard: CancelOnDrop {
                flag,
                state: state.clone(),
                armed: true,
            },
        });
    }
    Ok(submitted)
}

/// Compile `spec` with the constraint plugin it names, off the async threads.
async fn compile(
    state: &AppState,
    spec: Option<ConstraintSpec>,
) -> Result<Option<Box<dyn ConstraintSession>>, AppError> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    let factory = state.plugins.constraint.clone();
    let session = tokio::task::spawn_blocking(move || factory.compile(&spec))
        .await
        .map_err(|e| {
            AppError::new(ErrorCode::Internal, format!("constraint task failed: {e}"))
        })??;
    Ok(Some(session))
}
