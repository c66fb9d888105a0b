//! A job's events as an SSE body: `started` first, then what the scheduler sends, each rendered
//! to SSE text by the request-handler plugin, ending after the terminal event. While nothing
//! happens the body carries SSE comments, so a client that went away is noticed (the write
//! fails) even while its job waits in the queue; dropping the body before the end cancels the
//! job.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::Response;
use tokio::time::{Interval, MissedTickBehavior};

use super::state::AppState;
use super::submit::Submitted;
use crate::error_code::ErrorCode;
use crate::job::JobEvent;

/// How often an idle stream gets an SSE comment line.
const KEEP_ALIVE: Duration = Duration::from_millis(500);

/// The `started` event of a job.
pub fn started_event(state: &AppState, job_id: &str) -> JobEvent {
    JobEvent::Started {
        job_id: job_id.to_string(),
        model: state.model.name.clone(),
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}

/// Host rendering of an `error` event, used only when the handler plugin itself failed, so the
/// stream still ends with exactly one terminal event.
fn fallback_error(code: ErrorCode, message: &str) -> String {
    let data = serde_json::json!({"code": code, "message": message, "retriable": code.retriable()});
    format!("event: error\ndata: {data}\n\n")
}

/// Render one event through the handler plugin; returns the SSE text and whether it ends the
/// stream.
fn render(state: &AppState, event: &JobEvent) -> (String, bool) {
    match state.plugins.handler.render_event(event) {
        Ok(text) => (text, event.is_terminal()),
        Err(f) => {
            tracing::warn!(event = "error", code = %f.code, plugin = %f.plugin, "{}", f.message);
            let msg = format!("plugin {} failed to render an event", f.plugin);
            (fallback_error(f.code, &msg), true)
        }
    }
}

struct StreamState {
    state: AppState,
    sub: Submitted,
    first: Option<JobEvent>,
    done: bool,
    keep_alive: Interval,
}

/// The SSE response of `/execute`.
pub fn execute_stream(state: AppState, submitted: Submitted) -> Response {
    let started = started_event(&state, &submitted.job_id);
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
    keep_alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let init = StreamState {
        state,
        sub: submitted,
        first: Some(started),
        done: false,
        keep_alive,
    };
    let stream = futures_util::stream::unfold(init, |mut s| async move {
        if s.done {
            return None;
        }
        let event = match s.first.take() {
            Some(ev) => ev,
            None => {
                // Skip the interval's immediate first tick.
                tokio::select! {
                    biased;
                    ev = s.sub.events.recv() => match ev {
                        Some(ev) => ev,
                        None => JobEvent::error(ErrorCode::Internal, "the scheduler stopped"),
                    },
                    _ = s.keep_alive.tick() => {
                        return Some((Ok::<_, Infallible>(Bytes::from_static(b": keep-alive\n\n")), s));
                    }
                }
            }
        };
        s.keep_alive.reset();
        let (text, ends_stream) = render(&s.state, &event);
        if event.is_terminal() {
            // The job is over; closing the stream must not cancel anything.
            s.sub.guard.disarm();
        }
        // A rendering failure ends the stream early; dropping it then cancels the job.
        s.done = ends_stream;
        Some((Ok(Bytes::from(text)), s))
    });
    Response::builder()
        .header(CONTENT_TYPE, "text/event-stream")
        .header(CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
