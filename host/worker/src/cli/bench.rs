//! `worker-orcd bench`: the worker's speed on one model and backend, measured the way
//! llama.cpp's `llama-bench` and `llama-batched-bench` measure theirs, so the figures compare.
//!
//! ```text
//! worker-orcd bench --model PATH [--backend cpu|cuda] [--gpu-device N] [--threads N]
//!                   [--repeats N] [--json] [--skip pp,tg,batched,http,plugin]
//!                   [--pp 512] [--tg 128] [--batches 8,32,64] [--batch-prompt 128]
//!                   [--batch-tg 128] [--ttft-prompt 128] [--ttft-repeats 5]
//! ```
//!
//! Parts, each in its own row; a part that fails prints its reason there and the others go on:
//! - `load`: file open to a device holding the model; `memory`: the backend's bytes for weights,
//!   KV cache and scratch (VRAM on CUDA, RAM on the CPU), from its `DeviceInfo`.
//! - `pp512`: one sequence, 512 seeded random prompt tokens in one `forward` (the backend chunks
//!   it as it does), logits of the last token; median over `--repeats` after one warm-up.
//! - `tg128`: batch 1, one prompt token, then 128 decode steps with greedy `logits_argmax`;
//!   median over `--repeats` after a warm-up sequence.
//! - `batch N`: N sequences, each a 128-token prompt then 128 decode steps, every sequence in one
//!   `forward` per step; aggregate decode tok/s over all sequences (median over `--repeats`).
//! - `ttft http`: the real server in-process on 127.0.0.1:0 with the same model and backend
//!   (the bench's own device is released first); `POST /execute` with a 128-token prompt and
//!   `max_tokens` 1, timed to the first `token` SSE event; median of `--ttft-repeats`.
//! - `plugin sample`: the `standard` sampler plugin's `sample` call against the device's
//!   logits row (the device does argmax/top-k; the plugin gets the results), µs per call.
//!
//! With `--json` the table goes to stderr and one JSON object to stdout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use orcd_engine::cpu::{CpuBackend, CpuOptions};
use orcd_engine::model::Model;
use orcd_engine::{Device, DeviceInfo, EngineError, LogitsWanted, SeqInput, SeqSlot};
use serde::Serialize;
use worker_orcd::job::GenParams;
use worker_orcd::lifecycle::{self, WorkerOptions, WorkerParts};
use worker_orcd::model_facts::model_facts;
use worker_orcd::plugin_bridge;
use worker_orcd::plugins::{Plugins, RequestLimits};
use worker_orcd::progress::{Progress, Unit};
use worker_orcd::scheduler::SchedulerConfig;
use worker_orcd::served_device::ServedDevice;
use worker_orcd::server::{ConnectionLimits, ServerLimits};

use super::generate::Backend;

/// Untimed decode steps of the tg warm-up sequence.
const WARMUP_STEPS: usize = 16;
/// Prompt tokens one prefill `forward` of the batched test carries at most (whole sequences).
const BATCH_PREFILL_TOKENS: usize = 512;
/// Prompt tokens before the plugin-cost row is taken.
const PLUGIN_PROMPT: usize = 32;
/// Untimed `sample` calls before timing.
const PLUGIN_WARMUP: usize = 20;
/// Rows of the plugin-cost test (greedy, top-k).
const PLUGIN_SETUPS: usize = 2;
/// Scheduler step budget of the in-process server, as `serve` sets it per backend by default
/// (keep in step with `cli/serve.rs`; `--step-tokens` overrides).
const SERVE_STEP_TOKENS_CPU: usize = 16;
const SERVE_STEP_TOKENS_CUDA: usize = 512;

