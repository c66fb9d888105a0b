//! Every shipped plugin, as built into this crate by `build.rs`, loads and serves end to end:
//! the tokenizer over a real model's vocabulary (SmolLM2), the `standard` sampler over the mock
//! device, and the `orcd` request handler once its crate is a component.

use std::path::PathBuf;

use orcd_common::Vocab;
use orcd_device::mock::MockDevice;
use orcd_device::{Device, LogitsWanted, SeqInput};
use orcd_plugin_host::{
    EndEvent, Limits, ModelFacts, PluginHost, PluginHostConfig, PluginKind, PluginSource,
    SamplingParams, StreamEvent, TokenEvent,
};
use orcd_tests::models::fetch_model;

fn host() -> (PluginHost, Vocab) {
    let vocab = orcd_model::vocab::open(&fetch_model("smollm2")).expect("vocabulary");
    let facts = ModelFacts {
        architecture: "llama".into(),
        name: vocab.name.clone(),
        vocab_size: vocab.len() as u32,
        context_length: 2048,
        bos: vocab.bos,
        eos: vocab.eos,
        eot: vocab.eot,
    };
    let host = PluginHost::new(PluginHostConfig::default(), facts, &vocab).expect("host starts");
    (host, vocab)
}

/// Whether the guest crate in `plugins/<folder>` is a component yet.
fn is_component(folder: &str) -> bool {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins")
        .join(folder)
        .join("Cargo.toml");
    std::fs::read_to_string(manifest).is_ok_and(|t| t.contains("cdylib"))
}

fn sampling(temperature: f32) -> SamplingParams {
    SamplingParams {
        temperature,
        top_k: 40,
        top_p: 0.9,
        min_p: 0.0,
        repetition_penalty: 1.1,
        presence_penalty: 0.0,
        frequency_penalty: 0.0,
        penalty_window: 64,
        extra: Vec::new(),
    }
}

/// The build embedded all three plugins, and the version it recorded for each crate is the one
/// the loaded plugin reports (what `worker-orcd --version` prints matches `/health`).
#[test]
fn every_shipped_plugin_is_built_in_with_its_version() {
    let built = orcd_plugin_host::builtin_plugins();
    let crates: Vec<&str> = built.iter().map(|b| b.crate_name).collect();
    assert_eq!(
        crates,
        [
            "orcd-tokenizer",
            "orcd-sampler-standard",
            "orcd-handler",
            "orcd-constraint"
        ]
    );
    let (host, _) = host();
    for b in built {
        let loaded = host
            .plugins()
            .into_iter()
            .find(|p| p.source == PluginSource::Builtin(b.crate_name.to_string()))
            .unwrap_or_else(|| panic!("{} is built in but not loaded", b.crate_name));
        assert_eq!(loaded.version, b.version, "{}", b.crate_name);
    }
}

#[test]
fn builtins_are_listed_with_kind_and_contract() {
    let (host, _) = host();
    let list = host.plugins();
    for (kind, folder) in [
        (PluginKind::Tokenizer, "tokenizer"),
        (PluginKind::Sampler, "sampler"),
        (PluginKind::RequestHandler, "handler"),
        (PluginKind::Constraint, "constraint"),
    ] {
        if !is_component(folder) {
            continue;
        }
        let p = list
            .iter()
            .find(|p| p.kind == kind)
            .unwrap_or_else(|| panic!("no built-in {kind} plugin in {list:?}"));
        assert!(matches!(p.source, PluginSource::Builtin(_)));
        assert_eq!(p.contract, orcd_plugin_host::CONTRACT_VERSION);
    }
    assert!(
        host.sampler_names()
            .first()
            .is_some_and(|n| n == "standard")
    );
}

