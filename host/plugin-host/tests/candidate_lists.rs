//! The bulk lowering of `top-k` answers (`PluginHostConfig::bulk_candidate_lists`, on by
//! default) against wasmtime's generated field-by-field lowering, the reference: the built-in
//! `standard` sampler, which draws from its candidates' ids and logits, picks the same token
//! under both for every row, seed and candidate window tried.

mod common;

use orcd_common::Vocab;
use orcd_device::mock::MockDevice;
use orcd_device::{Device, LogitsWanted, SeqInput};
use orcd_plugin_host::{PluginHost, PluginHostConfig, SamplingParams};

/// A Llama 3-sized vocabulary would do too; this keeps the test quick.
const N: u32 = 50_000;

fn host(bulk_candidate_lists: bool) -> PluginHost {
    let cfg = PluginHostConfig {
        load_builtins: true,
        bulk_candidate_lists,
        ..common::config()
    };
    PluginHost::new(cfg, common::facts(N), &Vocab::synthetic(N)).expect("host starts")
}

/// A mock device holding one row of logits (row 0), different for each `seed`.
fn row(seed: u64) -> MockDevice {
    let mut dev = MockDevice::new(N as usize, seed).unwrap();
    let slot = dev.alloc_seq(8).unwrap();
    dev.forward(&[SeqInput {
        slot,
        start_pos: 0,
        tokens: &[5, 6, 7],
        logits: LogitsWanted::Last,
    }])
    .unwrap();
    dev
}

#[test]
fn bulk_candidate_lists_draw_what_the_reference_draws() {
    let (bulk, reference) = (host(true), host(false));
    let mut drawn = std::collections::BTreeSet::new();
    // The standard sampler's default window (256), a wide one and an odd one.
    for (temperature, candidates) in [(1.0, None), (1.5, Some(1024.0)), (0.7, Some(7.0))] {
        let params = SamplingParams {
            temperature,
            extra: candidates
                .map(|c| vec![("candidates".to_string(), c)])
                .unwrap_or_default(),
            ..common::params(0)
        };
        for seed in 0..6u64 {
            let mut a = bulk.sampler("standard", &params, seed).unwrap();
            let mut b = reference.sampler("standard", &params, seed).unwrap();
            for step in 0..24u64 {
                let mut dev = row(seed * 100 + step);
                let (x, y) = (
                    a.sample(&mut dev, 0, &[]).unwrap(),
                    b.sample(&mut dev, 0, &[]).unwrap(),
                );
                assert_eq!(x, y, "temperature {temperature}, seed {seed}, step {step}");
                drawn.insert(x);
            }
        }
    }
    // The draws depend on the candidates (not one token every time).
    assert!(drawn.len() > 100, "{} distinct tokens", drawn.len());
}