/// The parts `--skip` can leave out.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Prefill (ppN).
    Pp,
    /// Batch-1 decode (tgN).
    Tg,
    /// Decode of many sequences at once.
    Batched,
    /// Time to first token through the HTTP server.
    Http,
    /// Sampler plugin cost per token.
    Plugin,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// GGUF model file.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
    /// Backend to run the model on.
    #[arg(long, value_enum, default_value_t = Backend::Cuda)]
    pub backend: Backend,
    /// CUDA: GPU index.
    #[arg(long, default_value_t = 0)]
    pub gpu_device: usize,
    /// CPU threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// How the KV cache keeps keys and values: f16, q8_0 or f32.
    #[arg(long, default_value = "f16", value_name = "f16|q8_0|f32")]
    pub kv_type: orcd_engine::KvType,
    /// Timed runs of each part; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Print one JSON object on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Parts to leave out, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub skip: Vec<Part>,
    /// Prompt tokens of the prefill test.
    #[arg(long, default_value_t = 512)]
    pub pp: usize,
    /// Decode steps of the batch-1 test.
    #[arg(long, default_value_t = 128)]
    pub tg: usize,
    /// Sequence counts of the batched decode test, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "8,32,64")]
    pub batches: Vec<usize>,
    /// Prompt tokens of each sequence in the batched test.
    #[arg(long, default_value_t = 128)]
    pub batch_prompt: usize,
    /// Decode steps of each sequence in the batched test.
    #[arg(long, default_value_t = 128)]
    pub batch_tg: usize,
    /// Prompt tokens of the time-to-first-token request.
    #[arg(long, default_value_t = 128)]
    pub ttft_prompt: usize,
    /// Timed time-to-first-token requests (after one warm-up request).
    #[arg(long, default_value_t = 5)]
    pub ttft_repeats: usize,
    /// Tokens one step of the in-process server computes at most (default: `serve`'s default
    /// for the backend).
    #[arg(long)]
    pub step_tokens: Option<usize>,
    /// Timed `sample` calls of the plugin-cost test.
    #[arg(long, default_value_t = 200)]
    pub plugin_iters: usize,
    /// Seed of the random prompt token ids.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[command(flatten)]
    pub cache: super::plugin_cache::PluginCacheArgs,
}

/// One row of the report.
#[derive(Debug, Serialize)]
struct Row {
    /// Stable key: `load`, `memory`, `pp512`, `tg128`, `batch8`, `ttft_http`, `plugin_greedy`, ...
    id: String,
    /// Whether the part ran.
    ok: bool,
    /// The headline figure (absent when the part failed).
    value: Option<f64>,
    unit: &'static str,
    /// Every timed figure behind `value`.
    samples: Vec<f64>,
    /// What was measured, or why it failed.
    detail: String,
}

impl Row {
    fn ok(id: impl Into<String>, value: f64, unit: &'static str, samples: Vec<f64>) -> Row {
        Row {
            id: id.into(),
            ok: true,
            value: Some(value),
            unit,
            samples,
            detail: String::new(),
        }
    }

    fn failed(id: impl Into<String>, unit: &'static str, e: &anyhow::Error) -> Row {
        Row {
            id: id.into(),
            ok: false,
            value: None,
            unit,
            samples: Vec::new(),
            detail: format!("FAILED: {e:#}"),
        }
    }

    fn with(mut self, detail: impl Into<String>) -> Row {
        if self.ok {
            self.detail = detail.into();
        }
        self
    }

    fn result_text(&self) -> String {
        match self.value {
            Some(v) if self.unit == "s" => format!("{v:.3} s"),
            Some(v) if self.unit == "ms" => format!("{v:.1} ms"),
            Some(v) if self.unit == "us" => format!("{v:.1} µs"),
            Some(v) if self.unit == "MiB" => format!("{v:.1} MiB"),
            Some(v) => format!("{v:.1} {}", self.unit),
            None => "-".to_string(),
        }
    }
}

/// What the bench ran on.
#[derive(Debug, Serialize)]
struct Setup {
    model: String,
    model_name: String,
    architecture: String,
    quant: String,
    backend: &'static str,
    /// The card's or the CPU's name.
    device: String,
    /// CUDA: the kernel driver's version and the CUDA version it supports; CPU: none.
    driver: Option<String>,
    sm: Option<String>,
    /// CPU: worker threads asked for (0: one per core).
    threads: Option<usize>,
    repeats: usize,
    seed: u64,
    /// The host's 1/5/15-minute load averages when the bench started (other work skews CPU
    /// figures; a GPU bench is skewed less).
    load_average: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    setup: Setup,
    rows: Vec<Row>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.repeats == 0 || args.pp == 0 || args.tg == 0 {
        bail!("--repeats, --pp and --tg must be at least 1");
    }
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    let mut rows = Vec::new();

    let started = Instant::now();
    let model = Model::open(&args.model)
        .with_context(|| format!("cannot load the model {}", args.model.display()))?;
    let (mut device, budget_note) = open_for_bench(&args, &model)?;
    let load = started.elapsed();
    let info = device.info();
    rows.push(
        Row::ok("load", load.as_secs_f64(), "s", vec![load.as_secs_f64()])
            .with(format!("file open to ready{budget_note}")),
    );
    rows.push(memory_row(&info, device.free_kv_tokens()));

