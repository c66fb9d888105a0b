//! A sampler plugin whose behaviour is chosen per session through `params.extra` `mode`:
//! 0 behaves (penalties, then argmax), the others attack the host: an endless loop, a memory
//! bomb, a panic, unbounded recursion, an out-of-range token id, a file read, a bad penalty
//! history, a host-side top-k, the full row, and
//! recursion that exhausts the shadow stack in linear memory.
//!
//! Built against the frozen contract 0.1.0 (`wit/since_v0.1.0`); as `hostile-sampler-next`
//! (feature `v0_2`) against 0.2.0, where its `validate` refuses an unknown `mode` at admission
//! (field `sampler_params.mode`), so the tests prove both versions load, run and hot-swap.

#[cfg(not(feature = "v0_2"))]
wit_bindgen::generate!({ path: "../../../../../wit/since_v0.1.0", world: "sampler" });
#[cfg(feature = "v0_2")]
wit_bindgen::generate!({ path: "../../../../../wit", world: "sampler" });

use std::hint::black_box;

use exports::worker::plugin::sampler_plugin::{Guest, GuestSession, Session};
use worker::plugin::logits::Logits;
use worker::plugin::types::{Error, PluginInfo, SamplingParams};

/// What a session does in `sample`.
#[derive(Copy, Clone)]
enum Mode {
    Behave,
    EndlessLoop,
    MemoryBomb,
    Panic,
    Recurse,
    OutOfRange,
    ReadFile,
    BadHistory,
    TopK,
    FullRow,
    RecurseBig,
}

impl Mode {
    fn from_number(n: f64) -> Option<Mode> {
        Some(match n as u32 {
            0 => Mode::Behave,
            1 => Mode::EndlessLoop,
            2 => Mode::MemoryBomb,
            3 => Mode::Panic,
            4 => Mode::Recurse,
            5 => Mode::OutOfRange,
            6 => Mode::ReadFile,
            7 => Mode::BadHistory,
            8 => Mode::TopK,
            9 => Mode::FullRow,
            10 => Mode::RecurseBig,
            _ => return None,
        })
    }
}

struct Plugin;

struct Hostile {
    mode: Mode,
    params: SamplingParams,
}

impl Guest for Plugin {
    type Session = Hostile;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "hostile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "misbehaves on request, for sandbox tests".into(),
        }
    }

    #[cfg(feature = "v0_2")]
    fn validate(params: SamplingParams) -> Result<(), worker::plugin::types::InvalidField> {
        let n = mode_number(&params);
        match Mode::from_number(n) {
            Some(_) => Ok(()),
            None => Err(worker::plugin::types::InvalidField {
                field: "sampler_params.mode".into(),
                message: format!("{n} is not a mode (0 to 10)"),
            }),
        }
    }
}

/// The `mode` the request asked for (0 when absent).
fn mode_number(params: &SamplingParams) -> f64 {
    params
        .extra
        .iter()
        .find(|(k, _)| k == "mode")
        .map(|(_, v)| *v)
        .unwrap_or(0.0)
}

fn error(code: &str, message: String) -> Error {
    Error {
        code: code.into(),
        message,
    }
}

/// Recurse until the Wasm stack runs out (the values live in Wasm locals, not in linear
/// memory).
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    (recurse(depth + 1) ^ depth).rotate_left(3)
}

/// Recurse with a large frame until Rust's shadow stack in linear memory runs out.
fn recurse_big(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let mut frame = [depth; 64];
    frame[(depth % 64) as usize] = black_box(recurse_big(depth + 1));
    black_box(frame).iter().sum()
}

impl GuestSession for Hostile {
    fn open(params: SamplingParams, _seed: u64) -> Result<Session, Error> {
        let n = mode_number(&params);
        let mode = Mode::from_number(n).ok_or_else(|| error("BAD_MODE", format!("mode {n}")))?;
        Ok(Session::new(Hostile { mode, params }))
    }

    fn sample(&self, logits: &Logits, history: Vec<u32>) -> Result<u32, Error> {
        let p = &self.params;
        match self.mode {
            Mode::Behave => {
                if p.penalty_window > 0 {
                    let start = history.len().saturating_sub(p.penalty_window as usize);
                    logits.penalize(
                        &history[start..],
                        p.repetition_penalty,
                        p.frequency_penalty,
                        p.presence_penalty,
                    );
                }
                Ok(logits.argmax().id)
            }
            Mode::EndlessLoop => {
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            Mode::MemoryBomb => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            Mode::Panic => panic!("hostile sampler panics on purpose"),
            Mode::Recurse => Ok(recurse(black_box(0)) as u32),
            Mode::RecurseBig => Ok(recurse_big(0) as u32),
            Mode::OutOfRange => Ok(logits.vocab_size()),
            Mode::ReadFile => match std::fs::read("/etc/passwd") {
                Ok(bytes) => Ok(bytes.len() as u32),
                Err(e) => Err(error("FS_DENIED", e.to_string())),
            },
            Mode::BadHistory => {
                logits.penalize(&[u32::MAX], 1.1, 0.0, 0.0);
                Ok(0)
            }
            Mode::TopK => Ok(logits.top_k(p.top_k.max(1))[0].id),
            Mode::FullRow => {
                let row = logits.full();
                let best = (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b });
                Ok(best as u32)
            }
        }
    }
}

export!(Plugin);
