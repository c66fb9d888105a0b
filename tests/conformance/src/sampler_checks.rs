//! Sampler conformance: token ids in range, determinism under a seed, greedy equals argmax
//! (temperature 0 and `top_k` 1), NaN and -inf logits never chosen, an all-invalid row
//! reported as an error rather than a trap, Gemma-sized vocabularies, a deterministic time
//! bound (Wasm fuel), and the plugin's own cost per token (host logits operations timed apart
//! and left out).

use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

use orcd_device::mock::{MockDevice, MockOptions};
use orcd_device::{Device, EngineError, LogitsWanted, SeqInput};
use orcd_plugin_host::{
    LogitsSource, PluginError, PluginHost, PluginHostConfig, PluginKind, SamplingParams,
};

use crate::harness::{host_with, host_with_config, plain_params, synthetic_facts, synthetic_vocab};
use crate::{KitError, Report};

/// Vocabulary of the functional checks.
const SMALL_VOCAB: u32 = 1000;
/// Gemma 3's vocabulary, the largest the worker serves.
const LARGE_VOCAB: u32 = 262_144;
/// A Llama 3-sized vocabulary for the cost measurement (128k).
const COST_VOCAB: u32 = 131_072;
/// Fuel one `sample` call may burn in the time-bound check (one unit is about one Wasm
/// instruction).
const FUEL_PER_CALL: u64 = 100_000_000;
/// Prompt the generations start from.
const PROMPT: [u32; 4] = [0, 7, 42, 99];

/// Settings of a sampler run.
#[derive(Clone, Debug)]
pub struct SamplerOptions {
    /// Tokens generated per functional check.
    pub tokens: usize,
    /// Tokens timed for the cost measurement.
    pub cost_tokens: usize,
    /// Fail the cost check above this many microseconds of plugin work per token
    /// (none: the figure is reported only).
    pub max_us_per_token: Option<f64>,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        SamplerOptions {
            tokens: 64,
            cost_tokens: 200,
            max_us_per_token: None,
        }
    }
}