    let facts = model_facts(&model, &args.model);
    let setup = Setup {
        model: args.model.display().to_string(),
        model_name: facts.name.clone(),
        architecture: model.config.arch.name().to_string(),
        quant: facts.quant_kind.clone(),
        backend: info.backend,
        device: device_name(&info),
        driver: driver_version(&info),
        sm: info.sm.clone(),
        threads: (args.backend == Backend::Cpu).then_some(args.threads),
        repeats: args.repeats,
        seed: args.seed,
        load_average,
    };
    eprintln!(
        "bench: {} ({}, {}) on {}",
        setup.model_name, setup.architecture, setup.quant, setup.device
    );

    let vocab = device.vocab_size();
    let mut rng = SplitMix64(args.seed);
    let skip = |p: Part| args.skip.contains(&p);
    let parts: u64 = [
        (Part::Pp, 1),
        (Part::Tg, 1),
        (Part::Batched, args.batches.len()),
        (Part::Plugin, PLUGIN_SETUPS),
        (Part::Http, 1),
    ]
    .iter()
    .filter(|(p, _)| !skip(*p))
    .map(|(_, n)| *n as u64)
    .sum();
    let mut progress = Progress::terminal_only("bench", parts, Unit::Steps("rows"));
    {
        let dev: &mut dyn Device = device.as_mut();
        if !skip(Part::Pp) {
            let id = format!("pp{}", args.pp);
            let prompt = rng.tokens(args.pp, vocab);
            rows.push(match bench_pp(dev, &prompt, args.repeats) {
                Ok(rates) => Row::ok(id, median(&rates), "tok/s", rates).with(format!(
                    "1 sequence, {} prompt tokens in one forward, last logits; median of {}",
                    args.pp, args.repeats
                )),
                Err(e) => Row::failed(id, "tok/s", &e),
            });
            progress.step(&format!("  {}", line(rows.last().expect("a row"))));
        }
        if !skip(Part::Tg) {
            let id = format!("tg{}", args.tg);
            let first = rng.tokens(1, vocab)[0];
            rows.push(match bench_tg(dev, first, args.tg, args.repeats) {
                Ok(rates) => Row::ok(id, median(&rates), "tok/s", rates).with(format!(
                    "batch 1, greedy argmax, after {WARMUP_STEPS} warm-up steps; median of {}",
                    args.repeats
                )),
                Err(e) => Row::failed(id, "tok/s", &e),
            });
            progress.step(&format!("  {}", line(rows.last().expect("a row"))));
        }
        if !skip(Part::Batched) {
            for &n in &args.batches {
                let id = format!("batch{n}");
                let prompts: Vec<Vec<u32>> = (0..n)
                    .map(|_| rng.tokens(args.batch_prompt, vocab))
                    .collect();
                rows.push(
                    match bench_batched(dev, &prompts, args.batch_tg, args.repeats) {
                        Ok(b) => {
                            Row::ok(id, median(&b.decode), "tok/s", b.decode.clone()).with(format!(
                                "{n} sequences x ({} prompt + {} decode), aggregate decode \
                                 (prefill {:.1} tok/s); median of {}",
                                args.batch_prompt,
                                args.batch_tg,
                                median(&b.prefill),
                                args.repeats
                            ))
                        }
                        Err(e) => Row::failed(id, "tok/s", &e),
                    },
                );
                progress.step(&format!("  {}", line(rows.last().expect("a row"))));
            }
        }
    }

    let plugins = if skip(Part::Plugin) && skip(Part::Http) {
        None
    } else {
        let cache = args.cache.resolve()?;
        Some(
            plugin_bridge::load_cached(None, cache.as_deref(), &model, None)
                .map_err(|f| anyhow::anyhow!("plugins failed to load: {}: {f}", f.code)),
        )
    };
    if !skip(Part::Plugin) {
        let prompt = rng.tokens(PLUGIN_PROMPT, vocab);
        let setups: [_; PLUGIN_SETUPS] = [
            (
                "plugin_greedy",
                "standard sampler, greedy",
                GenParams {
                    temperature: 0.0,
                    ..GenParams::default()
                },
            ),
            (
                "plugin_topk",
                "standard sampler, temperature 0.8, top-k 40, top-p 0.95",
                GenParams {
                    temperature: 0.8,
                    top_k: 40,
                    top_p: 0.95,
                    ..GenParams::default()
                },
            ),
        ];
        for (id, what, params) in setups {
            let result = match &plugins {
                Some(Ok(p)) => bench_plugin(
                    device.as_mut(),
                    p,
                    &params,
                    &prompt,
                    args.plugin_iters.max(1),
                ),
                Some(Err(e)) => Err(anyhow::anyhow!("{e:#}")),
                None => Err(anyhow::anyhow!("the plugins were not loaded")),
            };
            rows.push(match result {
                Ok(us) => Row::ok(id, median(&us), "us", Vec::new()).with(format!(
                    "{what}: one `sample` call on the device's logits (vocab {vocab}); median \
                     of {}, p90 {:.1} µs",
                    us.len(),
                    percentile(&us, 0.9)
                )),
                Err(e) => Row::failed(id, "us", &e),
            });
            progress.step(&format!("  {}", line(rows.last().expect("a row"))));
        }
    }
    // The server gets its own device: release this one first (VRAM).
    drop(device);

