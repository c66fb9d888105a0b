//! Per-token cost of the sampler plugin: the built-in `standard` sampler at batch 1 over a
//! 128k vocabulary on the mock device.
//!
//! Three figures per sampling setup, median µs per token:
//! - `plugin`: `sample()` against a logits source whose operations cost nothing (answers
//!   precomputed from the row): the Wasm call, the guest's policy and the host-call boundary.
//!   This is the cost the plugin design adds per token, whatever the device.
//! - `host ops`: the same logits operations called directly on the mock device (CPU reference
//!   over 128k floats; on CUDA they run on the GPU instead).
//! - `end to end`: `sample()` on the mock device (plugin + host ops).
//!
//! Then, plugin-side only (the `plugin` column's method):
//! - custom samplers written with the SDK (`examples/typical-sampler`,
//!   `examples/mirostat-sampler`, built here) asking for 256 candidates, beside `standard`'s
//!   256-candidate window;
//! - what each host call costs a sampler: a 0.2.0 test guest (`hostile-sampler-next`) whose
//!   `sample` makes exactly one kind of call (argmax; top-k of 1, 64, 256, 1024; the full row;
//!   penalties over 64 tokens then argmax).
//!
//! Run: `cargo bench -p orcd-plugin-host --bench plugin_cost`. With
//! `ORCD_BENCH_SAMPLER=PATH.wasm[,NAME=VALUE...][;...]`, sampler components of your own (e.g.
//! the `plugin new --kind sampler` template's, with `k=256`) are measured beside the examples,
//! their `sampler_params` set to the pairs given.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use orcd_common::Vocab;
use orcd_device::EngineError;
use orcd_device::host_logits;
use orcd_device::mock::MockDevice;
use orcd_device::{Device, LogitsWanted, SeqInput};
use orcd_plugin_host::{
    LogitsSource, ModelFacts, PluginHost, PluginHostConfig, PluginKind, SamplingParams,
};

/// Vocabulary size of the benchmark (Qwen-class 128k).
const VOCAB: usize = 131_072;
/// Timed samples per setup.
const ITERS: usize = 2000;
/// Untimed samples before timing.
const WARMUP: usize = 200;

/// A logits source that answers from precomputed results: argmax and top-k of one row, and a
/// penalty that only counts tokens. It isolates the plugin's own cost.
struct Precomputed {
    row: Vec<f32>,
    best: (u32, f32),
    /// The 1024 best (id, logit), best first; top-k for k <= 1024 is a prefix copy.
    top: Vec<(u32, f32)>,
}

impl Precomputed {
    fn new(row: Vec<f32>) -> Self {
        Precomputed {
            best: host_logits::argmax(&row),
            top: host_logits::top_k(&row, 1024),
            row,
        }
    }
}

impl LogitsSource for Precomputed {
    fn vocab_size(&self) -> usize {
        self.row.len()
    }
    fn argmax(&self, _row: usize) -> Result<(u32, f32), EngineError> {
        Ok(self.best)
    }
    fn top_k(&self, _row: usize, k: usize) -> Result<Vec<(u32, f32)>, EngineError> {
        if k <= self.top.len() {
            Ok(self.top[..k].to_vec())
        } else {
            Ok(host_logits::top_k(&self.row, k))
        }
    }
    fn row(&self, _row: usize) -> Result<Vec<f32>, EngineError> {
        Ok(self.row.clone())
    }
    fn penalize(
        &mut self,
        _: usize,
        history: &[u32],
        _: f32,
        _: f32,
        _: f32,
    ) -> Result<(), EngineError> {
        std::hint::black_box(history.len());
        Ok(())
    }
}

fn params(temperature: f32, top_k: u32, top_p: f32, penalties: bool) -> SamplingParams {
    SamplingParams {
        temperature,
        top_k,
        top_p,
        min_p: 0.0,
        repetition_penalty: if penalties { 1.1 } else { 1.0 },
        presence_penalty: if penalties { 0.1 } else { 0.0 },
        frequency_penalty: if penalties { 0.1 } else { 0.0 },
        penalty_window: if penalties { 64 } else { 0 },
        extra: Vec::new(),
    }
}