/// Run every sampler check against the component at `wasm`.
pub fn check_sampler(wasm: &Path, opts: &SamplerOptions) -> Result<Report, KitError> {
    let (host, info) = host_with(
        wasm,
        PluginKind::Sampler,
        synthetic_facts(SMALL_VOCAB),
        &synthetic_vocab(SMALL_VOCAB),
    )?;
    let name = info.name.clone();
    let mut report = Report::new(format!("{} ({})", info.label(), info.kind));
    let n = opts.tokens;
    let run = |params: &SamplingParams, seed: u64, mock: MockOptions, tokens: usize| {
        generate(&host, &name, params, seed, SMALL_VOCAB, mock, tokens)
    };

    report.record("validate accepts the defaults", {
        match info.contract.as_str() {
            c if c.starts_with("0.1.") => Ok(format!(
                "contract {c}: no validate (parameters are checked by open, after `started`)"
            )),
            _ => match host.validate_sampler(&name, &plain_params(1.0)) {
                Ok(()) => Ok("no sampler_params, every filter off: accepted".into()),
                Err(e) => Err(format!("refused the defaults: {e}")),
            },
        }
    });

    report.record("ids in range", {
        let mut bad = None;
        for (temp, seed) in [(1.0, 1), (2.0, 2), (0.7, 3)] {
            match run(&plain_params(temp), seed, MockOptions::default(), n) {
                Ok(g) if g.tokens.iter().all(|&t| t < SMALL_VOCAB) => {}
                Ok(g) => bad = Some(format!("out-of-range id in {:?}", g.tokens)),
                Err(e) => bad = Some(e),
            }
        }
        bad.map_or_else(|| Ok(format!("3 x {n} tokens below {SMALL_VOCAB}")), Err)
    });

    report.record("same seed, same tokens", {
        let params = plain_params(1.0);
        match (
            run(&params, 42, MockOptions::default(), n),
            run(&params, 42, MockOptions::default(), n),
        ) {
            (Ok(a), Ok(b)) if a.tokens == b.tokens => Ok(format!("{n} tokens twice")),
            (Ok(a), Ok(b)) => Err(format!("{:?} vs {:?}", &a.tokens[..8], &b.tokens[..8])),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    });

    report.record("seed changes the draw", {
        let params = plain_params(1.0);
        let runs: Result<Vec<Vec<u32>>, String> = (1..=4)
            .map(|seed| run(&params, seed, MockOptions::default(), n).map(|g| g.tokens))
            .collect();
        runs.and_then(|r| {
            if r.windows(2).any(|w| w[0] != w[1]) {
                Ok("seeds 1-4 give different streams".into())
            } else {
                Err("seeds 1-4 give the same tokens: the seed is ignored".into())
            }
        })
    });

    report.record(
        "temperature 0 is argmax",
        greedy_matches(&run, &plain_params(0.0), n),
    );
    let top1 = SamplingParams {
        top_k: 1,
        ..plain_params(1.5)
    };
    report.record("top_k 1 is argmax", greedy_matches(&run, &top1, n));

    report.record("NaN and -inf never chosen", {
        // Two thirds of the vocabulary poisoned: ids = 0 mod 3 are NaN, 1 mod 3 are -inf.
        let mock = MockOptions {
            nan_ids: (0..SMALL_VOCAB).filter(|i| i % 3 == 0).collect(),
            neg_inf_ids: (0..SMALL_VOCAB).filter(|i| i % 3 == 1).collect(),
            ..MockOptions::default()
        };
        let mut bad = None;
        for params in [plain_params(1.0), plain_params(0.0), top1.clone()] {
            match run(&params, 9, mock.clone(), n) {
                Ok(g) => {
                    if let Some(t) = g.tokens.iter().find(|&&t| t % 3 != 2) {
                        bad = Some(format!("chose poisoned id {t}"));
                    }
                }
                Err(e) => bad = Some(e),
            }
        }
        bad.map_or_else(|| Ok("3 parameter sets, only finite ids".into()), Err)
    });

    report.record("all-invalid row is an error, not a trap", {
        let mock = MockOptions {
            nan_ids: (0..SMALL_VOCAB).filter(|i| i % 2 == 0).collect(),
            neg_inf_ids: (0..SMALL_VOCAB).filter(|i| i % 2 == 1).collect(),
            ..MockOptions::default()
        };
        let mut verdict = Ok(String::new());
        for params in [plain_params(1.0), plain_params(0.0)] {
            match generate_raw(&host, &name, &params, 5, SMALL_VOCAB, mock.clone(), 1) {
                Err(RunError::Plugin(PluginError::Reported { code, .. })) => {
                    verdict = verdict.map(|_| format!("reported {code}"));
                }
                Ok(g) => verdict = Err(format!("returned token {:?}", g.tokens)),
                Err(e) => verdict = Err(format!("{} instead of a reported error", e.code())),
            }
        }
        verdict
    });

    report.record("262144-token vocabulary", large_vocab(wasm, n.min(16)));

    report.record(
        "time bound (fuel, 262144 vocab)",
        fuel_bound(wasm, n.min(16)),
    );

    report.record("cost per token (128k vocab)", cost(wasm, opts));

    Ok(report)
}

/// What one generation produced.
struct Generation {
    tokens: Vec<u32>,
    /// Wall time of the `sample` calls.
    sample_time: Duration,
    /// Part of it spent in the host's logits operations.
    host_time: Duration,
    /// Whether each token was the row's argmax (before any penalty).
    was_argmax: Vec<bool>,
}

/// A generation with the plugin under test: (params, seed, mock options, tokens).
type RunFn<'a> =
    dyn Fn(&SamplingParams, u64, MockOptions, usize) -> Result<Generation, String> + 'a;

enum RunError {
    Plugin(PluginError),
    Engine(EngineError),
}

impl RunError {
    fn code(&self) -> orcd_device::ErrorCode {
        match self {
            RunError::Plugin(e) => e.code(),
            RunError::Engine(e) => e.code(),
        }
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Plugin(e) => write!(f, "{}: {e}", e.code()),
            RunError::Engine(e) => write!(f, "{}: {e}", e.code()),
        }
    }
}

