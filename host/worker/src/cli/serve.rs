//! `worker-orcd serve` (the default without a subcommand): load the model onto the chosen
//! backend, load the plugins, serve the HTTP API until `POST /shutdown` or SIGTERM.
//!
//! Startup order (worker spec): init device, load model, start the HTTP server, then the ready
//! callback. A startup failure logs its code, the GPU id, the model path and memory figures, and
//! exits non-zero.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use orcd_cpu::{CpuBackend, CpuOptions};
use orcd_model::KvType;
use orcd_model::Model;
use tracing::{error, info, warn};
use worker_orcd::lifecycle::{self, WorkerOptions, WorkerParts};
use worker_orcd::model_facts::model_facts;
use worker_orcd::plugin_bridge;
use worker_orcd::plugins::RequestLimits;
use worker_orcd::scheduler::SchedulerConfig;
use worker_orcd::served_device::ServedDevice;
use worker_orcd::server::{ApiKey, ComputeBudget, ComputeCost, ServerLimits};

use super::connection_args::ConnectionArgs;

/// Longest prompt in characters (worker spec).
const MAX_PROMPT_CHARS: usize = 32_768;
/// Largest request body accepted, in bytes.
const MAX_BODY_BYTES: usize = 1 << 20;

/// The compute backend.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The GPU (fails at startup when CUDA is not available; there is no CPU fallback).
    Cuda,
    /// The CPU reference backend.
    Cpu,
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// This worker's id (a UUID), reported in logs and the ready callback.
    #[arg(long)]
    pub worker_id: Option<String>,
    /// Path to the GGUF model file.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// GPU index (CUDA backend).
    #[arg(long, default_value_t = 0)]
    pub gpu_device: u32,
    /// Port to listen on (0 picks a free one; the ready log and callback report it).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on: loopback by default; `0.0.0.0` (or a NIC's address) for an
    /// orchestrator on another machine, with --api-key.
    #[arg(long, alias = "host", default_value = "127.0.0.1")]
    pub bind: String,
    /// Require `Authorization: Bearer KEY` on every route but `GET /health`. Prefer the
    /// environment variable, which `ps` does not show.
    #[arg(long, env = "ORCD_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Names the OpenAI routes answer to (the first is the id `/v1/models` lists); a request
    /// naming another model gets 404 MODEL_NOT_FOUND. Default: any name, and the id is the
    /// model file's stem.
    #[arg(long, num_args = 1.., value_name = "NAME")]
    pub served_model_name: Vec<String>,
    /// `POST {"worker_id","model_ref","vram_bytes","uri"}` here once ready; failure is fatal.
    #[arg(long)]
    pub callback_url: Option<String>,
    /// Longest prompt in tokens (default: the model's context minus one).
    #[arg(long)]
    pub max_tokens_in: Option<usize>,
    /// Largest `max_tokens` a request may ask for.
    #[arg(long, default_value_t = 2048)]
    pub max_tokens_out: u32,
    /// Refuse at admission a request whose worst case (prompt tokens + `max_tokens`) needs more
    /// than this many GFLOPs on the loaded model (see `docs/api.md`, "Compute limit"); unset:
    /// no bound beyond `--inference-timeout-sec`.
    #[arg(long)]
    pub max_request_gflop: Option<f64>,
    /// A job still running this many seconds after it arrived ends with INFERENCE_TIMEOUT.
    #[arg(long, default_value_t = 300)]
    pub inference_timeout_sec: u64,
    /// KV-cache budget in MiB for all sequences together (default: the backend's default);
    /// it holds as many positions as the `--kv-type` makes fit.
    #[arg(long)]
    pub kv_cache_size_mb: Option<u64>,
    /// How the KV cache keeps keys and values: f16 (as llama.cpp), q8_0 (about half of f16's
    /// bytes) or f32 (exact).
    #[arg(long, default_value = "f16", value_name = "f16|q8_0|f32")]
    pub kv_type: KvType,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Cuda)]
    pub backend: Backend,
    /// Directory with the plugin components (default: the ones built into the worker).
    #[arg(long)]
    pub plugin_dir: Option<PathBuf>,
    #[command(flatten)]
    pub cache: super::plugin_cache::PluginCacheArgs,
    /// CPU backend threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Sequences decoded together at most.
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// Jobs that may wait beyond the running batch; more get 503 WORKER_BUSY.
    #[arg(long, default_value_t = 64)]
    pub queue_capacity: usize,
    /// Tokens one device step computes at most (prefill chunks plus decode tokens).
    #[arg(long)]
    pub step_tokens: Option<usize>,
    /// Turn prefix caching off: finished sequences' KV slots are freed at once and every
    /// prompt is prefilled whole (by default they are kept, and a prompt that starts with
    /// cached tokens copies their KV and prefills only the rest). The CUDA backend serves
    /// without it for now (its copy kernel awaits a GPU run; logged at startup).
    #[arg(long)]
    pub no_prefix_cache: bool,
    /// Seconds between scans of `--plugin-dir` for new or updated plugins (0: only at startup).
    #[arg(long, default_value_t = 5)]
    pub plugin_rescan_sec: u64,
    /// Seconds between VRAM residency checks (CUDA backend).
    #[arg(long, default_value_t = 60)]
    pub residency_check_sec: u64,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    pub log_json: bool,
    #[command(flatten)]
    pub connections: ConnectionArgs,
}

