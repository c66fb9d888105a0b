//! Admission: which job ids are in flight, how many may be, and whether new ones are taken.
//!
//! A job is reserved when its HTTP request arrives (so `/cancel` can reach it even while its
//! prompt is being tokenized) and finished when its terminal event has been sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::error_code::ErrorCode;
use crate::job::CancelFlag;

/// Why a job was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the worker is busy: {in_flight} jobs in flight (limit {limit}); retry later")]
    QueueFull { in_flight: usize, limit: usize },
    #[error("the worker is shutting down and takes no new jobs")]
    ShuttingDown,
    #[error("a job with id `{0}` is already in flight")]
    DuplicateJobId(String),
    #[error("the scheduler has stopped")]
    Stopped,
}

impl SubmitError {
    pub fn code(&self) -> ErrorCode {
        match self {
            SubmitError::QueueFull { .. } => ErrorCode::WorkerBusy,
            SubmitError::ShuttingDown => ErrorCode::ShuttingDown,
            SubmitError::DuplicateJobId(_) => ErrorCode::InvalidRequest,
            SubmitError::Stopped => ErrorCode::Internal,
        }
    }
}

struct State {
    active: HashMap<String, CancelFlag>,
    closed: bool,
}

/// Shared admission state (HTTP tasks and the scheduler thread).
#[derive(Clone)]
pub struct Admission {
    state: Arc<Mutex<State>>,
    limit: usize,
    drained: Arc<Notify>,
}

impl Admission {
    pub fn new(limit: usize) -> Admission {
        Admission {
            state: Arc::new(Mutex::new(State {
                active: HashMap::new(),
                closed: false,
            })),
            limit,
            drained: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere while holding it; the map is still sound.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn reserve(&self, job_id: &str) -> Result<CancelFlag, SubmitError> {
        let mut s = self.lock();
        if s.closed {
            return Err(SubmitError::ShuttingDown);
        }
        if s.active.contains_key(job_id) {
            return Err(SubmitError::DuplicateJobId(job_id.to_string()));
        }
        if s.active.len() >= self.limit {
            return Err(SubmitError::QueueFull {
                in_flight: s.active.len(),
                limit: self.limit,
            });
        }
        let flag = CancelFlag::default();
        s.active.insert(job_id.to_string(), flag.clone());
        Ok(flag)
    }

    /// Set a job's cancel flag; false when no such job is in flight.
    pub fn cancel(&self, job_id: &str) -> bool {
        match self.lock().active.get(job_id) {
            Some(flag) => {
                flag.cancel();
                true
            }
            None => false,
        }
    }

    pub fn finish(&self, job_id: &str) {
        let mut s = self.lock();
        s.active.remove(job_id);
        if s.active.is_empty() {
            self.drained.notify_waiters();
        }
    }

    pub fn in_flight(&self) -> usize {
        self.lock().active.len()
    }

    pub fn close(&self) {
        self.lock().closed = true;
    }

    pub async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_unique_and_closable() {
        let a = Admission::new(2);
        let f = a.reserve("a").unwrap();
        assert_eq!(
            a.reserve("a").err(),
            Some(SubmitError::DuplicateJobId("a".into()))
        );
        a.reserve("b").unwrap();
        assert!(matches!(a.reserve("c"), Err(SubmitError::QueueFull { .. })));
        assert!(a.cancel("a"));
        assert!(f.is_cancelled());
        assert!(!a.cancel("zzz"));
        a.finish("a");
        a.reserve("c").unwrap();
        a.close();
        a.finish("b");
        assert_eq!(a.reserve("d").err(), Some(SubmitError::ShuttingDown));
        assert_eq!(a.in_flight(), 1);
    }

    #[tokio::test]
    async fn drained_returns_once_empty() {
        let a = Admission::new(4);
        a.reserve("x").unwrap();
        let b = a.clone();
        let t = tokio::spawn(async move { b.drained().await });
        tokio::task::yield_now().await;
        assert!(!t.is_finished());
        a.finish("x");
        t.await.unwrap();
    }
}
