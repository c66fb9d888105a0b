//! The built-in constraint plugin `structured` through the host: a session per request over
//! SmolLM2's vocabulary, masks as bitset words of the vocabulary's length, the example output
//! of every schema fixture accepted token by token, end tokens only when complete, refusals as
//! the plugin's typed codes.

use orcd_common::Vocab;
use orcd_plugin_host::{ModelFacts, PluginError, PluginHost, PluginHostConfig};
use orcd_tests::models::{fetch_model, repo_root};
use serde_json::Value;

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

fn bit(mask: &[u32], id: u32) -> bool {
    mask[id as usize / 32] >> (id % 32) & 1 == 1
}

#[test]
fn fixtures_are_followed_token_by_token_through_the_plugin() {
    let (host, vocab) = host();
    assert_eq!(host.constraint_names(), ["structured"]);
    let eos = vocab.eos.expect("SmolLM2 has an EOS");
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures/constraint/schemas.json"))
        .expect("fixtures");
    let fixtures: Vec<Value> = serde_json::from_str(&text).expect("fixtures parse");
    let mut tok = host.tokenizer().expect("tokenizer");
    for f in &fixtures {
        let name = f["name"].as_str().unwrap();
        let mut c = host
            .constraint("structured", "json-schema", &f["schema"].to_string())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let example = f["example"].to_string();
        for id in tok.encode(&example, false, false).unwrap() {
            let mask = c.allowed(u32::MAX).unwrap();
            assert_eq!(mask.len(), vocab.len().div_ceil(32));
            assert!(bit(&mask, id), "{name}: token {id} of {example}");
            assert!(
                !bit(&mask, eos),
                "{name}: EOS before the output is complete"
            );
            c.advance(id).unwrap();
        }
        assert!(c.is_complete().unwrap(), "{name}");
        assert!(
            bit(&c.allowed(u32::MAX).unwrap(), eos),
            "{name}: EOS at the end"
        );
        c.advance(eos).unwrap();
    }
}

#[test]
fn a_token_outside_the_mask_is_refused() {
    let (host, _) = host();
    let mut c = host.constraint("structured", "regex", "[0-9]+").unwrap();
    let mask = c.allowed(u32::MAX).unwrap();
    let mut tok = host.tokenizer().unwrap();
    let hello = tok.encode("hello", false, false).unwrap()[0];
    assert!(!bit(&mask, hello));
    match c.advance(hello) {
        Err(PluginError::Reported { code, .. }) => assert_eq!(code, "TOKEN_NOT_ALLOWED"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn specs_the_plugin_cannot_enforce_are_typed_refusals() {
    let (host, _) = host();
    for (kind, spec, want) in [
        (
            "json-schema",
            r#"{"type":"string","pattern":"a+"}"#,
            "UNSUPPORTED",
        ),
        ("json-schema", "{", "INVALID_SCHEMA"),
        ("regex", "(", "INVALID_REGEX"),
        ("grammar", "root ::= x", "UNKNOWN_KIND"),
    ] {
        match host.constraint("structured", kind, spec) {
            Err(PluginError::Reported { code, .. }) => assert_eq!(code, want, "{kind} {spec}"),
            other => panic!("{kind} {spec}: {other:?}"),
        }
    }
    assert!(matches!(
        host.constraint("nope", "regex", "a"),
        Err(PluginError::NotFound { .. })
    ));
}
