//! Shared helpers of the worker's tests: start a worker in-process on port 0, read SSE streams
//! with a real SSE client, fetch the test models, run the `worker-orcd` binary.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use orcd_tests::models::fetch_model;
use serde_json::Value;
use worker_orcd::lifecycle::{self, RunningWorker, WorkerOptions, WorkerParts};
use worker_orcd::plugins::{Plugins, RequestLimits};
use worker_orcd::scheduler::SchedulerConfig;
use worker_orcd::served_device::ServedDevice;
use worker_orcd::server::{ConnectionLimits, ModelFacts, ServerLimits};

/// Path of SmolLM2-135M-Instruct Q4_1, fetched (and checksummed) by the project's script once
/// per test binary.
pub fn smollm2_path() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(fetch_smollm2).clone()
}

fn fetch_smollm2() -> PathBuf {
    fetch_model("smollm2")
}

/// Path of Gemma 3 270M Q4_K_M, fetched once per test binary.
pub fn gemma3_path() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| fetch_model("gemma3")).clone()
}

/// Runs the `worker-orcd` binary with `args` and waits for it.
pub fn worker_orcd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_worker-orcd"))
        .args(args)
        .output()
        .expect("run worker-orcd")
}

/// Scheduler and limits for tests: small queue, fast metrics events.
pub fn test_options(max_running: usize, queue_capacity: usize) -> WorkerOptions {
    WorkerOptions {
        worker_id: "00000000-0000-4000-8000-000000000001".into(),
        model_ref: "test-model".into(),
        scheduler: SchedulerConfig {
            worker_id: String::new(),
            max_running,
            queue_capacity,
            step_token_budget: 32,
            inference_timeout: Duration::from_secs(120),
            metrics_interval: Duration::from_millis(200),
            vram_bytes: 0,
            residency_interval: Duration::from_secs(60),
            prefix_cache: true,
        },
        limits: ServerLimits {
            request: RequestLimits {
                max_prompt_chars: 32_768,
                max_tokens_out: 2048,
                vocab_size: 0,
            },
            max_tokens_in: None,
            max_body_bytes: 1 << 20,
            compute: None,
        },
        connections: ConnectionLimits::default(),
        callback_url: None,
        handle_sigterm: false,
        api_key: None,
    }
}

/// A worker serving on 127.0.0.1:0.
pub struct TestWorker {
    pub base: String,
    pub worker: RunningWorker,
    pub client: reqwest::Client,
}

pub async fn start(
    device: Box<dyn ServedDevice>,
    plugins: Plugins,
    model: ModelFacts,
    mut options: WorkerOptions,
) -> TestWorker {
    options.limits.request.vocab_size = model.vocab_size as u32;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let worker = lifecycle::start(
        WorkerParts {
            device,
            plugins,
            model,
        },
        options,
        listener,
    )
    .await
    .expect("worker starts");
    TestWorker {
        base: format!("http://{}", worker.addr),
        worker,
        client: reqwest::Client::new(),
    }
}

/// One SSE event: its name and parsed data.
#[derive(Debug, Clone)]
pub struct Sse {
    pub event: String,
    pub data: Value,
}

