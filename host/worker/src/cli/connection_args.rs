//! `serve` flags of the connection layer (see `server::connections` and `docs/api.md`,
//! "Connection limits").

use std::time::Duration;

use worker_orcd::server::{BodyRate, ConnectionLimits};

#[derive(clap::Args, Debug, Clone)]
pub struct ConnectionArgs {
    /// Seconds a connection may take to send a complete request head, counted from when it
    /// starts waiting for one: a fresh connection, or a kept-alive one after its last response
    /// (so this is also the idle keep-alive timeout).
    #[arg(long, default_value_t = 10)]
    pub header_read_timeout_sec: u64,
    /// Seconds a request body may take before the minimum rate applies.
    #[arg(long, default_value_t = 10)]
    pub body_timeout_sec: u64,
    /// Bytes per second a request body must keep up after `--body-timeout-sec` (a body that
    /// has sent N bytes may have taken `body-timeout-sec + N / body-min-rate` seconds).
    #[arg(long, default_value_t = 65_536)]
    pub body_min_rate: u64,
    /// Connections served at once; one more is answered 503 `WORKER_BUSY` and closed.
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,
}

impl ConnectionArgs {
    pub fn limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_sec.max(1)),
            body: BodyRate {
                grace: Duration::from_secs(self.body_timeout_sec.max(1)),
                min_rate: self.body_min_rate.max(1),
            },
            max_connections: self.max_connections.max(1),
        }
    }
}
