//! Hostile plugins: each attack ends only its own call with a stable plugin error code naming
//! the plugin and its version, and the host keeps serving other sessions afterwards.

mod common;

use std::time::Duration;

use common::{VOCAB, config, guest, hostile_host, params};
use orcd_device::mock::MockDevice;
use orcd_device::{Device, LogitsWanted, SeqInput};
use orcd_plugin_host::{PluginError, PluginHost, PluginHostConfig, PluginKind, SamplerSession};

/// A mock device after one step, with logits in row 0.
fn device(seed: u64) -> MockDevice {
    let mut dev = MockDevice::new(VOCAB as usize, seed).unwrap();
    let slot = dev.alloc_seq(16).unwrap();
    dev.forward(&[SeqInput {
        slot,
        start_pos: 0,
        tokens: &[5, 6, 7],
        logits: LogitsWanted::Last,
    }])
    .unwrap();
    dev
}

fn session(host: &PluginHost, mode: u32) -> SamplerSession {
    host.sampler("hostile", &params(mode), 42).unwrap()
}

/// Run one `sample` of a hostile mode and return its error.
fn attack(host: &PluginHost, mode: u32) -> PluginError {
    let mut dev = device(1);
    let mut s = session(host, mode);
    let err = s.sample(&mut dev, 0, &[5, 6, 7]).unwrap_err();
    // The failed instance is gone for good.
    let again = s.sample(&mut dev, 0, &[5, 6, 7]);
    if !matches!(err, PluginError::Reported { .. }) {
        assert_eq!(again.unwrap_err().code(), "PLUGIN_TRAP");
    }
    err
}

/// The host still serves a well-behaved session: greedy equals the device's argmax.
fn assert_healthy(host: &PluginHost) {
    let mut dev = device(9);
    let mut s = session(host, 0);
    let id = s.sample(&mut dev, 0, &[]).unwrap();
    assert_eq!(id, dev.logits_argmax(0).unwrap().0);
}

#[test]
fn behaving_sampler_sees_host_logits_and_penalties() {
    let host = hostile_host(config());
    assert_healthy(&host);
    // Penalise the best token hard enough and the plugin must pick another one.
    let mut dev = device(3);
    let best = dev.logits_argmax(0).unwrap().0;
    let mut p = params(0);
    p.penalty_window = 8;
    p.presence_penalty = 100.0;
    let mut s = host.sampler("hostile", &p, 1).unwrap();
    let id = s.sample(&mut dev, 0, &[best]).unwrap();
    assert_ne!(id, best);
    assert_eq!(id, dev.logits_argmax(0).unwrap().0);
    // Host-side top-k and the full row agree with the device.
    let mut p = params(8);
    p.top_k = 40;
    let mut s = host.sampler("hostile", &p, 1).unwrap();
    let mut dev = device(4);
    assert_eq!(
        s.sample(&mut dev, 0, &[]).unwrap(),
        dev.logits_argmax(0).unwrap().0
    );
    let mut s = session(&host, 9);
    assert_eq!(
        s.sample(&mut dev, 0, &[]).unwrap(),
        dev.logits_argmax(0).unwrap().0
    );
}

#[test]
fn endless_loop_times_out() {
    let host = hostile_host(config());
    let err = attack(&host, 1);
    assert_eq!(err.code(), "PLUGIN_TIMEOUT", "{err}");
    assert!(err.to_string().contains("hostile@0.1.0"), "{err}");
    assert_healthy(&host);
}

#[test]
fn endless_loop_runs_out_of_fuel() {
    let cfg = PluginHostConfig {
        fuel_per_call: Some(5_000_000),
        call_timeout: Duration::from_secs(30),
        ..config()
    };
    let host = hostile_host(cfg);
    let err = attack(&host, 1);
    assert_eq!(err.code(), "PLUGIN_TIMEOUT", "{err}");
    assert!(err.to_string().contains("fuel"), "{err}");
    assert_healthy(&host);
}

#[test]
fn memory_bomb_hits_the_limit() {
    let host = hostile_host(config());
    let err = attack(&host, 2);
    assert_eq!(err.code(), "PLUGIN_MEMORY", "{err}");
    assert!(err.to_string().contains("hostile@0.1.0"), "{err}");
    assert_healthy(&host);
}

#[test]
fn panic_is_a_trap() {
    let host = hostile_host(config());
    let err = attack(&host, 3);
    assert_eq!(err.code(), "PLUGIN_TRAP", "{err}");
    // The panic message the guest wrote to stderr explains the trap.
    assert!(err.to_string().contains("panics on purpose"), "{err}");
    assert_healthy(&host);
}

#[test]
fn stack_overflow_is_a_trap() {
    let host = hostile_host(config());
    let err = attack(&host, 4);
    assert_eq!(err.code(), "PLUGIN_TRAP", "{err}");
    assert!(err.to_string().contains("stack overflow"), "{err}");
    assert_healthy(&host);
    // Rust keeps large frames on a shadow stack in linear memory; running out of it is an
    // out-of-bounds access, a trap as well.
    let err = attack(&host, 10);
    assert_eq!(err.code(), "PLUGIN_TRAP", "{err}");
    assert_healthy(&host);
}