    if !skip(Part::Http) {
        let result = match plugins {
            Some(Ok(p)) => bench_http(&args, &model, p),
            Some(Err(e)) => Err(e),
            None => Err(anyhow::anyhow!("the plugins were not loaded")),
        };
        rows.push(match result {
            Ok((ms, prompt_tokens, step_tokens)) => {
                Row::ok("ttft_http", median(&ms), "ms", ms.clone()).with(format!(
                    "POST /execute ({prompt_tokens}-token prompt, max_tokens 1) to the first \
                     `token` event, in-process server (step budget {step_tokens} tokens); median \
                     of {}",
                    ms.len()
                ))
            }
            Err(e) => Row::failed("ttft_http", "ms", &e),
        });
        progress.step(&format!("  {}", line(rows.last().expect("a row"))));
    }

    progress.finish();
    let report = Report { setup, rows };
    let table = render(&report);
    if args.json {
        eprint!("{table}");
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{table}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Granularity to which a sequence's KV reservation is rounded here: a multiple of every
/// backend's allocation unit (the CUDA backend reserves 16-token pages, the CPU exact positions),
/// so `n` sequences of `len` tokens always fit in `n * kv_per_sequence(len)` positions.
const KV_ROUND_TOKENS: usize = 64;

/// KV positions one sequence of `len` tokens reserves at most, on any backend.
fn kv_per_sequence(len: usize) -> usize {
    len.div_ceil(KV_ROUND_TOKENS) * KV_ROUND_TOKENS
}

/// KV positions the device-level parts need at once (the largest of them).
fn kv_needed(args: &BenchArgs) -> usize {
    let batched = if args.skip.contains(&Part::Batched) {
        0
    } else {
        args.batches.iter().max().copied().unwrap_or(0)
            * kv_per_sequence(args.batch_prompt + 1 + args.batch_tg)
    };
    [
        args.pp,
        1 + args.tg,
        1 + WARMUP_STEPS,
        PLUGIN_PROMPT,
        batched,
    ]
    .into_iter()
    .max()
    .unwrap_or(1)
}

/// Load the model for the device-level parts with KV room for all of them; when the device
/// cannot hold that much, fall back to the backend's default budget (the batched rows then say
/// what did not fit). Returns a note for the load row.
fn open_for_bench(
    args: &BenchArgs,
    model: &Model,
) -> anyhow::Result<(Box<dyn ServedDevice>, String)> {
    let need = kv_needed(args);
    match open_device(args, model.clone(), Some(need)) {
        Ok(d) => Ok((d, format!(" (KV budget {need} positions)"))),
        Err(first) => {
            let d = open_device(args, model.clone(), None)
                .with_context(|| format!("cannot start the {:?} backend", args.backend))?;
            Ok((
                d,
                format!(" (the backend's default KV budget: {need} positions failed: {first})"),
            ))
        }
    }
}

/// The backend with the model and `kv_tokens` KV positions (`None`: the backend's default).
fn open_device(
    args: &BenchArgs,
    model: Model,
    kv_tokens: Option<usize>,
) -> Result<Box<dyn ServedDevice>, EngineError> {
    Ok(match args.backend {
        Backend::Cpu => {
            let mut opts = CpuOptions {
                threads: args.threads,
                kv_type: args.kv_type,
                ..CpuOptions::default()
            };
            if let Some(t) = kv_tokens {
                opts.kv_tokens_budget = t;
            }
            Box::new(CpuBackend::new(model, opts)?)
        }
        Backend::Cuda => Box::new(orcd_cuda::CudaBackend::new(
            model,
            orcd_cuda::CudaOptions {
                gpu: args.gpu_device,
                kv_tokens_budget: kv_tokens,
                kv_type: args.kv_type,
                ..orcd_cuda::CudaOptions::default()
            },
        )?),
    })
}

/// CUDA: the kernel driver's version (from `/proc/driver/nvidia/version`, when readable) and
/// the CUDA version the driver supports (from the backend); CPU: none.
fn driver_version(info: &DeviceInfo) -> Option<String> {
    let cuda = info.runtime_version.as_ref()?;
    let kernel = std::fs::read_to_string("/proc/driver/nvidia/version")
        .ok()
        .and_then(|s| kernel_module_version(&s));
    Some(match kernel {
        Some(k) => format!("{k} (CUDA {cuda})"),
        None => format!("CUDA {cuda}"),
    })
}

/// The version in `/proc/driver/nvidia/version`'s first line, e.g. "580.159.04" from "NVRM
/// version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build ...": the first
/// word after "Kernel Module" that starts with a digit and has a dot.
fn kernel_module_version(proc_version: &str) -> Option<String> {
    let after = proc_version.lines().next()?.split("Kernel Module").nth(1)?;
    after
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()) && w.contains('.'))
        .map(str::to_string)
}

