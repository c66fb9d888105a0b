//! Tokenizer and request-handler output checks, with test guests that answer wrongly on
//! request: the host validates what plugins return before acting on it.

mod common;

use common::{config, facts, guest};
use orcd_common::Vocab;
use orcd_plugin_host::{
    Limits, PluginError, PluginHost, PluginHostConfig, StreamEvent, TokenEvent,
};

/// Gemma 3's vocabulary size: the tokenizer pulls all of it through the `vocab` import.
const BIG_VOCAB: u32 = 262_144;

fn tokenizer_host() -> PluginHost {
    let mut v = Vocab::synthetic(BIG_VOCAB);
    v.merges = vec![b"t 1".to_vec(), b"t1 0".to_vec()];
    v.scores = (0..BIG_VOCAB).map(|i| -(i as f32)).collect();
    let cfg = PluginHostConfig {
        memory_limit_bytes: 256 << 20,
        ..config()
    };
    let host = PluginHost::new(cfg, facts(BIG_VOCAB), &v).unwrap();
    host.load_file(&guest("hostile_tokenizer")).unwrap();
    host
}

#[test]
fn tokenizer_reads_a_262k_vocabulary_and_is_checked() {
    let host = tokenizer_host();
    let mut tok = host.tokenizer().expect("init reads the whole vocabulary");
    assert_eq!(
        tok.encode("t5 t262143", false, true).unwrap(),
        vec![0, 5, 262_143]
    );
    assert_eq!(tok.piece(77).unwrap(), b"t77");
    assert!(
        tok.piece(0).unwrap().is_empty(),
        "control tokens have no piece"
    );
    assert_eq!(tok.decode(&[5, 6], false).unwrap(), b"t5t6");

    // A reported error keeps the instance; an id past the vocabulary is invalid output.
    let err = tok.encode("nope", false, false).unwrap_err();
    assert!(
        matches!(&err, PluginError::Reported { code, plugin, .. }
        if code == "UNKNOWN_TOKEN" && plugin == "lookup@0.1.0"),
        "{err}"
    );
    let err = tok.encode("out-of-range", false, false).unwrap_err();
    assert_eq!(err.code(), "PLUGIN_INVALID_OUTPUT", "{err}");
    assert_eq!(tok.encode("t9", false, false).unwrap(), vec![9]);

    // A runaway call times out; the session rebuilds its instance for the next call.
    let err = tok.encode("spin", false, false).unwrap_err();
    assert_eq!(err.code(), "PLUGIN_TIMEOUT", "{err}");
    assert_eq!(tok.encode("t10", false, false).unwrap(), vec![10]);
    drop(tok);
    // Sessions come from the pool and still work.
    for _ in 0..3 {
        let mut tok = host.tokenizer().unwrap();
        assert_eq!(tok.encode("t1 t2", false, false).unwrap(), vec![1, 2]);
    }
}

fn limits() -> Limits {
    Limits {
        max_prompt_chars: 32768,
        max_tokens_cap: 2048,
        vocab_size: 1000,
        context_length: 4096,
        samplers: vec!["standard".into()],
    }
}

#[test]
fn handler_output_is_checked() {
    let host = PluginHost::new(config(), facts(1000), &Vocab::synthetic(1000)).unwrap();
    host.load_file(&guest("hostile_handler")).unwrap();
    let mut h = host.request_handler().unwrap();
    assert_eq!(h.plugin().name, "liar");

    // A refusal names the field and keeps the session usable.
    let err = h
        .parse_execute(b"{}", "application/json", &limits())
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::InvalidRequest { field, .. } if field == "prompt"),
        "{err}"
    );
    assert_eq!(err.code(), "INVALID_REQUEST");

    // A job that breaks the limits is the handler's fault.
    let err = h
        .parse_execute(b"bad-job", "application/json", &limits())
        .unwrap_err();
    assert_eq!(err.code(), "PLUGIN_INVALID_OUTPUT", "{err}");
    assert!(err.to_string().contains("max_tokens"), "{err}");

    let mut h = host.request_handler().unwrap();
    let err = h.check_stop("abc", &["b".into()]).unwrap_err();
    assert_eq!(err.code(), "PLUGIN_INVALID_OUTPUT", "{err}");
    let mut h = host.request_handler().unwrap();
    let event = StreamEvent::Token(TokenEvent {
        text: "x".into(),
        index: 0,
    });
    let err = h.render_event(&event).unwrap_err();
    assert_eq!(err.code(), "PLUGIN_INVALID_OUTPUT", "{err}");

    let mut h = host.request_handler().unwrap();
    let err = h
        .parse_execute(b"spin", "application/json", &limits())
        .unwrap_err();
    assert_eq!(err.code(), "PLUGIN_TIMEOUT", "{err}");
    // Oversized bodies never reach the plugin.
    let mut h = host.request_handler().unwrap();
    let big = vec![b' '; orcd_plugin_host::MAX_BODY_BYTES + 1];
    let err = h
        .parse_execute(&big, "application/json", &limits())
        .unwrap_err();
    assert!(matches!(&err, PluginError::InvalidRequest { field, .. } if field == "body"));
}
