//! A request body that must keep up a minimum rate: it fails once it has taken longer than
//! `grace + received_bytes / min_rate` since the request head arrived.
//!
//! Why not tower-http's `RequestBodyTimeoutLayer`: its timeout resets on every frame, so a client
//! that drips one byte every half second holds the request (and its connection) for as long as
//! the body limit allows. Here the allowance grows only with the bytes actually received: a
//! slow drip or a `Content-Length` that promises more than is sent is cut after about `grace`,
//! while a large body sent at a normal rate is never cut. The handler sees a body error (its
//! extractor answers 400 `INVALID_REQUEST` naming `body`) and hyper closes the connection,
//! since the rest of the body was never read.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The body arrived slower than the configured minimum rate.
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body arrived too slowly ({received} bytes in {elapsed_ms} ms; at least \
     {min_rate} bytes/s after a {grace_ms} ms grace)"
)]
pub struct BodyTooSlow {
    pub received: u64,
    pub elapsed_ms: u128,
    pub min_rate: u64,
    pub grace_ms: u128,
}

/// The rate a request body must keep up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyRate {
    /// Time allowed before the rate applies (covers a slow start and small bodies).
    pub grace: Duration,
    /// Bytes per second, at least 1.
    pub min_rate: u64,
}

impl BodyRate {
    /// How long a body that has delivered `received` bytes may have taken in all.
    fn allowance(&self, received: u64) -> Duration {
        self.grace + Duration::from_secs_f64(received as f64 / self.min_rate.max(1) as f64)
    }
}

/// `B` with a deadline that moves out as bytes arrive.
pub struct MinRateBody<B> {
    inner: B,
    rate: BodyRate,
    start: Instant,
    received: u64,
    deadline: Pin<Box<Sleep>>,
}

impl<B> MinRateBody<B> {
    pub fn new(inner: B, rate: BodyRate) -> Self {
        let start = Instant::now();
        MinRateBody {
            inner,
            rate,
            start,
            received: 0,
            deadline: Box::pin(tokio::time::sleep_until(start + rate.allowance(0))),
        }
    }
}

impl<B> Body for MinRateBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    let deadline = this.start + this.rate.allowance(this.received);
                    this.deadline.as_mut().reset(deadline);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTooSlow {
                    received: this.received,
                    elapsed_ms: this.start.elapsed().as_millis(),
                    min_rate: this.rate.min_rate,
                    grace_ms: this.rate.grace.as_millis(),
                })))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn the_allowance_grows_with_the_bytes_received() {
        let rate = BodyRate {
            grace: Duration::from_secs(2),
            min_rate: 1000,
        };
        assert_eq!(rate.allowance(0), Duration::from_secs(2));
        assert_eq!(rate.allowance(3000), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_stalled_body_fails_after_the_grace_and_a_full_one_passes() {
        let rate = BodyRate {
            grace: Duration::from_millis(300),
            min_rate: 1,
        };
        // A channel body that sends one chunk and then stalls (a lying Content-Length).
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes, axum::BoxError>::new(4);
        tx.send_data(Bytes::from_static(b"0123456789"))
            .await
            .unwrap();
        let err = MinRateBody::new(body, rate).collect().await.unwrap_err();
        let slow = err.downcast_ref::<BodyTooSlow>().expect("BodyTooSlow");
        assert_eq!(slow.received, 10);
        drop(tx);

        let full = http_body_util::Full::new(Bytes::from_static(b"{}"));
        let got = MinRateBody::new(full, rate).collect().await.unwrap();
        assert_eq!(got.to_bytes(), Bytes::from_static(b"{}"));
    }
}