fn generate(
    host: &PluginHost,
    name: &str,
    params: &SamplingParams,
    seed: u64,
    vocab: u32,
    mock: MockOptions,
    tokens: usize,
) -> Result<Generation, String> {
    generate_raw(host, name, params, seed, vocab, mock, tokens).map_err(|e| e.to_string())
}

/// Generate `tokens` tokens from the mock device through a fresh sampler session.
fn generate_raw(
    host: &PluginHost,
    name: &str,
    params: &SamplingParams,
    seed: u64,
    vocab: u32,
    mock: MockOptions,
    tokens: usize,
) -> Result<Generation, RunError> {
    let mut device =
        MockDevice::with_options(vocab as usize, 1234, mock).map_err(RunError::Engine)?;
    let slot = device
        .alloc_seq(PROMPT.len() + tokens)
        .map_err(RunError::Engine)?;
    let mut session = host.sampler(name, params, seed).map_err(RunError::Plugin)?;
    let mut history: Vec<u32> = PROMPT.to_vec();
    let mut out = Generation {
        tokens: Vec::with_capacity(tokens),
        sample_time: Duration::ZERO,
        host_time: Duration::ZERO,
        was_argmax: Vec::with_capacity(tokens),
    };
    let mut input: Vec<u32> = PROMPT.to_vec();
    for _ in 0..tokens {
        let start_pos = history.len() - input.len();
        device
            .forward(&[SeqInput {
                slot,
                start_pos,
                tokens: &input,
                logits: LogitsWanted::Last,
            }])
            .map_err(RunError::Engine)?;
        let best = device.logits_argmax(0).map_err(RunError::Engine)?.0;
        let mut timed = Timed::new(&mut device);
        let started = Instant::now();
        let window = &history[history.len().saturating_sub(params.penalty_window as usize)..];
        let id = session
            .sample(&mut timed, 0, window)
            .map_err(RunError::Plugin)?;
        out.sample_time += started.elapsed();
        out.host_time += timed.spent.get();
        out.was_argmax.push(id == best);
        out.tokens.push(id);
        history.push(id);
        input = vec![id];
    }
    device.free_seq(slot);
    Ok(out)
}

fn greedy_matches(run: &RunFn<'_>, params: &SamplingParams, n: usize) -> Result<String, String> {
    let g = run(params, 11, MockOptions::default(), n)?;
    match g.was_argmax.iter().position(|&a| !a) {
        None => Ok(format!("{n} tokens, all argmax")),
        Some(i) => Err(format!("token {i} ({}) is not the argmax", g.tokens[i])),
    }
}

fn large_vocab(wasm: &Path, n: usize) -> Result<String, String> {
    let (host, info) = host_with(
        wasm,
        PluginKind::Sampler,
        synthetic_facts(LARGE_VOCAB),
        &synthetic_vocab(LARGE_VOCAB),
    )
    .map_err(|e| e.to_string())?;
    let greedy = generate(
        &host,
        &info.name,
        &plain_params(0.0),
        1,
        LARGE_VOCAB,
        MockOptions::default(),
        n,
    )?;
    if greedy.was_argmax.iter().any(|&a| !a) {
        return Err("temperature 0 missed the argmax".into());
    }
    let drawn = generate(
        &host,
        &info.name,
        &plain_params(1.0),
        2,
        LARGE_VOCAB,
        MockOptions::default(),
        n,
    )?;
    match drawn.tokens.iter().find(|&&t| t >= LARGE_VOCAB) {
        Some(t) => Err(format!("id {t} out of range")),
        None => Ok(format!("{n} greedy + {n} drawn tokens")),
    }
}

/// Every call of a generation at the largest vocabulary stays within a deterministic bound:
/// [`FUEL_PER_CALL`] units of Wasm fuel (about a tenth of a second of guest work), under greedy,
/// default and filtered parameters. A plugin past it fails with `PLUGIN_TIMEOUT`.
fn fuel_bound(wasm: &Path, n: usize) -> Result<String, String> {
    let cfg = PluginHostConfig {
        fuel_per_call: Some(FUEL_PER_CALL),
        ..PluginHostConfig::default()
    };
    let (host, info) = host_with_config(
        wasm,
        PluginKind::Sampler,
        synthetic_facts(LARGE_VOCAB),
        &synthetic_vocab(LARGE_VOCAB),
        cfg,
    )
    .map_err(|e| e.to_string())?;
    let filtered = SamplingParams {
        top_p: 0.9,
        min_p: 0.05,
        repetition_penalty: 1.1,
        ..plain_params(0.8)
    };
    for params in [plain_params(0.0), plain_params(1.0), filtered] {
        generate(
            &host,
            &info.name,
            &params,
            4,
            LARGE_VOCAB,
            MockOptions::default(),
            n,
        )?;
    }
    Ok(format!("3 x {n} calls, each under {FUEL_PER_CALL} fuel"))
}

