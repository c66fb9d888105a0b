//! `worker-orcd generate`: greedy generation from token ids, printed as JSON.
//!
//! ```text
//! worker-orcd generate --model PATH --prompt-ids 1,2,3 --max-tokens N --temperature 0 --json
//!                      [--backend cpu|cuda] [--gpu-device N] [--threads N] [--exact] [--timings]
//! ```
//! Prints `{"prompt_tokens": [...], "tokens": [...], "text": "..."}`: `text` is the generated
//! tokens decoded by the model's tokenizer *plugin* (null with `--no-text`, or with a warning on
//! stderr when the plugin cannot decode). Generation stops after `--max-tokens` tokens or at one
//! of the model's end-of-generation ids.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use orcd_cpu::{CpuBackend, CpuOptions};
use orcd_device::Device;
use orcd_device::decode::greedy_generate;
use orcd_model::Model;
use orcd_plugin_host::{ModelFacts, PluginHost, PluginHostConfig};

use super::plugin_cache::PluginCacheArgs;

/// The backends the CLI can run on.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// The CPU reference backend.
    #[default]
    Cpu,
    /// The CUDA backend (GPU `--gpu-device`).
    Cuda,
}

/// Options shared by `generate` and `score`: which model, on which backend.
#[derive(clap::Args, Debug)]
pub struct DeviceArgs {
    /// GGUF model file.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
    /// Backend to run the model on.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub backend: Backend,
    /// CPU threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// CPU: exact f32 dot products instead of 8-bit quantized activations.
    #[arg(long)]
    pub exact: bool,
    /// CUDA: GPU index.
    #[arg(long, default_value_t = 0)]
    pub gpu_device: usize,
    /// How the KV cache keeps keys and values: f16, q8_0 or f32.
    #[arg(long, default_value = "f16", value_name = "f16|q8_0|f32")]
    pub kv_type: orcd_model::KvType,
}

impl DeviceArgs {
    /// Load the model onto the chosen backend with room for one sequence of `max_tokens`.
    pub fn open(&self, max_tokens: usize) -> anyhow::Result<(Model, Box<dyn Device>)> {
        let model = load_model(&self.model)?;
        let device: Box<dyn Device> = match self.backend {
            Backend::Cpu => Box::new(
                CpuBackend::new(
                    model.clone(),
                    CpuOptions {
                        threads: self.threads,
                        kv_tokens_budget: max_tokens,
                        kv_type: self.kv_type,
                        exact: self.exact,
                        ..CpuOptions::default()
                    },
                )
                .context("cannot start the CPU backend")?,
            ),
            Backend::Cuda => Box::new(
                orcd_cuda::CudaBackend::new(
                    model.clone(),
                    orcd_cuda::CudaOptions {
                        gpu: self.gpu_device,
                        kv_tokens_budget: Some(max_tokens),
                        kv_type: self.kv_type,
                        ..orcd_cuda::CudaOptions::default()
                    },
                )
                .context("cannot start the CUDA backend")?,
            ),
        };
        Ok((model, device))
    }
}

fn load_model(path: &Path) -> anyhow::Result<Model> {
    Model::open(path).with_context(|| format!("cannot load the model {}", path.display()))
}

/// Parse `1,2,3` into token ids.
pub fn parse_ids(s: &str) -> anyhow::Result<Vec<u32>> {
    let ids = s
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<u32>()
                .with_context(|| format!("`{p}` is not a token id"))
        })
        .collect::<anyhow::Result<Vec<u32>>>()?;
    if ids.is_empty() {
        bail!("no token ids given");
    }
    Ok(ids)
}

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Prompt token ids, comma-separated.
    #[arg(long, value_name = "IDS", value_parser = parse_ids)]
    pub prompt_ids: std::vec::Vec<u32>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 32)]
    pub max_tokens: usize,
    /// Sampling temperature; only 0 (greedy) for now.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Print one JSON object (the only output format for now; accepted for clarity).
    #[arg(long)]
    pub json: bool,
    /// Print prefill and decode speed to stderr.
    #[arg(long)]
    pub timings: bool,
    /// Leave `text` null instead of decoding the tokens with the tokenizer plugin.
    #[arg(long)]
    pub no_text: bool,
    #[command(flatten)]
    pub cache: PluginCacheArgs,
}

/// The tokens as text, through the model's tokenizer plugin (special tokens included).
fn decode_text(
    model: &Model,
    path: &Path,
    ids: &[u32],
    cache: Option<PathBuf>,
) -> anyhow::Result<String> {
    let vocab = orcd_model::vocab::from_gguf(&model.gguf).context("no usable vocabulary")?;
    let c = &model.config;
    let facts = ModelFacts {
        architecture: c.arch.name().to_string(),
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        vocab_size: vocab.len() as u32,
        context_length: c.context_length as u32,
        bos: vocab.bos,
        eos: vocab.eos,
        eot: vocab.eot,
    };
    let cfg = PluginHostConfig {
        cache_dir: cache,
        ..PluginHostConfig::default()
    };
    let host = PluginHost::new(cfg, facts, &vocab).context("cannot start the plugin runtime")?;
    let mut tokenizer = host.tokenizer().context("no tokenizer plugin")?;
    let bytes = tokenizer
        .decode(ids, false)
        .context("the tokenizer plugin failed")?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

pub fn run(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    if args.temperature != 0.0 {
        bail!(
            "--temperature {}: only greedy decoding (0) is available here; sampling arrives with \
             the sampler plugin",
            args.temperature
        );
    }
    let prompt = &args.prompt_ids;
    let (model, mut dev) = args.device.open(prompt.len() + args.max_tokens)?;
    let stop = &model.config.eos_token_ids;
    let out = greedy_generate(dev.as_mut(), prompt, args.max_tokens, stop)?;
    let text = if args.no_text {
        None
    } else {
        decode_text(
            &model,
            &args.device.model,
            &out.tokens,
            args.cache.resolve()?,
        )
        .inspect_err(|e| eprintln!("warning: no text: {e:#}"))
        .ok()
    };
    let json = serde_json::json!({
        "prompt_tokens": prompt,
        "tokens": out.tokens,
        "text": text,
    });
    println!("{json}");
    if args.timings {
        let prefill = out.prefill_time.as_secs_f64();
        let decode_steps = out.tokens.len().saturating_sub(1);
        let decode = out.decode_time.as_secs_f64();
        eprintln!(
            "prefill: {} tokens in {:.1} ms ({:.1} tok/s); decode: {decode_steps} tokens in \
             {:.1} ms ({:.1} tok/s); {}",
            prompt.len(),
            prefill * 1e3,
            prompt.len() as f64 / prefill,
            decode * 1e3,
            decode_steps as f64 / decode,
            dev.info().name
        );
    }
    Ok(ExitCode::SUCCESS)
}
