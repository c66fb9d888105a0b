//! The hostile corpus run against the tokenizer and request-handler worlds (the sampler's is in
//! `hostile.rs`): endless loop, fuel, memory bomb, panic, stack overflow (Wasm and shadow
//! stack), a sleep inside the host, a random-bytes bomb, oversized outputs, invalid UTF-8,
//! and probes of the clocks, random numbers, environment, files and sockets. Each attack ends
//! only its own call, with a stable `PLUGIN_*` code; afterwards the attacked world serves a new
//! session and the other plugins of the same host serve as if nothing happened.

mod common;

use std::time::Duration;

use common::{VOCAB, config, facts, guest, params};
use orcd_common::Vocab;
use orcd_device::mock::MockDevice;
use orcd_device::{Device, LogitsWanted, SeqInput};
use orcd_plugin_host::{
    Limits, PluginError, PluginHost, PluginHostConfig, StreamEvent, TokenEvent,
};

/// A host with the hostile tokenizer, request handler and sampler loaded together.
fn host(cfg: PluginHostConfig) -> PluginHost {
    let host = PluginHost::new(cfg, facts(VOCAB), &Vocab::synthetic(VOCAB)).unwrap();
    for g in ["hostile_tokenizer", "hostile_handler", "hostile_sampler"] {
        host.load_file(&guest(g)).unwrap();
    }
    host
}

fn limits() -> Limits {
    Limits {
        max_prompt_chars: 32768,
        max_tokens_cap: 2048,
        vocab_size: VOCAB,
        context_length: 4096,
        samplers: vec!["standard".into(), "hostile".into()],
    }
}

/// Every plugin of the host works: the tokenizer encodes, the handler answers, the sampler
/// samples the device's argmax.
fn assert_all_healthy(host: &PluginHost) {
    let mut tok = host.tokenizer().unwrap();
    assert_eq!(tok.encode("t5 t6", false, false).unwrap(), vec![5, 6]);
    assert_eq!(tok.piece(7).unwrap(), b"t7");
    let mut h = host.request_handler().unwrap();
    let err = h
        .parse_execute(b"{}", "application/json", &limits())
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::InvalidRequest { field, .. } if field == "prompt"),
        "{err}"
    );
    let mut dev = MockDevice::new(VOCAB as usize, 3).unwrap();
    let slot = dev.alloc_seq(16).unwrap();
    dev.forward(&[SeqInput {
        slot,
        start_pos: 0,
        tokens: &[5, 6, 7],
        logits: LogitsWanted::Last,
    }])
    .unwrap();
    let mut s = host.sampler("hostile", &params(0), 1).unwrap();
    assert_eq!(
        s.sample(&mut dev, 0, &[]).unwrap(),
        dev.logits_argmax(0).unwrap().0
    );
}

fn tokenizer_attack(host: &PluginHost, word: &str) -> PluginError {
    let mut tok = host.tokenizer().unwrap();
    let err = tok.encode(word, false, false).unwrap_err();
    // The same session goes on (with a fresh instance after a trap).
    assert_eq!(tok.encode("t9", false, false).unwrap(), vec![9], "{word}");
    err
}

fn handler_attack(host: &PluginHost, body: &str) -> PluginError {
    let mut h = host.request_handler().unwrap();
    h.parse_execute(body.as_bytes(), "application/json", &limits())
        .unwrap_err()
}

/// The attacks that must end the call, with the code and a word of the message.
const CONTAINED: &[(&str, &str, &str)] = &[
    ("spin", "PLUGIN_TIMEOUT", "interrupted"),
    ("sleep", "PLUGIN_TIMEOUT", "interrupted"),
    ("bomb", "PLUGIN_MEMORY", "memory"),
    ("panic", "PLUGIN_TRAP", "panics on purpose"),
    ("recurse", "PLUGIN_TRAP", "stack overflow"),
    ("recurse-big", "PLUGIN_TRAP", ""),
    ("random-bomb", "PLUGIN_TRAP", "exceeds limit"),
    ("bad-utf8", "PLUGIN_TRAP", "utf-8"),
];