#[test]
fn tokenizer_round_trips_and_streams_pieces() {
    let (host, vocab) = host();
    let text = "Hello world, héllo 世界!";
    let ids = {
        let mut tok = host.tokenizer().expect("tokenizer");
        let ids = tok.encode(text, false, false).expect("encode");
        assert!(!ids.is_empty());
        assert!(ids.iter().all(|&id| (id as usize) < vocab.len()));
        assert_eq!(tok.decode(&ids, false).unwrap(), text.as_bytes());
        ids
    };
    // The second session reuses the pooled instance and agrees with the first.
    let mut tok = host.tokenizer().expect("tokenizer");
    assert_eq!(tok.encode(text, false, false).unwrap(), ids);
    let streamed: Vec<u8> = ids.iter().flat_map(|&id| tok.piece(id).unwrap()).collect();
    assert_eq!(streamed, text.as_bytes());
    // An out-of-range id is the plugin's reported error, not a trap; the session goes on.
    assert!(tok.piece(u32::MAX).is_err());
    assert_eq!(tok.encode(text, false, false).unwrap(), ids);
}

#[test]
fn standard_sampler_is_greedy_at_zero_and_seeded_otherwise() {
    let (host, vocab) = host();
    let n = vocab.len();
    let run = |temperature: f32, seed: u64| -> Vec<u32> {
        let mut dev = MockDevice::new(n, 5).unwrap();
        let slot = dev.alloc_seq(64).unwrap();
        let mut s = host
            .sampler("standard", &sampling(temperature), seed)
            .unwrap();
        let mut seq = vec![1u32, 2, 3];
        let mut fed = 0;
        for _ in 0..16 {
            dev.forward(&[SeqInput {
                slot,
                start_pos: fed,
                tokens: &seq[fed..],
                logits: LogitsWanted::Last,
            }])
            .unwrap();
            fed = seq.len();
            let id = s.sample(&mut dev, 0, &seq).unwrap();
            if temperature == 0.0 {
                assert_eq!(
                    id,
                    dev.logits_argmax(0).unwrap().0,
                    "greedy after penalties"
                );
            }
            seq.push(id);
        }
        seq
    };
    run(0.0, 1);
    assert_eq!(run(0.8, 42), run(0.8, 42), "same seed, same tokens");
    assert_ne!(run(0.8, 42), run(0.8, 43), "another seed, other tokens");
}

#[test]
fn request_handler_parses_renders_and_stops() {
    if !is_component("handler") {
        eprintln!("plugins/handler is not a component yet; skipped");
        return;
    }
    let (host, vocab) = host();
    let mut h = host.request_handler().expect("handler");
    let limits = Limits {
        max_prompt_chars: 32768,
        max_tokens_cap: 2048,
        vocab_size: vocab.len() as u32,
        context_length: 2048,
        samplers: host.sampler_names(),
    };
    let body = br#"{"job_id":"j1","prompt":"Hi","max_tokens":5,"temperature":0.7,"seed":42,"stop":["\n\n"]}"#;
    let job = h
        .parse_execute(body, "application/json", &limits)
        .expect("valid body");
    assert_eq!(job.job_id, "j1");
    assert_eq!(job.max_tokens, 5);
    assert_eq!(job.seed, Some(42));
    assert_eq!(job.sampler, "standard");
    let err = h
        .parse_execute(
            br#"{"job_id":"j2","prompt":"Hi","temperature":9}"#,
            "application/json",
            &limits,
        )
        .unwrap_err();
    assert_eq!(err.code(), "INVALID_REQUEST");
    assert!(err.to_string().contains("temperature"), "{err}");

    let hit = h
        .check_stop("one\n\ntwo", &job.stop)
        .unwrap()
        .expect("stop found");
    assert_eq!((hit.stop_index, hit.offset), (0, 3));
    assert!(h.check_stop("one two", &job.stop).unwrap().is_none());

    let ev = h
        .render_event(&StreamEvent::Token(TokenEvent {
            text: "héllo \"x\"".into(),
            index: 0,
        }))
        .unwrap();
    assert!(ev.starts_with("event: token\ndata: {"), "{ev}");
    let ev = h
        .render_event(&StreamEvent::End(EndEvent {
            tokens_out: 5,
            decode_time_ms: 12,
            stop_reason: "max_tokens".into(),
            seed: 42,
        }))
        .unwrap();
    assert!(ev.starts_with("event: end\ndata: {"), "{ev}");
}