impl TestWorker {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The `/metrics` page (Prometheus text).
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// POST `/execute` and read the whole SSE stream.
    pub async fn execute(&self, body: &Value) -> Vec<Sse> {
        let resp = self
            .client
            .post(self.url("/execute"))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
        read_sse(resp).await
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

/// Read an SSE response to its end.
pub async fn read_sse(resp: reqwest::Response) -> Vec<Sse> {
    let mut stream = resp.bytes_stream().eventsource();
    let mut out = Vec::new();
    while let Some(ev) = stream.next().await {
        let ev = ev.expect("well-formed SSE");
        let data = serde_json::from_str(&ev.data).unwrap_or(Value::String(ev.data.clone()));
        out.push(Sse {
            event: ev.event,
            data,
        });
    }
    out
}

/// The generated text of a stream.
pub fn text_of(events: &[Sse]) -> String {
    events
        .iter()
        .filter(|e| e.event == "token")
        .map(|e| e.data["t"].as_str().unwrap().to_string())
        .collect()
}

/// Check the spec's event order: `started`, `token`*/`metrics`*, exactly one terminal last.
pub fn assert_well_formed(events: &[Sse]) {
    assert!(!events.is_empty(), "empty stream");
    assert_eq!(events[0].event, "started", "{events:?}");
    let last = events.last().unwrap();
    assert!(last.event == "end" || last.event == "error", "{events:?}");
    for e in &events[1..events.len() - 1] {
        assert!(e.event == "token" || e.event == "metrics", "{events:?}");
    }
    for (expect_i, e) in events.iter().filter(|e| e.event == "token").enumerate() {
        assert_eq!(e.data["i"], expect_i, "{events:?}");
    }
}

pub fn terminal(events: &[Sse]) -> &Sse {
    events.last().expect("non-empty stream")
}

/// The real plugins for SmolLM2's vocabulary, and the model's facts.
pub fn smollm2_plugins() -> (Plugins, ModelFacts, orcd_model::Model) {
    plugins_for(&smollm2_path())
}

/// The real plugins for a model file's vocabulary, the model's facts, and the model.
pub fn plugins_for(path: &std::path::Path) -> (Plugins, ModelFacts, orcd_model::Model) {
    let path = path.to_path_buf();
    let model = orcd_model::Model::open(&path).expect("SmolLM2 loads");
    let facts = worker_orcd::model_facts::model_facts(&model, &path);
    let plugins = worker_orcd::plugin_bridge::load(None, &model, None).expect("plugins load");
    (plugins, facts, model)
}

/// Context length of the test workers' mock devices.
pub const MOCK_CONTEXT: usize = 2048;

/// The mock device of the test workers: seed 7, [`MOCK_CONTEXT`], `kv_tokens` of KV budget.
pub fn mock_device(vocab_size: usize, kv_tokens: usize) -> orcd_device::mock::MockDevice {
    let opts = orcd_device::mock::MockOptions {
        context_length: MOCK_CONTEXT,
        kv_tokens,
        ..Default::default()
    };
    orcd_device::mock::MockDevice::with_options(vocab_size, 7, opts).expect("mock device")
}

/// A worker over the mock device (deterministic logits, no model compute) with SmolLM2's real
/// plugins: the whole request path at test speed.
pub async fn mock_worker(
    max_running: usize,
    queue_capacity: usize,
    kv_tokens: usize,
) -> TestWorker {
    let (plugins, mut facts, _model) = smollm2_plugins();
    let device = mock_device(facts.vocab_size, kv_tokens);
    facts.context_length = MOCK_CONTEXT;
    start(
        Box::new(device),
        plugins,
        facts,
        test_options(max_running, queue_capacity),
    )
    .await
}

/// A worker over the CPU backend running SmolLM2.
pub async fn cpu_worker(max_running: usize, queue_capacity: usize, kv_tokens: usize) -> TestWorker {
    let (plugins, facts, model) = smollm2_plugins();
    let device = orcd_cpu::CpuBackend::new(
        model,
        orcd_cpu::CpuOptions {
            threads: 2,
            kv_tokens_budget: kv_tokens,
            ..Default::default()
        },
    )
    .expect("CPU backend");
    start(
        Box::new(device),
        plugins,
        facts,
        test_options(max_running, queue_capacity),
    )
    .await
}

/// The mock device with test hooks: a pause per step (so that a job outlives a test's checks,
/// the way a long generation on a real model does) and an optional panic at a chosen step (a
/// backend bug).
pub struct TestDevice {
    pub inner: orcd_device::mock::MockDevice,
    pub steps: usize,
    pub panic_at: Option<usize>,
    pub step_delay: Duration,
}

impl orcd_device::Device for TestDevice {
    fn info(&self) -> orcd_device::DeviceInfo {
        self.inner.info()
    }
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }
    fn context_length(&self) -> usize {
        self.inner.context_length()
    }
    fn alloc_seq(
        &mut self,
        max_tokens: usize,
    ) -> Result<orcd_device::SeqSlot, orcd_device::EngineError> {
        self.inner.alloc_seq(max_tokens)
    }
    fn free_seq(&mut self, slot: orcd_device::SeqSlot) {
        self.inner.free_seq(slot)
    }
    fn free_kv_tokens(&self) -> usize {
        self.inner.free_kv_tokens()
    }
    fn copy_kv_prefix(
        &mut self,
        from: orcd_device::SeqSlot,
        to: orcd_device::SeqSlot,
        n_tokens: usize,
    ) -> Result<(), orcd_device::EngineError> {
        self.inner.copy_kv_prefix(from, to, n_tokens)
    }
    fn kv_prefix_kept(
        &self,
        from: orcd_device::SeqSlot,
        n_tokens: usize,
        to_max_tokens: usize,
    ) -> bool {
        self.inner.kv_prefix_kept(from, n_tokens, to_max_tokens)
    }
    fn forward(
        &mut self,
        batch: &[orcd_device::SeqInput<'_>],
    ) -> Result<usize, orcd_device::EngineError> {
        self.steps += 1;
        if self.panic_at == Some(self.steps) {
            panic!("injected backend bug at step {}", self.steps);
        }
        std::thread::sleep(self.step_delay);
        self.inner.forward(batch)
    }
    fn logits_argmax(&self, row: usize) -> Result<(u32, f32), orcd_device::EngineError> {
        self.inner.logits_argmax(row)
    }
    fn logits_top_k(
        &self,
        row: usize,
        k: usize,
    ) -> Result<Vec<(u32, f32)>, orcd_device::EngineError> {
        self.inner.logits_top_k(row, k)
    }
    fn logits_row(&self, row: usize) -> Result<Vec<f32>, orcd_device::EngineError> {
        self.inner.logits_row(row)
    }
    fn logits_penalize(
        &mut self,
        row: usize,
        history: &[u32],
        repeat: f32,
        frequency: f32,
        presence: f32,
    ) -> Result<(), orcd_device::EngineError> {
        self.inner
            .logits_penalize(row, history, repeat, frequency, presence)
    }
    fn logits_mask(&mut self, row: usize, allowed: &[u32]) -> Result<(), orcd_device::EngineError> {
        self.inner.logits_mask(row, allowed)
    }
    fn logits_logsumexp(&self, row: usize) -> Result<f32, orcd_device::EngineError> {
        self.inner.logits_logsumexp(row)
    }
    fn logits_gather(&self, row: usize, ids: &[u32]) -> Result<Vec<f32>, orcd_device::EngineError> {
        self.inner.logits_gather(row, ids)
    }
}

impl ServedDevice for TestDevice {
    fn verify_residency(&self) -> Result<usize, orcd_device::EngineError> {
        Ok(0)
    }
}

/// Like [`mock_worker`], with 20 ms per device step: a 2000-token job runs for about 40 s, so
/// a test that sees it end early has seen it cancelled.
pub async fn slow_mock_worker(
    max_running: usize,
    queue_capacity: usize,
    kv_tokens: usize,
) -> TestWorker {
    let (plugins, mut facts, _model) = smollm2_plugins();
    let device = TestDevice {
        inner: mock_device(facts.vocab_size, kv_tokens),
        steps: 0,
        panic_at: None,
        step_delay: Duration::from_millis(20),
    };
    facts.context_length = MOCK_CONTEXT;
    start(
        Box::new(device),
        plugins,
        facts,
        test_options(max_running, queue_capacity),
    )
    .await
}

/// The value of the series `name` (with its labels, as rendered) in a Prometheus text page;
/// `None` when the page has no such series (e.g. a counter never incremented).
pub fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