#[test]
fn out_of_range_token_is_invalid_output() {
    let host = hostile_host(config());
    let err = attack(&host, 5);
    assert_eq!(err.code(), "PLUGIN_INVALID_OUTPUT", "{err}");
    assert!(err.to_string().contains(&VOCAB.to_string()), "{err}");
    assert_healthy(&host);
}

#[test]
fn bad_penalty_history_is_refused_by_the_host() {
    let host = hostile_host(config());
    let err = attack(&host, 7);
    assert_eq!(err.code(), "PLUGIN_INVALID_OUTPUT", "{err}");
    assert_healthy(&host);
}

#[test]
fn file_access_is_denied() {
    let host = hostile_host(config());
    let err = attack(&host, 6);
    // The plugin got no filesystem: std's open failed and the plugin reported it.
    match &err {
        PluginError::Reported { code, plugin, .. } => {
            assert_eq!(code, "FS_DENIED");
            assert_eq!(plugin, "hostile@0.1.0");
        }
        other => panic!("expected a reported error, got {other}"),
    }
    assert_healthy(&host);
}

#[test]
fn sockets_are_refused_at_load() {
    let host = hostile_host(config());
    let err = host.load_file(&guest("net_sampler")).unwrap_err();
    assert_eq!(err.code(), "PLUGIN_LOAD_FAILED", "{err}");
    assert!(err.to_string().contains("wasi:sockets"), "{err}");
    assert!(host.plugins().iter().all(|p| p.name != "net"));
    assert_healthy(&host);
}

#[test]
fn non_plugins_are_refused_at_load() {
    let host = hostile_host(config());
    let err = host.load_file(&guest("no_plugin")).unwrap_err();
    assert_eq!(err.code(), "PLUGIN_LOAD_FAILED", "{err}");
    assert!(
        err.to_string().contains("exports no worker:plugin"),
        "{err}"
    );
    let junk = common::scratch_dir("junk").join("junk.wasm");
    std::fs::write(&junk, b"\0asm\x0d\0\x01\0garbage").unwrap();
    assert_eq!(
        host.load_file(&junk).unwrap_err().code(),
        "PLUGIN_LOAD_FAILED"
    );
    let missing = host.load_file(std::path::Path::new("/nonexistent/x.wasm"));
    assert_eq!(missing.unwrap_err().code(), "PLUGIN_LOAD_FAILED");
    assert_healthy(&host);
}

#[test]
fn unknown_sampler_and_bad_mode() {
    let host = hostile_host(config());
    let err = host.sampler("nope", &params(0), 1).unwrap_err();
    assert_eq!(err.code(), "PLUGIN_NOT_FOUND");
    let err = host.sampler("hostile", &params(99), 1).unwrap_err();
    assert!(
        matches!(&err, PluginError::Reported { code, .. } if code == "BAD_MODE"),
        "{err}"
    );
    assert!(host.tokenizer().is_err());
}

#[test]
fn a_trap_leaves_other_sessions_alone() {
    let host = hostile_host(config());
    let mut good = session(&host, 0);
    let mut bad = session(&host, 3);
    let mut dev = device(5);
    let want = dev.logits_argmax(0).unwrap().0;
    assert_eq!(good.sample(&mut dev, 0, &[]).unwrap(), want);
    assert_eq!(
        bad.sample(&mut dev, 0, &[]).unwrap_err().code(),
        "PLUGIN_TRAP"
    );
    assert_eq!(good.sample(&mut dev, 0, &[]).unwrap(), want);
    // Sessions may live on other threads.
    let handle = std::thread::spawn(move || {
        let mut dev = device(5);
        good.sample(&mut dev, 0, &[]).unwrap()
    });
    assert_eq!(handle.join().unwrap(), want);
}

#[test]
fn plugin_listing_names_kind_and_contract() {
    let host = hostile_host(config());
    let list = host.plugins();
    let p = list.iter().find(|p| p.name == "hostile").unwrap();
    assert_eq!(p.kind, PluginKind::Sampler);
    assert_eq!(p.version, "0.1.0");
    assert_eq!(p.contract, "0.1.0");
    assert_eq!(host.sampler_names(), vec!["hostile".to_string()]);
}

#[test]
fn concurrent_sessions_on_many_threads() {
    let host = hostile_host(config());
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let host = host.clone();
            std::thread::spawn(move || {
                for i in 0..20u64 {
                    let mut dev = device(t * 100 + i);
                    let want = dev.logits_argmax(0).unwrap().0;
                    // Every other session of one thread traps; the others must not notice.
                    if i % 2 == 1 {
                        let mut bad = session(&host, 3);
                        assert_eq!(
                            bad.sample(&mut dev, 0, &[]).unwrap_err().code(),
                            "PLUGIN_TRAP"
                        );
                    }
                    let mut s = session(&host, 0);
                    assert_eq!(s.sample(&mut dev, 0, &[]).unwrap(), want);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker thread");
    }
}