/// Median and 90th percentile of `f`'s duration, in µs.
fn measure(mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..WARMUP {
        f();
    }
    let mut times: Vec<Duration> = (0..ITERS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (us(times[ITERS / 2]), us(times[ITERS * 9 / 10]))
}

fn main() {
    let vocab = Vocab {
        model: "gpt2".into(),
        tokens: (0..VOCAB).map(|i| format!("tok{i}").into_bytes()).collect(),
        eos: Some(1),
        ..Vocab::default()
    };
    let facts = ModelFacts {
        architecture: "llama".into(),
        name: "bench".into(),
        vocab_size: VOCAB as u32,
        context_length: 8192,
        bos: None,
        eos: Some(1),
        eot: None,
    };
    let host = match PluginHost::new(PluginHostConfig::default(), facts, &vocab) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("plugin host failed to start: {e}");
            std::process::exit(1);
        }
    };
    let standard = host
        .plugins()
        .into_iter()
        .find(|p| p.kind == PluginKind::Sampler && p.name == "standard");
    let Some(standard) = standard else {
        eprintln!("the built-in `standard` sampler is not in this build (see build.rs warnings)");
        std::process::exit(1);
    };

    let mut dev = MockDevice::new(VOCAB, 7).expect("mock device");
    let slot = dev.alloc_seq(128).expect("slot");
    let prompt: Vec<u32> = (0..64).map(|i| (i * 2029 % VOCAB) as u32).collect();
    dev.forward(&[SeqInput {
        slot,
        start_pos: 0,
        tokens: &prompt,
        logits: LogitsWanted::Last,
    }])
    .expect("forward");
    let mut fixed = Precomputed::new(dev.logits_row(0).expect("row"));

    println!(
        "sampler {} over a {VOCAB}-token vocabulary, batch 1, median (p90) µs per token, {ITERS} tokens",
        standard.label()
    );
    println!(
        "{:<44} {:>16} {:>16} {:>16}",
        "setup", "plugin", "host ops", "end to end"
    );
    let setups = [
        ("greedy", params(0.0, 0, 1.0, false)),
        (
            "top-k 40, top-p 0.9, temperature 0.8",
            params(0.8, 40, 0.9, false),
        ),
        (
            "same + repeat/freq/presence penalties (64)",
            params(0.8, 40, 0.9, true),
        ),
        ("greedy + penalties (64)", params(0.0, 0, 1.0, true)),
    ];
    for (name, p) in setups {
        let mut session = host.sampler("standard", &p, 42).expect("session");
        let plugin = measure(|| {
            session.sample(&mut fixed, 0, &prompt).expect("sample");
        });
        let host_ops = measure(|| {
            if p.penalty_window > 0 {
                dev.logits_penalize(
                    0,
                    &prompt,
                    p.repetition_penalty,
                    p.frequency_penalty,
                    p.presence_penalty,
                )
                .expect("penalize");
            }
            if p.temperature == 0.0 {
                std::hint::black_box(dev.logits_argmax(0).expect("argmax"));
            } else {
                std::hint::black_box(dev.logits_top_k(0, p.top_k as usize).expect("top-k"));
            }
        });
        let mut session = host.sampler("standard", &p, 42).expect("session");
        let end_to_end = measure(|| {
            session.sample(&mut dev, 0, &prompt).expect("sample");
        });
        let cell = |(m, p9): (f64, f64)| format!("{m:.2} ({p9:.2})");
        println!(
            "{name:<44} {:>16} {:>16} {:>16}",
            cell(plugin),
            cell(host_ops),
            cell(end_to_end)
        );
    }

    custom_samplers(&host, &mut fixed, &mut dev, &prompt);
    host_top_k(&fixed.row);
    host_calls(&mut fixed, &prompt);

    let (open, _) = measure(|| {
        std::hint::black_box(
            host.sampler("standard", &params(0.8, 40, 0.9, true), 1)
                .expect("session"),
        );
    });
    println!("session open (instantiate + open + drop): {open:.1} µs median");
}

/// The host's top-k over one 128k row (what the CPU backend runs per token for a sampler's
/// `top_k` call): the reference selection beside the two-pass one it uses.
fn host_top_k(row: &[f32]) {
    println!();
    println!("host top-k over the {VOCAB}-token row, median (p90) µs");
    let cell = |(m, p9): (f64, f64)| format!("{m:.2} ({p9:.2})");
    for k in [1usize, 40, 256, 1024] {
        let reference = measure(|| {
            std::hint::black_box(host_logits::top_k_reference(row, k));
        });
        let fast = measure(|| {
            std::hint::black_box(host_logits::top_k(row, k));
        });
        println!(
            "{:<44} {:>16} {:>16}",
            format!("k {k}: reference, two-pass"),
            cell(reference),
            cell(fast)
        );
    }
}

/// A sampler's `sampler_params`.
type Extra = Vec<(String, f64)>;