/// The card's name, or the CPU's model name and the backend's thread count.
fn device_name(info: &DeviceInfo) -> String {
    if info.backend != "cpu" {
        return info.name.clone();
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    format!("{cpu}, {}", info.name)
}

fn memory_row(info: &DeviceInfo, free_kv: usize) -> Row {
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let total = info.weights_bytes + info.kv_cache_bytes + info.scratch_bytes;
    let place = if info.backend == "cpu" { "RAM" } else { "VRAM" };
    Row::ok("memory", mib(total), "MiB", vec![mib(total)]).with(format!(
        "{place}: weights {:.1} + KV cache {:.1} ({free_kv} positions) + scratch {:.1} MiB",
        mib(info.weights_bytes),
        mib(info.kv_cache_bytes),
        mib(info.scratch_bytes)
    ))
}

/// Reserve `n` slots of `max_tokens`; on failure nothing stays reserved.
fn alloc_slots(dev: &mut dyn Device, n: usize, max_tokens: usize) -> anyhow::Result<Vec<SeqSlot>> {
    let mut slots = Vec::with_capacity(n);
    for i in 0..n {
        match dev.alloc_seq(max_tokens) {
            Ok(s) => slots.push(s),
            Err(e) => {
                free_slots(dev, &slots);
                bail!(
                    "KV cache cannot hold {n} sequences of {max_tokens} tokens (sequence {} \
                     failed, {} positions free): {e}",
                    i + 1,
                    dev.free_kv_tokens()
                );
            }
        }
    }
    Ok(slots)
}

fn free_slots(dev: &mut dyn Device, slots: &[SeqSlot]) {
    for &s in slots {
        dev.free_seq(s);
    }
}

/// Run `f` over `n` fresh slots and release them whatever happens.
fn with_slots<T>(
    dev: &mut dyn Device,
    n: usize,
    max_tokens: usize,
    f: impl FnOnce(&mut dyn Device, &[SeqSlot]) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let slots = alloc_slots(dev, n, max_tokens)?;
    let result = f(dev, &slots);
    free_slots(dev, &slots);
    result
}

/// Prefill tok/s of one `prompt`, one warm-up run then `repeats` timed ones. The argmax of the
/// last row ends each timing, so an asynchronous backend has finished the step.
fn bench_pp(dev: &mut dyn Device, prompt: &[u32], repeats: usize) -> anyhow::Result<Vec<f64>> {
    let mut rates = Vec::with_capacity(repeats);
    for run in 0..=repeats {
        let elapsed = with_slots(dev, 1, prompt.len(), |dev, slots| {
            let t = Instant::now();
            dev.forward(&[SeqInput {
                slot: slots[0],
                start_pos: 0,
                tokens: prompt,
                logits: LogitsWanted::Last,
            }])?;
            dev.logits_argmax(0)?;
            Ok(t.elapsed())
        })?;
        if run > 0 {
            rates.push(prompt.len() as f64 / elapsed.as_secs_f64());
        }
    }
    Ok(rates)
}

/// `steps` greedy decode steps of every sequence in `slots` together, one `forward` each.
/// `next[i]` is sequence i's next input token and `pos` its position; both advance.
fn decode(
    dev: &mut dyn Device,
    slots: &[SeqSlot],
    next: &mut [u32],
    pos: &mut usize,
    steps: usize,
) -> anyhow::Result<()> {
    for _ in 0..steps {
        let batch: Vec<SeqInput<'_>> = slots
            .iter()
            .zip(next.iter())
            .map(|(&slot, tok)| SeqInput {
                slot,
                start_pos: *pos,
                tokens: std::slice::from_ref(tok),
                logits: LogitsWanted::Last,
            })
            .collect();
        let rows = dev.forward(&batch)?;
        drop(batch);
        if rows != slots.len() {
            bail!(
                "forward returned {rows} logits rows for {} sequences",
                slots.len()
            );
        }
        for (row, tok) in next.iter_mut().enumerate() {
            *tok = dev.logits_argmax(row)?.0;
        }
        *pos += 1;
    }
    Ok(())
}

/// Batch-1 decode tok/s: a warm-up sequence, then `repeats` sequences of one prompt token and
/// `tg` timed greedy steps.
fn bench_tg(
    dev: &mut dyn Device,
    first: u32,
    tg: usize,
    repeats: usize,
) -> anyhow::Result<Vec<f64>> {
    run_timed(dev, first, WARMUP_STEPS)?;
    let mut rates = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let elapsed = run_timed(dev, first, tg)?;
        rates.push(tg as f64 / elapsed.as_secs_f64());
    }
    Ok(rates)
}