/// A worker id from the flag (it must be a UUID) or a fresh random one.
fn worker_id(flag: Option<&str>) -> anyhow::Result<String> {
    match flag {
        Some(id) => {
            let parsed = uuid::Uuid::parse_str(id)
                .with_context(|| format!("--worker-id `{id}` is not a UUID"))?;
            Ok(parsed.hyphenated().to_string())
        }
        None => Ok(uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .hyphenated()
            .to_string()),
    }
}

fn open_device(
    args: &ServeArgs,
    model: Model,
) -> Result<Box<dyn ServedDevice>, orcd_device::EngineError> {
    match args.backend {
        Backend::Cpu => {
            let opts = CpuOptions {
                threads: args.threads,
                kv_cache_bytes: args.kv_cache_size_mb.map(|mb| mb.saturating_mul(1 << 20)),
                kv_type: args.kv_type,
                ..CpuOptions::default()
            };
            Ok(Box::new(CpuBackend::new(model, opts)?))
        }
        Backend::Cuda => {
            let opts = orcd_cuda::CudaOptions {
                gpu: args.gpu_device as usize,
                kv_cache_bytes: args.kv_cache_size_mb.map(|mb| mb.saturating_mul(1 << 20)),
                kv_type: args.kv_type,
                ..orcd_cuda::CudaOptions::default()
            };
            Ok(Box::new(orcd_cuda::CudaBackend::new(model, opts)?))
        }
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    worker_orcd::log_format::init(args.log_json);
    let worker_id = worker_id(args.worker_id.as_deref())?;
    let Some(model_path) = args.model.clone() else {
        anyhow::bail!("--model is required (path to a .gguf file)");
    };
    let api_key = match args.api_key.as_deref() {
        None => None,
        Some(key) => Some(
            ApiKey::new(key).context("--api-key / ORCD_API_KEY is empty; give a key or none")?,
        ),
    };
    if let Some(bad) = args.served_model_name.iter().find(|n| n.trim().is_empty()) {
        anyhow::bail!("--served-model-name `{bad}`: a name must not be empty");
    }
    let plugin_cache = args.cache.resolve()?;
    info!(
        event = "startup",
        worker_id = %worker_id,
        model = %model_path.display(),
        backend = ?args.backend,
        gpu_device = args.gpu_device,
        "starting"
    );
    info!(event = "model_load_start", worker_id = %worker_id, model = %model_path.display(), "loading model");
    let loaded = Model::open(&model_path).map(|model| {
        let facts = model_facts(&model, &model_path);
        (model, facts)
    });
    let (model, mut facts) = match loaded {
        Ok(m) => m,
        Err(e) => {
            error!(event = "error", worker_id = %worker_id, code = e.code().as_str(), model = %model_path.display(), gpu_device = args.gpu_device, "model load failed: {e}");
            return Err(anyhow::anyhow!("{}: {e}", e.code()));
        }
    };
    if let Some(first) = args.served_model_name.first() {
        facts.id = first.clone();
        facts.served_names = args.served_model_name.clone();
    }
    let compute_cost = ComputeCost::of(&model.config);
    let rescan = (args.plugin_rescan_sec > 0).then(|| Duration::from_secs(args.plugin_rescan_sec));
    let plugins = plugin_bridge::load_cached(
        args.plugin_dir.as_deref(),
        plugin_cache.as_deref(),
        &model,
        rescan,
    )
    .map_err(|f| anyhow::anyhow!("{}: {f}", f.code))?;
    if args.backend == Backend::Cpu {
        // The CPU backend runs the weights in place from the mapped file: nothing to copy.
        info!(event = "model_load_progress", worker_id = %worker_id, percent = 0, "preparing the CPU backend");
    }
    let device = match open_device(&args, model) {
        Ok(d) => d,
        Err(e) => {
            let (required, available) = match &e {
                orcd_device::EngineError::InsufficientVram {
                    required,
                    available,
                } => (Some(*required), Some(*available)),
                _ => (None, None),
            };
            error!(
                event = "error",
                worker_id = %worker_id,
                code = e.code().as_str(),
                model = %model_path.display(),
                gpu_device = args.gpu_device,
                backend = ?args.backend,
                vram_required = required,
                vram_available = available,
                "device init failed: {e}"
            );
            return Err(anyhow::anyhow!(
                "{}: {e} (backend {:?}, GPU {}, model {})",
                e.code(),
                args.backend,
                args.gpu_device,
                model_path.display()
            ));
        }
    };
    if args.backend == Backend::Cpu {
        info!(event = "model_load_progress", worker_id = %worker_id, percent = 100, "CPU backend ready");
    }
    let info = device.info();
    let kv_type = args.kv_type;
    info!(
        event = "model_load_complete",
        worker_id = %worker_id,
        model = %facts.name,
        device = %info.name,
        weights_bytes = info.weights_bytes,
        kv_cache_bytes = info.kv_cache_bytes,
        kv_type = %kv_type,
        kv_tokens = device.free_kv_tokens(),
        "model loaded"
    );
    // CPU: a 16-token chunk takes ~0.1 s here (SmolLM2, 2 cores), which keeps cancel and the
    // other sequences' inter-token latency near 100 ms at no cost in time to first token.
    let default_step = if args.backend == Backend::Cpu {
        16
    } else {
        512
    };
    // The CUDA backend's prefix copy (`kv_copy_prefix`) is written and tested against the CPU's
    // semantics but has not yet run on a GPU: until it has, CUDA serves without the prefix
    // cache, and says so here, rather than run an unverified kernel under every request.
    let prefix_cache = !args.no_prefix_cache && args.backend == Backend::Cpu;
    if !args.no_prefix_cache && !prefix_cache {
        info!(
            event = "prefix_cache_off",
            worker_id = %worker_id,
            "prefix cache off on the CUDA backend: its KV copy kernel is not yet verified on a GPU"
        );
    }
    let options = WorkerOptions {
        worker_id: worker_id.clone(),
        model_ref: model_path.display().to_string(),
        scheduler: SchedulerConfig {
            max_running: args.max_batch.max(1),
            queue_capacity: args.queue_capacity,
            step_token_budget: args.step_tokens.unwrap_or(default_step).max(1),
            inference_timeout: Duration::from_secs(args.inference_timeout_sec.max(1)),
            residency_interval: Duration::from_secs(args.residency_check_sec.max(1)),
            prefix_cache,
            ..SchedulerConfig::default()
        },
        limits: ServerLimits {
            request: RequestLimits {
                max_prompt_chars: MAX_PROMPT_CHARS,
                max_tokens_out: args.max_tokens_out.max(1),
                vocab_size: facts.vocab_size as u32,
            },
            max_tokens_in: args.max_tokens_in,
            max_body_bytes: MAX_BODY_BYTES,
            compute: args.max_request_gflop.map(|max_gflop| ComputeBudget {
                cost: compute_cost,
                max_gflop,
            }),
        },
        connections: args.connections.limits(),
        callback_url: args.callback_url.clone(),
        handle_sigterm: true,
        api_key: api_key.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("orcd-http")
        .build()
        .context("cannot start the async runtime")?;
    let bind = format!("{}:{}", args.bind, args.port);
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&bind)
            .await
            .with_context(|| format!("cannot listen on {bind}"))?;
        let addr = listener
            .local_addr()
            .context("cannot read the listening address")?;
        if !addr.ip().is_loopback() && api_key.is_none() {
            warn!(
                event = "open_listener",
                worker_id = %worker_id,
                %addr,
                "listening beyond loopback without an API key: anyone who can reach {addr} can \
                 run jobs, cancel them and shut the worker down; set ORCD_API_KEY (or --api-key)"
            );
        }
        let worker = lifecycle::start(
            WorkerParts {
                device,
                plugins,
                model: facts,
            },
            options,
            listener,
        )
        .await?;
        worker.wait().await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