#[test]
fn tokenizer_attacks_are_contained() {
    let host = host(config());
    for &(word, code, says) in CONTAINED {
        let err = tokenizer_attack(&host, word);
        assert_eq!(err.code(), code, "{word}: {err}");
        assert!(
            err.to_string().to_lowercase().contains(says),
            "{word}: {err}"
        );
        assert!(err.to_string().contains("lookup@0.1.0"), "{word}: {err}");
        assert_all_healthy(&host);
    }
    // Oversized outputs: far more ids than bytes, a 1 MiB piece.
    let err = tokenizer_attack(&host, "huge");
    assert_eq!(err.code(), "PLUGIN_INVALID_OUTPUT", "{err}");
    let mut tok = host.tokenizer().unwrap();
    let err = tok.piece(VOCAB - 1).unwrap_err();
    assert_eq!(err.code(), "PLUGIN_INVALID_OUTPUT", "{err}");
    assert_all_healthy(&host);
}

#[test]
fn handler_attacks_are_contained() {
    let host = host(config());
    for &(word, code, says) in CONTAINED {
        let err = handler_attack(&host, word);
        assert_eq!(err.code(), code, "{word}: {err}");
        assert!(
            err.to_string().to_lowercase().contains(says),
            "{word}: {err}"
        );
        assert!(err.to_string().contains("liar@0.1.0"), "{word}: {err}");
        assert_all_healthy(&host);
    }
    // Oversized and forged outputs: a 1 MiB prompt, a job id with a newline, a 2 MiB event,
    // an event that is not UTF-8.
    for body in ["huge", "bad-id"] {
        let err = handler_attack(&host, body);
        assert_eq!(err.code(), "PLUGIN_INVALID_OUTPUT", "{body}: {err}");
    }
    for (text, code) in [
        ("huge", "PLUGIN_INVALID_OUTPUT"),
        ("bad-utf8", "PLUGIN_TRAP"),
    ] {
        let mut h = host.request_handler().unwrap();
        let event = StreamEvent::Token(TokenEvent {
            text: text.into(),
            index: 0,
        });
        let err = h.render_event(&event).unwrap_err();
        assert_eq!(err.code(), code, "{text}: {err}");
    }
    assert_all_healthy(&host);
}

#[test]
fn fuel_ends_loops_in_both_worlds() {
    let cfg = PluginHostConfig {
        fuel_per_call: Some(5_000_000),
        call_timeout: Duration::from_secs(30),
        ..config()
    };
    let host = host(cfg);
    let err = tokenizer_attack(&host, "spin");
    assert_eq!(err.code(), "PLUGIN_TIMEOUT", "{err}");
    assert!(err.to_string().contains("fuel"), "{err}");
    let err = handler_attack(&host, "spin");
    assert_eq!(err.code(), "PLUGIN_TIMEOUT", "{err}");
    assert!(err.to_string().contains("fuel"), "{err}");
    assert_all_healthy(&host);
}

#[test]
fn wasi_probes_see_clocks_and_random_but_no_environment_or_files() {
    let host = host(config());
    for word in ["clock", "env", "file"] {
        match tokenizer_attack(&host, word) {
            PluginError::Reported { code, message, .. } => {
                assert_eq!(code, "PROBE_OK", "{word}: {message}")
            }
            other => panic!("{word}: expected a reported finding, got {other}"),
        }
        match handler_attack(&host, word) {
            PluginError::InvalidRequest { field, message } => {
                assert_eq!(field, "probe-ok", "{word}: {message}")
            }
            other => panic!("{word}: expected a refusal carrying the finding, got {other}"),
        }
    }
    assert_all_healthy(&host);
}

#[test]
fn tokenizers_and_handlers_with_sockets_are_refused_at_load() {
    let host = host(config());
    for g in ["net_tokenizer", "net_handler"] {
        let err = host.load_file(&guest(g)).unwrap_err();
        assert_eq!(err.code(), "PLUGIN_LOAD_FAILED", "{g}: {err}");
        assert!(err.to_string().contains("wasi:sockets"), "{g}: {err}");
    }
    assert!(
        host.plugins()
            .iter()
            .all(|p| p.name != "net-tok" && p.name != "net-handler")
    );
    assert_all_healthy(&host);
}