/// Plugin work per token: `sample` wall time minus the time the host spent in the logits
/// operations the plugin asked for (what remains is the guest's work and the call and copy
/// overhead of the runtime); greedy and default request parameters.
fn cost(wasm: &Path, opts: &SamplerOptions) -> Result<String, String> {
    let (host, info) = host_with(
        wasm,
        PluginKind::Sampler,
        synthetic_facts(COST_VOCAB),
        &synthetic_vocab(COST_VOCAB),
    )
    .map_err(|e| e.to_string())?;
    // Machines are noisy (other processes, frequency scaling): the figure is the best of a
    // few runs, and the mean of all of them is shown beside it.
    const RUNS: usize = 5;
    let n = opts.cost_tokens.max(RUNS) / RUNS;
    let mut figures = Vec::new();
    let mut worst: f64 = 0.0;
    for (label, params) in [
        ("greedy", plain_params(0.0)),
        ("default", plain_params(1.0)),
    ] {
        let (mut best, mut sum, mut host_sum) = (f64::MAX, 0.0, 0.0);
        for run in 0..RUNS {
            let g = generate(
                &host,
                &info.name,
                &params,
                3 + run as u64,
                COST_VOCAB,
                MockOptions::default(),
                n,
            )?;
            let plugin_us =
                g.sample_time.saturating_sub(g.host_time).as_secs_f64() * 1e6 / n as f64;
            best = best.min(plugin_us);
            sum += plugin_us;
            host_sum += g.host_time.as_secs_f64() * 1e6 / n as f64;
        }
        worst = worst.max(best);
        figures.push(format!(
            "{label}: {best:.1} us plugin (mean {:.1}), {:.0} us host ops",
            sum / RUNS as f64,
            host_sum / RUNS as f64
        ));
    }
    let detail = figures.join("; ");
    match opts.max_us_per_token {
        Some(max) if worst > max => Err(format!("{detail} (bound {max} us)")),
        Some(max) => Ok(format!("{detail} (bound {max} us)")),
        None => Ok(detail),
    }
}

/// A [`LogitsSource`] that times the host's own work on behalf of the plugin.
struct Timed<'a> {
    device: &'a mut MockDevice,
    spent: Cell<Duration>,
}

impl<'a> Timed<'a> {
    fn new(device: &'a mut MockDevice) -> Self {
        Timed {
            device,
            spent: Cell::new(Duration::ZERO),
        }
    }

    fn time<R>(&self, f: impl FnOnce() -> R) -> R {
        let start = Instant::now();
        let r = f();
        self.spent.set(self.spent.get() + start.elapsed());
        r
    }
}

impl LogitsSource for Timed<'_> {
    fn vocab_size(&self) -> usize {
        Device::vocab_size(&*self.device)
    }
    fn argmax(&self, row: usize) -> Result<(u32, f32), EngineError> {
        self.time(|| self.device.logits_argmax(row))
    }
    fn top_k(&self, row: usize, k: usize) -> Result<Vec<(u32, f32)>, EngineError> {
        self.time(|| self.device.logits_top_k(row, k))
    }
    fn row(&self, row: usize) -> Result<Vec<f32>, EngineError> {
        self.time(|| self.device.logits_row(row))
    }
    fn penalize(
        &mut self,
        row: usize,
        history: &[u32],
        repeat: f32,
        frequency: f32,
        presence: f32,
    ) -> Result<(), EngineError> {
        let start = Instant::now();
        let r = self
            .device
            .logits_penalize(row, history, repeat, frequency, presence);
        self.spent.set(self.spent.get() + start.elapsed());
        r
    }
}
