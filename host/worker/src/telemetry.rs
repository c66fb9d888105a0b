//! Prometheus metrics: the series the worker spec names plus latency histograms, recorded through
//! the `metrics` facade and rendered by `metrics-exporter-prometheus` for `GET /metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Gauge: device bytes held (weights + KV cache + scratch).
pub const VRAM_BYTES: &str = "worker_vram_bytes";
/// Counter, label `outcome` = success | error | cancelled | timeout.
pub const REQUESTS_TOTAL: &str = "worker_requests_total";
/// Counter: generated tokens.
pub const TOKENS_GENERATED_TOTAL: &str = "worker_tokens_generated_total";
/// Counter: prompt tokens (served: each choice of an `n` > 1 request counts its prompt).
pub const TOKENS_IN_TOTAL: &str = "worker_tokens_in_total";
/// Counter: prompt positions the device computed (prefill): `worker_tokens_in_total` less what
/// the prefix cache and `n` > 1 sharing copied.
pub const PROMPT_TOKENS_COMPUTED_TOTAL: &str = "worker_prompt_tokens_computed_total";
/// Counter: prompt positions an `n` > 1 choice copied from the request's first choice.
pub const PROMPT_SHARED_TOKENS_TOTAL: &str = "worker_prompt_shared_tokens_total";
/// Histogram: accepted -> terminal event, milliseconds.
pub const INFERENCE_DURATION_MS: &str = "worker_inference_duration_ms";
/// Histogram: accepted -> first generated token, milliseconds.
pub const TIME_TO_FIRST_TOKEN_MS: &str = "worker_time_to_first_token_ms";
/// Histogram: gap between consecutive generated tokens of one job, milliseconds.
pub const INTER_TOKEN_LATENCY_MS: &str = "worker_inter_token_latency_ms";
/// Gauge: seconds since the worker started.
pub const UPTIME_SECONDS: &str = "worker_uptime_seconds";
/// Gauge: jobs waiting for a KV-cache slot.
pub const QUEUE_DEPTH: &str = "worker_queue_depth";
/// Gauge: sequences in the running batch.
pub const RUNNING_SEQUENCES: &str = "worker_running_sequences";
/// Counter, label `code` = a stable error code: every error a client was answered with, once
/// per request: a refusal before the job existed (an HTTP error response, a refused connection)
/// or the job's terminal `error` event (also for a client that had gone away).
pub const ERRORS_TOTAL: &str = "worker_errors_total";
/// Counter: connections refused at the connection cap (each also counts as `WORKER_BUSY`).
pub const CONNECTIONS_REFUSED_TOTAL: &str = "worker_connections_refused_total";
/// Histogram: tokens computed by one device step (prefill chunks + decode tokens).
pub const STEP_TOKENS: &str = "worker_step_tokens";
/// Counter: admissions that looked for a cached prompt prefix (prefix caching on).
pub const PREFIX_CACHE_LOOKUPS_TOTAL: &str = "worker_prefix_cache_lookups_total";
/// Counter: admissions whose prompt start was copied from a cached slot instead of prefilled.
pub const PREFIX_CACHE_HITS_TOTAL: &str = "worker_prefix_cache_hits_total";
/// Counter: prompt tokens copied from cached slots (not recomputed).
pub const PREFIX_CACHE_HIT_TOKENS_TOTAL: &str = "worker_prefix_cache_hit_tokens_total";
/// Counter: cached slots freed because a reservation needed their room.
pub const PREFIX_CACHE_EVICTIONS_TOTAL: &str = "worker_prefix_cache_evictions_total";
/// Gauge: finished sequences' slots kept for prefix reuse.
pub const PREFIX_CACHE_SLOTS: &str = "worker_prefix_cache_slots";
/// Gauge: positions whose keys and values the kept slots hold.
pub const PREFIX_CACHE_TOKENS: &str = "worker_prefix_cache_tokens";
/// Gauge: KV-cache positions the kept slots reserve: not free, but given back on demand.
pub const PREFIX_CACHE_RESERVED_TOKENS: &str = "worker_prefix_cache_reserved_tokens";
/// Changes of the plugin directory, by `change` (`loaded`, `replaced`, `unloaded`, `released`,
/// `failed`).
pub const PLUGIN_CHANGES_TOTAL: &str = "worker_plugin_changes_total";
/// Plugins in service.
pub const PLUGINS_LOADED: &str = "worker_plugins_loaded";

