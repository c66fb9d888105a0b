//! A misbehaving constraint plugin is contained like any other: a trap in `compile` or
//! `allowed` is `PLUGIN_TRAP`, a call that never returns `PLUGIN_TIMEOUT`, a mask of the wrong
//! length `PLUGIN_INVALID_OUTPUT`, a refusal `PLUGIN_ERROR` with the plugin's code; the plugin
//! is tagged in each error, and the next session works.

mod common;

use common::{VOCAB, config, facts, guest};
use orcd_common::Vocab;
use orcd_plugin_host::{PluginError, PluginHost, PluginKind};

fn host() -> PluginHost {
    let host =
        PluginHost::new(config(), facts(VOCAB), &Vocab::synthetic(VOCAB)).expect("host starts");
    let info = host
        .load_file(&guest("hostile_constraint"))
        .expect("hostile constraint loads");
    assert_eq!(info.kind, PluginKind::Constraint);
    assert_eq!(info.contract, "0.2.0");
    host
}

/// A healthy session still works.
fn assert_healthy(host: &PluginHost) {
    let mut c = host.constraint("hostile", "ok", "").expect("ok session");
    let mask = c.allowed(10).expect("ok mask");
    assert_eq!(mask.len(), (VOCAB as usize).div_ceil(32));
    // Bits past the vocabulary are cleared by the host.
    assert_eq!(mask.last().copied(), Some((1u32 << (VOCAB % 32)) - 1));
    c.advance(3).unwrap();
}

#[test]
fn misbehaviour_is_typed_and_contained() {
    let host = host();
    assert_healthy(&host);
    let code = |e: &PluginError| e.code().to_string();
    let e = host.constraint("hostile", "trap-compile", "").unwrap_err();
    assert_eq!(code(&e), "PLUGIN_TRAP", "{e}");
    assert!(e.to_string().contains("hostile@0.1.0"), "{e}");
    assert_healthy(&host);
    match host.constraint("hostile", "nope", "") {
        Err(PluginError::Reported { code, .. }) => assert_eq!(code, "NOPE"),
        other => panic!("{other:?}"),
    }
    assert_healthy(&host);
    for (mode, want) in [
        ("trap-allowed", "PLUGIN_TRAP"),
        ("loop-allowed", "PLUGIN_TIMEOUT"),
        ("short", "PLUGIN_INVALID_OUTPUT"),
    ] {
        let mut c = host.constraint("hostile", mode, "").unwrap();
        let e = c.allowed(10).unwrap_err();
        assert_eq!(code(&e), want, "{mode}: {e}");
        // The failed session stays failed; the host serves the next one.
        assert!(c.allowed(10).is_err(), "{mode}");
        assert_healthy(&host);
    }
}
