//! `worker-orcd bench`: the worker's speed on one model and backend, measured the way
//! llama.cpp's `llama-bench` and `llama-batched-bench` measure theirs, so the figures compare.
//!
//! ```text
//! worker-orcd bench --model PATH [--backend cpu|cuda] [--gpu-device N] [--threads N]
//!                   [--repeats N] [--json] [--skip pp,tg,batched,http,plugin]
//!                   [--pp 512] [--tg 128] [--batches 8,32,64] [--batch-prompt 128]
//!                   [--batch-tg 128] [--ttft-prompt 128] [--ttft-repeats 5]
//!                   [--shared-seqs 64] [--shared-prefix 1024] [--shared-unique 64]
//!                   [--shared-tg 128] [--constrained-seqs 64]
//! ```
//!
//! Parts, each in its own row; a part that fails prints its reason there and the others go on:
//! - `load`: file open to a device holding the model; `memory`: the backend's bytes for weights,
//!   KV cache and scratch (VRAM on CUDA, RAM on the CPU), from its `DeviceInfo`;
//!   `kv_capacity`: how many 2,048-token sequences a 40 GB KV budget holds, per KV type, from
//!   the bytes a position takes (what both backends' KV ledgers charge).
//! - `pp512`: one sequence, 512 seeded random prompt tokens in one `forward` (the backend chunks
//!   it as it does), logits of the last token; median over `--repeats` after one warm-up.
//! - `tg128`: batch 1, one prompt token, then 128 decode steps with greedy `logits_argmax`;
//!   median over `--repeats` after a warm-up sequence.
//! - `batch N`: N sequences, each a 128-token prompt then 128 decode steps, every sequence in one
//!   `forward` per step; aggregate decode tok/s over all sequences (median over `--repeats`).
//! - `ttft http`: the real server in-process on 127.0.0.1:0 with the same model and backend
//!   (the bench's own device is released first); `POST /execute` with a 128-token prompt and
//!   `max_tokens` 1, timed to the first `token` SSE event; median of `--ttft-repeats`.
//! - `shared N cold|warm`: the shared-prefix workload (`shared.rs`): N requests at once through
//!   the in-process server, one system prompt and a unique part each; aggregate tok/s and time
//!   to first token p50/p99. On by default on CUDA (64 sequences); on the CPU only with
//!   `--shared-seqs`.
//! - `constrained N free|json`: N requests at once through the in-process server
//!   (`constrained.rs`), `--batch-prompt` + `--batch-tg` tokens each, without and with a JSON
//!   schema; the median sequence's decode rate (outputs differ in length, so aggregate tok/s
//!   over the wall time would compare different workloads) and the ratio. On by default on CUDA (64 sequences); on the CPU only
//!   with `--constrained-seqs`.
//! - `plugin sample`: the `standard` sampler plugin's `sample` call against the device's
//!   logits row (the device does argmax/top-k; the plugin gets the results), µs per call.
//!
//! With `--json` the table goes to stderr and one JSON object to stdout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use orcd_common::SplitMix64;
use orcd_cpu::{CpuBackend, CpuOptions};
use orcd_device::{Device, DeviceInfo, EngineError, LogitsWanted, SeqInput, SeqSlot};
use orcd_model::Model;
use serde::Serialize;
use worker_orcd::job::GenParams;
use worker_orcd::lifecycle::{self, RunningWorker, WorkerOptions, WorkerParts};
use worker_orcd::model_facts::model_facts;
use worker_orcd::plugin_bridge;
use worker_orcd::plugins::{Plugins, RequestLimits};
use worker_orcd::progress::{Progress, Unit};
use worker_orcd::scheduler::SchedulerConfig;
use worker_orcd::served_device::ServedDevice;
use worker_orcd::server::{ConnectionLimits, ServerLimits};

use super::generate::Backend;

mod compute;
mod constrained;
mod device;
mod http;
mod plugin;
mod report;
mod shared;

