//! `worker-orcd` as a library: the HTTP/SSE service, the continuous-batching scheduler and the
//! worker's lifecycle. The binary (`main.rs`) adds the command line.
//!
//! Data flow of a request: HTTP body -> request-handler plugin (parse) -> tokenizer plugin ->
//! [`scheduler`] (one thread owns the device; batched steps) -> sampler plugin -> tokenizer
//! plugin (streaming decode) -> request-handler plugin (SSE rendering) -> client.

pub mod error_code;
pub mod job;
pub mod lifecycle;
pub mod log_format;
pub mod model_facts;
pub mod plugin_bridge;
pub mod plugins;
pub mod progress;
pub mod scheduler;
pub mod served_device;
pub mod server;
pub mod telemetry;
pub mod utf8_stream;