/// The `outcome` label values of [`REQUESTS_TOTAL`].
pub mod outcome {
    pub const SUCCESS: &str = "success";
    pub const ERROR: &str = "error";
    pub const CANCELLED: &str = "cancelled";
    pub const TIMEOUT: &str = "timeout";
}

/// Milliseconds buckets for the latency histograms (1 ms .. 10 min).
const LATENCY_BUCKETS_MS: &[f64] = &[
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0,
    30_000.0, 60_000.0, 300_000.0, 600_000.0,
];
const STEP_TOKEN_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Count one error answered with `code` (see [`ERRORS_TOTAL`]).
pub fn count_error(code: crate::error_code::ErrorCode) {
    metrics::counter!(ERRORS_TOTAL, "code" => code.as_str()).increment(1);
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use. One per process: several
/// workers started by one test process share it.
pub fn prometheus() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_ms".to_string()), LATENCY_BUCKETS_MS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(STEP_TOKENS.to_string()), STEP_TOKEN_BUCKETS)
            })
            .expect("bucket lists are non-empty constants");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding program); then the series
        // go there and `/metrics` renders what this handle saw (nothing), which is not fatal.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                event = "startup",
                "a metrics recorder was already installed"
            );
        }
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_gauge!(
        VRAM_BYTES,
        metrics::Unit::Bytes,
        "Device memory held by the worker"
    );
    metrics::describe_counter!(REQUESTS_TOTAL, "Finished jobs by outcome");
    metrics::describe_counter!(TOKENS_GENERATED_TOTAL, "Generated tokens");
    metrics::describe_counter!(TOKENS_IN_TOTAL, "Prompt tokens");
    metrics::describe_counter!(
        PROMPT_TOKENS_COMPUTED_TOTAL,
        "Prompt positions computed by the device (not copied)"
    );
    metrics::describe_counter!(
        PROMPT_SHARED_TOKENS_TOTAL,
        "Prompt positions an n > 1 choice copied from its first choice"
    );
    metrics::describe_histogram!(INFERENCE_DURATION_MS, "Job duration, accepted to end (ms)");
    metrics::describe_histogram!(TIME_TO_FIRST_TOKEN_MS, "Accepted to first token (ms)");
    metrics::describe_histogram!(INTER_TOKEN_LATENCY_MS, "Gap between tokens of a job (ms)");
    metrics::describe_gauge!(
        UPTIME_SECONDS,
        metrics::Unit::Seconds,
        "Seconds since start"
    );
    metrics::describe_gauge!(QUEUE_DEPTH, "Jobs waiting for admission");
    metrics::describe_gauge!(RUNNING_SEQUENCES, "Sequences in the running batch");
    metrics::describe_histogram!(STEP_TOKENS, "Tokens per device step");
    metrics::describe_counter!(
        PLUGIN_CHANGES_TOTAL,
        "Plugin directory changes by kind of change"
    );
    metrics::describe_gauge!(PLUGINS_LOADED, "Plugins in service");
    // Every outcome appears from the first scrape on, at zero.
    for o in [
        outcome::SUCCESS,
        outcome::ERROR,
        outcome::CANCELLED,
        outcome::TIMEOUT,
    ] {
        metrics::counter!(REQUESTS_TOTAL, "outcome" => o).increment(0);
    }
    metrics::describe_counter!(ERRORS_TOTAL, "Errors answered, by code");
    metrics::describe_counter!(
        CONNECTIONS_REFUSED_TOTAL,
        "Connections refused at the connection cap"
    );
    for code in crate::error_code::ErrorCode::ALL {
        metrics::counter!(ERRORS_TOTAL, "code" => code.as_str()).increment(0);
    }
    metrics::counter!(CONNECTIONS_REFUSED_TOTAL).increment(0);
    metrics::counter!(TOKENS_GENERATED_TOTAL).increment(0);
    metrics::counter!(TOKENS_IN_TOTAL).increment(0);
    metrics::counter!(PROMPT_TOKENS_COMPUTED_TOTAL).increment(0);
    metrics::counter!(PROMPT_SHARED_TOKENS_TOTAL).increment(0);
}