/// One batch-1 sequence: prefill `first`, then time `tg` greedy decode steps.
fn run_timed(dev: &mut dyn Device, first: u32, tg: usize) -> anyhow::Result<Duration> {
    with_slots(dev, 1, 1 + tg, |dev, slots| {
        let mut next = [first];
        let mut pos = 0;
        decode(dev, slots, &mut next, &mut pos, 1)?;
        let t = Instant::now();
        decode(dev, slots, &mut next, &mut pos, tg)?;
        Ok(t.elapsed())
    })
}

struct Batched {
    /// Aggregate prefill tok/s per run.
    prefill: Vec<f64>,
    /// Aggregate decode tok/s per run.
    decode: Vec<f64>,
}

/// Many sequences at once (llama-batched-bench's shape): prefill every prompt (whole sequences,
/// up to [`BATCH_PREFILL_TOKENS`] tokens per forward), one untimed decode step (per-shape
/// setup such as CUDA graph capture), then `tg` timed steps with all sequences in each forward.
fn bench_batched(
    dev: &mut dyn Device,
    prompts: &[Vec<u32>],
    tg: usize,
    repeats: usize,
) -> anyhow::Result<Batched> {
    let n = prompts.len();
    if n == 0 {
        bail!("a batch needs at least one sequence");
    }
    let prompt_len = prompts[0].len();
    let per_forward = (BATCH_PREFILL_TOKENS / prompt_len.max(1)).max(1);
    let mut out = Batched {
        prefill: Vec::new(),
        decode: Vec::new(),
    };
    for _ in 0..repeats {
        let (prefill, decode_time) = with_slots(dev, n, prompt_len + 1 + tg, |dev, slots| {
            let mut next = vec![0u32; n];
            let t = Instant::now();
            for (group, chunk) in slots.chunks(per_forward).enumerate() {
                let base = group * per_forward;
                let batch: Vec<SeqInput<'_>> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, &slot)| SeqInput {
                        slot,
                        start_pos: 0,
                        tokens: &prompts[base + i],
                        logits: LogitsWanted::Last,
                    })
                    .collect();
                dev.forward(&batch)?;
                for i in 0..chunk.len() {
                    next[base + i] = dev.logits_argmax(i)?.0;
                }
            }
            let prefill = t.elapsed();
            let mut pos = prompt_len;
            decode(dev, slots, &mut next, &mut pos, 1)?;
            let t = Instant::now();
            decode(dev, slots, &mut next, &mut pos, tg)?;
            Ok((prefill, t.elapsed()))
        })?;
        out.prefill
            .push((n * prompt_len) as f64 / prefill.as_secs_f64());
        out.decode.push((n * tg) as f64 / decode_time.as_secs_f64());
    }
    Ok(out)
}

/// µs per `sample` call of the sampler plugin on a real logits row of the device.
fn bench_plugin(
    dev: &mut dyn ServedDevice,
    plugins: &Plugins,
    params: &GenParams,
    prompt: &[u32],
    iters: usize,
) -> anyhow::Result<Vec<f64>> {
    let dev: &mut dyn Device = dev;
    with_slots(dev, 1, prompt.len(), |dev, slots| {
        dev.forward(&[SeqInput {
            slot: slots[0],
            start_pos: 0,
            tokens: prompt,
            logits: LogitsWanted::Last,
        }])?;
        let mut session = plugins
            .sampler
            .session(params, 42)
            .map_err(|f| anyhow::anyhow!("{}: {f}", f.code))?;
        let mut sample = |dev: &mut dyn Device| -> anyhow::Result<Duration> {
            let t = Instant::now();
            session
                .sample(dev, 0, prompt)
                .map_err(|f| anyhow::anyhow!("{}: {f}", f.code))?;
            Ok(t.elapsed())
        };
        for _ in 0..PLUGIN_WARMUP {
            sample(dev)?;
        }
        (0..iters)
            .map(|_| sample(dev).map(|d| d.as_secs_f64() * 1e6))
            .collect()
    })
}

