//! The conformance kit against real components: the shipped sampler, request handler,
//! tokenizer and constraint, and the Mirostat and choice examples pass it; a deliberately
//! broken sampler and a broken constraint fail it on the checks their bugs break.
//!
//! The components are built here with a nested `cargo build --target wasm32-wasip2` into
//! `target/wasm-plugins` (the folder the plugin host's build script uses too).

use std::path::{Path, PathBuf};
use std::process::Command;

use orcd_conformance::{
    SamplerOptions, Suite, check_constraint, check_handler, check_sampler, check_tokenizer,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Build `package` (in the workspace at `dir`) for wasm32-wasip2 and return its component.
fn build(dir: &Path, package: &str) -> PathBuf {
    orcd_tests::guest::build_guest(dir, package)
}

fn assert_passes(report: &orcd_conformance::Report) {
    println!("{report}");
    assert!(report.passed(), "{report}");
}

#[test]
fn standard_sampler_passes() {
    let wasm = build(&root(), "orcd-sampler-standard");
    assert_passes(&check_sampler(&wasm, &SamplerOptions::default()).unwrap());
}

#[test]
fn mirostat_example_passes() {
    let wasm = build(&root(), "mirostat-sampler");
    assert_passes(&check_sampler(&wasm, &SamplerOptions::default()).unwrap());
}

#[test]
fn request_handler_passes_the_corpora() {
    let wasm = build(&root(), "orcd-handler");
    let report = check_handler(&wasm).unwrap();
    assert_passes(&report);
    // 55 refusals + 13 acceptances + stop sequences + events.
    assert!(report.checks.len() >= 60);
}

#[test]
fn tokenizer_passes_a_llama_cpp_suite() {
    let wasm = build(&root(), "orcd-tokenizer");
    let reference = std::env::var_os("ORCD_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/reference"));
    let vocab = reference.join("tokenizer/ggml-vocab-llama-spm.gguf");
    let suites = vec![Suite::beside(&vocab)];
    assert!(
        suites[0].inp.is_file(),
        "llama.cpp's suite beside {}",
        vocab.display()
    );
    assert_passes(&check_tokenizer(&wasm, &vocab, &suites).unwrap());
}

#[test]
fn constraint_plugins_pass_the_constraint_checks() {
    // The built-in `structured` (every kind; the kit's `yes|no` as a regex) and the example
    // `choice` (literal alternatives only).
    for (package, name) in [
        ("orcd-constraint", "structured"),
        ("choice-constraint", "choice"),
    ] {
        let wasm = build(&root(), package);
        let report = check_constraint(&wasm).unwrap();
        assert!(report.plugin.starts_with(&format!("{name}@")), "{report}");
        assert_passes(&report);
        assert!(report.checks.len() >= 7, "{report}");
    }
}

#[test]
fn broken_constraint_fails_on_its_bugs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("broken-constraint");
    let wasm = build(&dir, "broken-constraint");
    let report = check_constraint(&wasm).unwrap();
    println!("{report}");
    assert!(!report.passed());
    let failed: Vec<&str> = report.failures().map(|c| c.name.as_str()).collect();
    for check in [
        "first mask is well formed",
        "6 random walks end complete",
        "the longest walk ends complete",
        "a token outside the mask is refused",
        "an unknown kind is refused",
    ] {
        assert!(failed.contains(&check), "{check}: {failed:?}");
    }
    // What it does right still passes.
    let passed = |name: &str| report.checks.iter().any(|c| c.name == name && c.passed);
    assert!(passed("compiles a trivial constraint"));
}

#[test]
fn broken_sampler_fails_on_its_bugs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("broken-sampler");
    let wasm = build(&dir, "broken-sampler");
    let report = check_sampler(&wasm, &SamplerOptions::default()).unwrap();
    println!("{report}");
    assert!(!report.passed());
    let failed: Vec<&str> = report.failures().map(|c| c.name.as_str()).collect();
    assert!(failed.contains(&"ids in range"), "{failed:?}");
    assert!(failed.contains(&"seed changes the draw"), "{failed:?}");
    // What it does right still passes.
    let passed = |name: &str| report.checks.iter().any(|c| c.name == name && c.passed);
    assert!(passed("temperature 0 is argmax"));
    assert!(passed("same seed, same tokens"));
}

#[test]
fn a_plugin_of_another_kind_is_refused() {
    let wasm = build(&root(), "orcd-handler");
    let err = check_sampler(&wasm, &SamplerOptions::default()).unwrap_err();
    assert!(err.to_string().contains("not a sampler"), "{err}");
}

#[test]
fn the_binary_reports_and_sets_its_exit_status() {
    let bin = env!("CARGO_BIN_EXE_orcd-conform");
    let run = |args: &[&std::ffi::OsStr]| Command::new(bin).args(args).output().unwrap();
    let handler = build(&root(), "orcd-handler");
    let out = run(&["handler".as_ref(), handler.as_os_str()]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}");
    assert!(
        table.contains("PASS  refuses: prompt over 32768 chars"),
        "{table}"
    );

    let broken = build(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("broken-sampler"),
        "broken-sampler",
    );
    let out = run(&["sampler".as_ref(), broken.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL  seed changes the draw"));

    let out = run(&["sampler".as_ref(), "/nonexistent.wasm".as_ref()]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["juggler".as_ref(), handler.as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}