use compute::*;
use constrained::*;
use device::*;
use http::*;
use plugin::*;
use report::*;
use shared::*;

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
    /// The shared-prefix workload through the HTTP server.
    Shared,
    /// Many requests at once through the HTTP server, without and with a JSON schema.
    Constrained,
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
    pub kv_type: orcd_model::KvType,
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
    /// Requests of the shared-prefix workload, sent at once (default: 64 on CUDA; on the CPU
    /// the part runs only when this is given).
    #[arg(long)]
    pub shared_seqs: Option<usize>,
    /// Tokens of the system prompt every request of the shared-prefix workload starts with.
    #[arg(long, default_value_t = 1024)]
    pub shared_prefix: usize,
    /// Tokens of each request's own part after the system prompt.
    #[arg(long, default_value_t = 64)]
    pub shared_unique: usize,
    /// Tokens each request of the shared-prefix workload generates.
    #[arg(long, default_value_t = 128)]
    pub shared_tg: usize,
    /// Requests of the constrained-decoding workload, sent at once (default: 64 on CUDA; on
    /// the CPU the part runs only when this is given).
    #[arg(long)]
    pub constrained_seqs: Option<usize>,
    /// Timed `sample` calls of the plugin-cost test.
    #[arg(long, default_value_t = 200)]
    pub plugin_iters: usize,
    /// Seed of the random prompt token ids.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[command(flatten)]
    pub cache: super::plugin_cache::PluginCacheArgs,
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
    rows.push(kv_capacity_row(&model, args.kv_type));

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
    let shared_seqs = workload_seqs(args.shared_seqs, args.backend);
    let shared_on = !skip(Part::Shared) && shared_seqs > 0;
    let constrained_seqs = workload_seqs(args.constrained_seqs, args.backend);
    let constrained_on = !skip(Part::Constrained) && constrained_seqs > 0;
    let parts: u64 = [
        (Part::Pp, 1),
        (Part::Tg, 1),
        (Part::Batched, args.batches.len()),
        (Part::Plugin, PLUGIN_SETUPS),
        (Part::Http, 1),
        (Part::Shared, if shared_on { 2 } else { 0 }),
        (Part::Constrained, if constrained_on { 2 } else { 0 }),
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
            let prompt = random_tokens(&mut rng, args.pp, vocab);
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
            let first = random_tokens(&mut rng, 1, vocab)[0];
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
                    .map(|_| random_tokens(&mut rng, args.batch_prompt, vocab))
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

    let plugins = if skip(Part::Plugin) && skip(Part::Http) && !shared_on && !constrained_on {
        None
    } else {
        let cache = args.cache.resolve()?;
        Some(
            plugin_bridge::load_cached(None, cache.as_deref(), &model, None)
                .map_err(|f| anyhow::anyhow!("plugins failed to load: {}: {f}", f.code)),
        )
    };
    if !skip(Part::Plugin) {
        let prompt = random_tokens(&mut rng, PLUGIN_PROMPT, vocab);
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

    let plugins = plugins.map(|p| p.map_err(|e| format!("{e:#}")));
    let plugins_or_why = || match &plugins {
        Some(Ok(p)) => Ok(p),
        Some(Err(e)) => Err(anyhow::anyhow!("{e}")),
        None => Err(anyhow::anyhow!("the plugins were not loaded")),
    };
    if !skip(Part::Http) {
        let result = plugins_or_why().and_then(|p| bench_http(&args, &model, p));
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
    if shared_on {
        let shape = SharedShape {
            seqs: shared_seqs,
            prefix: args.shared_prefix,
            unique: args.shared_unique,
            tg: args.shared_tg,
        };
        let result = plugins_or_why().and_then(|p| bench_shared(&args, &model, p, shape));
        for (round, name) in ["cold", "warm"].into_iter().enumerate() {
            let id = format!("shared{}_{name}", shape.seqs);
            rows.push(match &result {
                Ok((rounds, system, prompt)) => {
                    let (r, hits, shared) = (
                        &rounds[round].round,
                        rounds[round].hit_tokens,
                        rounds[round].shared_tokens,
                    );
                    Row::ok(id, r.tok_per_s(), "tok/s", vec![r.tok_per_s()]).with(format!(
                        "{} requests at once, {prompt}-token prompts sharing a {system}-token \
                         system prompt, {} generated each: {} tokens in {:.2} s; time to first \
                         token p50 {:.1} ms, p99 {:.1} ms; prompt tokens copied: {} from the prefix \
                         cache, {} from running sequences",
                        shape.seqs,
                        shape.tg,
                        r.tokens,
                        r.wall.as_secs_f64(),
                        median(&r.ttft_ms),
                        percentile(&r.ttft_ms, 0.99),
                        hits,
                        shared
                    ))
                }
                Err(e) => Row::failed(id, "tok/s", e),
            });
            progress.step(&format!("  {}", line(rows.last().expect("a row"))));
        }
    }

    if constrained_on {
        let n = constrained_seqs;
        let result = plugins_or_why().and_then(|p| bench_constrained(&args, &model, p, n));
        for (round, name) in ["free", "json"].into_iter().enumerate() {
            let id = format!("constrained{n}_{name}");
            rows.push(match &result {
                Ok((rounds, prompt)) => {
                    let r = &rounds[round];
                    let rate = median(&r.decode_rates);
                    let ratio = if round == 1 {
                        format!(
                            "; {:.3} of the free round's decode rate",
                            rate / median(&rounds[0].decode_rates)
                        )
                    } else {
                        String::new()
                    };
                    let what = if round == 1 {
                        "response_format json_schema (4 properties: string, enum, number, array)"
                    } else {
                        "no constraint"
                    };
                    Row::ok(id, rate, "tok/s", r.decode_rates.clone()).with(format!(
                        "{n} requests at once, {prompt}-token prompts, up to {} generated, \
                         greedy, {what}: decode rate of one sequence (tokens after its first over \
                         the time from its first to its end), median; {} tokens in {:.2} s \
                         ({:.1} tok/s aggregate); time to first token p50 {:.1} ms{ratio}",
                        args.batch_tg,
                        r.tokens,
                        r.wall.as_secs_f64(),
                        r.tok_per_s(),
                        median(&r.ttft_ms),
                    ))
                }
                Err(e) => Row::failed(id, "tok/s", e),
            });
            progress.step(&format!("  {}", line(rows.last().expect("a row"))));
        }
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

/// Requests of a many-request workload (`shared`, `constrained`): as asked, else 64 on CUDA
/// and none (the part is off) on the CPU, where 64 long requests take minutes.
fn workload_seqs(asked: Option<usize>, backend: Backend) -> usize {
    match (asked, backend) {
        (Some(n), _) => n,
        (None, Backend::Cuda) => 64,
        (None, Backend::Cpu) => 0,
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
        let a = random_tokens(&mut SplitMix64(7), 100, 50);
        assert_eq!(a, random_tokens(&mut SplitMix64(7), 100, 50));
        assert!(a.iter().all(|&t| t < 50));
    }
}