/// Time to first token through the real HTTP server: ms per request (after one warm-up
/// request), the prompt's length in tokens and the server's step budget.
fn bench_http(
    args: &BenchArgs,
    model: &Model,
    plugins: Plugins,
) -> anyhow::Result<(Vec<f64>, usize, usize)> {
    let prompts: Vec<(String, usize)> = (0..=args.ttft_repeats)
        .map(|i| prompt_of_tokens(&plugins, args.ttft_prompt, i))
        .collect::<anyhow::Result<_>>()?;
    let prompt_tokens = prompts[0].1;
    let facts = model_facts(model, &args.model);
    let kv = (prompts.iter().map(|p| p.1).max().unwrap_or(0) + 8) * 2;
    let device = open_device(args, model.clone(), Some(kv))
        .with_context(|| format!("cannot start the {:?} backend for the server", args.backend))?;
    let step = args.step_tokens.unwrap_or(match args.backend {
        Backend::Cpu => SERVE_STEP_TOKENS_CPU,
        Backend::Cuda => SERVE_STEP_TOKENS_CUDA,
    });
    let options = WorkerOptions {
        worker_id: "00000000-0000-4000-8000-00000000be7c".into(),
        model_ref: args.model.display().to_string(),
        scheduler: SchedulerConfig {
            step_token_budget: step.max(1),
            ..SchedulerConfig::default()
        },
        limits: ServerLimits {
            request: RequestLimits {
                max_prompt_chars: 32_768,
                max_tokens_out: 16,
                vocab_size: facts.vocab_size as u32,
            },
            max_tokens_in: None,
            max_body_bytes: 1 << 20,
            compute: None,
        },
        connections: ConnectionLimits::default(),
        callback_url: None,
        handle_sigterm: false,
        api_key: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot listen on 127.0.0.1:0")?;
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
        let url = format!("http://{}/execute", worker.addr);
        let client = reqwest::Client::new();
        let mut times = Vec::new();
        let mut failure = None;
        for (i, (prompt, _)) in prompts.iter().enumerate() {
            match first_token(&client, &url, prompt, i).await {
                Ok(d) if i > 0 => times.push(d.as_secs_f64() * 1e3),
                Ok(_) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        worker.request_shutdown();
        worker.wait().await?;
        match failure {
            Some(e) => Err(e),
            None => Ok((times, prompt_tokens, step)),
        }
    })
}

/// One `POST /execute`: the time from sending it to the first `token` event; reads the stream
/// to its end.
async fn first_token(
    client: &reqwest::Client,
    url: &str,
    prompt: &str,
    i: usize,
) -> anyhow::Result<Duration> {
    let body = serde_json::json!({
        "job_id": format!("bench-ttft-{i}"),
        "prompt": prompt,
        "max_tokens": 1,
        "temperature": 0.0,
        "seed": 42,
    });
    let t = Instant::now();
    let mut resp = client.post(url).json(&body).send().await?;
    if !resp.status().is_success() {
        let status = resp.status();
        bail!(
            "/execute answered {status}: {}",
            resp.text().await.unwrap_or_default()
        );
    }
    let mut stream = String::new();
    let mut first = None;
    while let Some(chunk) = resp.chunk().await? {
        stream.push_str(&String::from_utf8_lossy(&chunk));
        if first.is_none() && has_event(&stream, "token") {
            first = Some(t.elapsed());
        }
    }
    if has_event(&stream, "error") {
        bail!("the job failed: {}", stream.trim());
    }
    first.with_context(|| format!("no `token` event in the stream: {}", stream.trim()))
}

/// Whether an SSE text has a complete `event: <name>` line.
fn has_event(stream: &str, name: &str) -> bool {
    stream
        .split('\n')
        .rev()
        .skip(1)
        .any(|l| l.strip_prefix("event:").map(str::trim) == Some(name))
}

/// English words a prompt is built from (each one or two tokens in common vocabularies).
const WORDS: &[&str] = &[
    "the", "river", "carried", "small", "boats", "past", "old", "stone", "houses", "while",
    "children", "watched", "from", "a", "bridge", "and", "counted", "every", "sail", "until",
    "evening", "light", "turned", "water", "gold", "over", "quiet", "town", "near", "hills",
];

/// A text prompt that the model's tokenizer turns into at least `tokens` tokens (words cycle
/// from an offset that differs per `variant`), and its token count.
fn prompt_of_tokens(
    plugins: &Plugins,
    tokens: usize,
    variant: usize,
) -> anyhow::Result<(String, usize)> {
    let mut text = String::new();
    for w in 0..tokens.max(1) * 4 {
        if w > 0 {
            text.push(' ');
        }
        text.push_str(WORDS[(variant * 7 + w) % WORDS.len()]);
        if w % 8 == 7 || w + 1 >= tokens {
            let n = plugins
                .tokenizer
                .encode(&text)
                .map_err(|f| anyhow::anyhow!("{}: {f}", f.code))?
                .len();
            if n >= tokens {
                return Ok((text, n));
            }
        }
    }
    bail!("could not build a prompt of {tokens} tokens")
}

fn median(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

/// The value at fraction `q` of the sorted samples (the upper middle for an even count at 0.5).
fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((s.len() as f64 * q) as usize).min(s.len() - 1);
    s[i]
}

fn line(r: &Row) -> String {
    format!("{}: {} {}", r.id, r.result_text(), r.detail)
}

/// The report as a Markdown table.
fn render(r: &Report) -> String {
    let s = &r.setup;
    let mut out = format!(
        "model: {} ({}, {}, {})\nbackend: {}  device: {}",
        s.model_name, s.architecture, s.quant, s.model, s.backend, s.device
    );
    if let Some(d) = &s.driver {
        out.push_str(&format!("  driver {d}"));
    }
    if let Some(sm) = &s.sm {
        out.push_str(&format!("  sm {sm}"));
    }
    if let Some(t) = s.threads {
        out.push_str(&format!("  --threads {t}"));
    }
    out.push_str(&format!("  repeats {}  seed {}", s.repeats, s.seed));
    if let Some(l) = &s.load_average {
        out.push_str(&format!("  load average at start {l}"));
    }
    out.push_str("\n\n");
    let cells: Vec<[String; 3]> = r
        .rows
        .iter()
        .map(|row| [row.id.clone(), row.result_text(), row.detail.clone()])
        .collect();
    let w0 = cells.iter().map(|c| c[0].len()).max().unwrap_or(0).max(4);
    let w1 = cells
        .iter()
        .map(|c| c[1].chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    out.push_str(&format!(
        "| {:<w0$} | {:<w1$} | detail |\n",
        "test", "result"
    ));
    out.push_str(&format!(
        "|{}|{}|---|\n",
        "-".repeat(w0 + 2),
        "-".repeat(w1 + 2)
    ));
    for c in cells {
        out.push_str(&format!("| {:<w0$} | {:<w1$} | {} |\n", c[0], c[1], c[2]));
    }
    out
}

/// A small seeded generator for prompt token ids (SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn tokens(&mut self, n: usize, vocab: usize) -> Vec<u32> {
        (0..n)
            .map(|_| (self.next() % vocab.max(1) as u64) as u32)
            .collect()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn kv_reservation_rounds_to_a_page_multiple() {
        assert_eq!(kv_per_sequence(257), 320);
        assert_eq!(kv_per_sequence(64), 64);
        // 64 sequences of 257 tokens in 16-token pages: 64 * 272 positions, within the budget.
        assert!(64 * 257usize.div_ceil(16) * 16 <= 64 * kv_per_sequence(257));
    }

    use super::*;

    #[test]
    fn the_driver_version_is_read_from_proc() {
        let open = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (dvs-builder@U22-I3-AF03-09-1)  Thu Oct 16 2025\nGCC version: gcc 12";
        assert_eq!(kernel_module_version(open).as_deref(), Some("580.159.04"));
        let closed = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024";
        assert_eq!(kernel_module_version(closed).as_deref(), Some("550.54.14"));
        assert_eq!(kernel_module_version("something else"), None);
    }

    #[test]
    fn percentile_picks_sorted_samples() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(percentile(&[5.0, 1.0, 4.0, 2.0, 3.0], 0.9), 5.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn sse_events_are_seen_only_when_complete() {
        assert!(has_event(
            "event: started\ndata: {}\n\nevent: token\n",
            "token"
        ));
        assert!(!has_event(
            "event: started\ndata: {}\n\nevent: token",
            "token"
        ));
        assert!(!has_event("event: tokens\n", "token"));
    }

    #[test]
    fn seeded_tokens_repeat_and_stay_in_range() {
        let a = SplitMix64(7).tokens(100, 50);
        assert_eq!(a, SplitMix64(7).tokens(100, 50));
        assert!(a.iter().all(|&t| t < 50));
    }
}