/// Plugin-side cost of the SDK samplers at 256 candidates, beside `standard` at its 256 window,
/// then end to end on the mock device (the host's top-k over the row included).
fn custom_samplers(
    host: &PluginHost,
    fixed: &mut Precomputed,
    dev: &mut MockDevice,
    prompt: &[u32],
) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut p = params(0.8, 0, 1.0, false);
    println!();
    println!(
        "custom samplers, 256 candidates from the host, median (p90) µs per token: plugin cost, \
         end to end on the mock device"
    );
    let cell = |(m, p9): (f64, f64)| format!("{m:.2} ({p9:.2})");
    let mut session = host.sampler("standard", &p, 42).expect("session");
    let standard = measure(|| {
        session.sample(fixed, 0, prompt).expect("sample");
    });
    let standard_e2e = measure(|| {
        session.sample(dev, 0, prompt).expect("sample");
    });
    println!(
        "{:<44} {:>16} {:>16}",
        "standard (top_k 0: 256 window)",
        cell(standard),
        cell(standard_e2e)
    );
    let mut samplers: Vec<(String, std::path::PathBuf, Extra)> = [
        ("typical-sampler", vec![("p".to_string(), 0.9)]),
        ("mirostat-sampler", vec![("tau".to_string(), 5.0)]),
    ]
    .into_iter()
    .map(|(example, extra)| {
        let wasm = orcd_tests::guest::build_guest(&root, example);
        (example.to_string(), wasm, extra)
    })
    .collect();
    let specs = std::env::var("ORCD_BENCH_SAMPLER").unwrap_or_default();
    for spec in specs.split(';').filter(|s| !s.is_empty()) {
        let mut parts = spec.split(',');
        let path = std::path::PathBuf::from(parts.next().unwrap_or_default());
        let extra = parts
            .map(|kv| {
                let (k, v) = kv
                    .split_once('=')
                    .expect("ORCD_BENCH_SAMPLER: NAME=VALUE pairs");
                (
                    k.to_string(),
                    v.parse::<f64>().expect("ORCD_BENCH_SAMPLER: a number"),
                )
            })
            .collect();
        let file = path
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into());
        samplers.push((file, path, extra));
    }
    for (example, wasm, extra) in samplers {
        let name = host.load_file(&wasm).expect("sampler loads").name;
        p.extra = extra;
        let mut session = host.sampler(&name, &p, 42).expect("session");
        let cost = measure(|| {
            session.sample(fixed, 0, prompt).expect("sample");
        });
        let e2e = measure(|| {
            session.sample(dev, 0, prompt).expect("sample");
        });
        println!(
            "{:<44} {:>16} {:>16}",
            format!("{name} ({example})"),
            cell(cost),
            cell(e2e)
        );
    }
}

/// What each host call costs a sampler: one `sample` per row, each making one kind of call.
fn host_calls(fixed: &mut Precomputed, prompt: &[u32]) {
    let host = common::hostile_host(PluginHostConfig {
        load_builtins: false,
        ..PluginHostConfig::default()
    });
    host.load_file(&common::guest("hostile_sampler_next"))
        .expect("0.2.0 guest loads");
    let mode = |m: u32, top_k: u32, window: u32| SamplingParams {
        top_k,
        penalty_window: window,
        repetition_penalty: if window > 0 { 1.1 } else { 1.0 },
        ..common::params(m)
    };
    println!();
    println!(
        "host calls from a 0.2.0 guest (hostile-sampler-next), one sample() each, median (p90) µs"
    );
    let cell = |(m, p9): (f64, f64)| format!("{m:.2} ({p9:.2})");
    let setups: [(&str, SamplingParams); 8] = [
        ("sample() + argmax()", mode(0, 0, 0)),
        ("sample() + top_k(1)", mode(8, 1, 0)),
        ("sample() + top_k(64)", mode(8, 64, 0)),
        ("sample() + top_k(256)", mode(8, 256, 0)),
        ("sample() + top_k(1024)", mode(8, 1024, 0)),
        ("sample() + penalize(64 ids) + argmax()", mode(0, 0, 64)),
        ("sample() + full() (131072 floats)", mode(9, 0, 0)),
        ("sample() + argmax(), 0.1.0 guest", mode(0, 0, 0)),
    ];
    for (i, (name, p)) in setups.iter().enumerate() {
        let h = if i == setups.len() - 1 {
            common::hostile_host(PluginHostConfig {
                load_builtins: false,
                ..PluginHostConfig::default()
            })
        } else {
            host.clone()
        };
        let mut session = h.sampler("hostile", p, 1).expect("session");
        let cost = measure(|| {
            session.sample(fixed, 0, prompt).expect("sample");
        });
        println!("{name:<44} {:>16}", cell(cost));
    }
}
