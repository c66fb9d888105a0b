//! The shipped tokenizer plugin end to end: the component built into `orcd-plugin-host` (this
//! crate compiled for `wasm32-wasip2`) runs every llama.cpp suite through the plugin host's
//! `TokenizerSession`, with the vocabulary handed over the WIT `vocab` interface.

mod common;

use std::path::Path;

use common::{Case, SUITES, json_cases, model_path, suite_cases, suite_vocab};

use orcd_plugin_host::{ModelFacts, PluginHost, PluginHostConfig, PluginKind, TokenizerSession};

/// A plugin host with the built-in plugins for the vocabulary of the GGUF file at `path`.
fn host_for(path: &Path) -> PluginHost {
    let v = orcd_model::vocab::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let facts = ModelFacts {
        architecture: String::new(),
        name: v.name.clone(),
        vocab_size: v.len() as u32,
        context_length: 2048,
        bos: v.bos,
        eos: v.eos,
        eot: v.eot,
    };
    PluginHost::new(PluginHostConfig::default(), facts, &v).expect("plugin host starts")
}

fn session(host: &PluginHost) -> TokenizerSession {
    let tokenizers: Vec<_> = host
        .plugins()
        .into_iter()
        .filter(|p| p.kind == PluginKind::Tokenizer)
        .collect();
    assert_eq!(
        tokenizers.len(),
        1,
        "the built-in tokenizer plugin is missing: {tokenizers:?}"
    );
    host.tokenizer().expect("tokenizer plugin initialises")
}

fn check(name: &str, tok: &mut TokenizerSession, cases: &[Case]) {
    let failures = mismatches(name, tok, cases);
    assert!(
        failures.is_empty(),
        "{name} through the plugin:\n{}",
        failures.join("\n")
    );
}

/// The cases whose ids differ from llama.cpp's, described; round trips are asserted.
fn mismatches(name: &str, tok: &mut TokenizerSession, cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    for c in cases {
        let got = tok.encode(&c.text, false, false).expect("encode");
        if got != c.ids {
            failures.push(format!("{:?}: want {:?} got {:?}", c.text, c.ids, got));
        }
        // WordPiece lowercases and strips accents and spaces: no round trip.
        if name != "bert-bge" {
            let back = tok.decode(&got, false).expect("decode");
            assert_eq!(String::from_utf8_lossy(&back), c.text, "{name}: round trip");
        }
    }
    failures
}

/// Every suite through the plugin, each case counted (`suite: passed/total` is printed); any
/// mismatch fails the test after all suites ran.
#[test]
fn every_vocab_suite_through_the_plugin() {
    let mut summary = Vec::new();
    let mut failures = Vec::new();
    for name in SUITES {
        let host = host_for(&suite_vocab(name));
        let mut tok = session(&host);
        let cases = suite_cases(name);
        assert!(!cases.is_empty(), "{name}: no cases");
        let bad = mismatches(name, &mut tok, &cases);
        summary.push(format!(
            "{name}: {}/{}",
            cases.len() - bad.len(),
            cases.len()
        ));
        failures.extend(bad.into_iter().map(|f| format!("{name}: {f}")));
    }
    eprintln!(
        "llama.cpp vocab suites (plugin):\n  {}",
        summary.join("\n  ")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn real_model_vocabularies_through_the_plugin() {
    for (which, file) in [
        ("smollm2", "smollm2-135m.json"),
        ("gemma3", "gemma3-270m.json"),
    ] {
        let host = host_for(&model_path(which));
        let mut tok = session(&host);
        check(which, &mut tok, &json_cases(file));
    }
}

#[test]
fn plugin_reports_bad_ids_and_parses_special_tokens() {
    let host = host_for(&model_path("smollm2"));
    let mut tok = session(&host);
    let ids = tok.encode("<|im_start|>user", true, false).expect("encode");
    assert_eq!(ids[0], 1);
    assert!(tok.piece(1_000_000).is_err());
    // The session survives a reported error.
    assert_eq!(tok.decode(&ids[1..], false).expect("decode"), b"user");
    // A piece of a control token is empty; a byte-level piece is its bytes.
    assert_eq!(tok.piece(1).expect("piece"), b"");
    assert_eq!(tok.piece(ids[1]).expect("piece"), b"user");
}

#[test]
fn plugin_refuses_unsupported_vocabularies_with_a_typed_error() {
    let mut data = orcd_model::vocab::open(&suite_vocab("gpt-2")).expect("vocabulary");
    data.pre = "nonesuch".into();
    let facts = ModelFacts {
        architecture: String::new(),
        name: String::new(),
        vocab_size: data.tokens.len() as u32,
        context_length: 2048,
        bos: data.bos,
        eos: data.eos,
        eot: data.eot,
    };
    let host =
        PluginHost::new(PluginHostConfig::default(), facts, &data).expect("plugin host starts");
    match host.tokenizer() {
        Err(orcd_plugin_host::PluginError::Reported { code, message, .. }) => {
            assert_eq!(code, "UNSUPPORTED_PRE_TOKENIZER");
            assert!(message.contains("nonesuch"), "{message}");
        }
        Err(other) => panic!("expected the plugin's own error, got {other}"),
        Ok(_) => panic!("an unknown pre-tokenizer was accepted"),
    }
}
