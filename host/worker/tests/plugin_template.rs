//! The plugin author's path, end to end with the `worker-orcd` binary, so the templates cannot
//! rot: for every kind (sampler, constraint, tokenizer, handler), `plugin new` (no
//! `--sdk-path`: what the worker carries) writes a crate in a folder outside the repository,
//! its native unit tests pass, it builds for `wasm32-wasip2` with a plain `cargo build`, and
//! `plugin check` passes it; a worker serves the new sampler through `/v1/completions`. The
//! examples pass the kit the same way; `plugin check` of a file that is not a plugin exits 2.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::worker_orcd;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `cargo ARGS` in `dir`, without the outer cargo's settings, into `target`.
fn cargo(dir: &Path, args: &[&str], target: &Path) -> std::process::Output {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(dir)
        .args(args)
        .env("CARGO_TARGET_DIR", target);
    for (key, _) in std::env::vars_os() {
        if let Some(k) = key.to_str()
            && ((k.starts_with("CARGO_") && k != "CARGO_HOME")
                || matches!(k, "RUSTFLAGS" | "MAKEFLAGS" | "MFLAGS"))
        {
            cmd.env_remove(k);
        }
    }
    cmd.env("CARGO_TARGET_DIR", target);
    cmd.output().expect("run cargo")
}

fn ok(out: &std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A crate of `kind` written by `plugin new` (the SDK and libraries the worker carries) in a
/// fresh folder outside the repository, its native unit tests run, built for wasm32-wasip2
/// with a plain `cargo build`; returns the folder it is in and the component.
fn new_and_build(kind: &str, name: &str) -> (PathBuf, PathBuf) {
    // Outside the repository: nothing of it is reachable by a relative path.
    let work = std::env::temp_dir().join(format!("orcd-plugin-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    assert!(!work.canonicalize().unwrap().starts_with(repo()));
    let out = worker_orcd(&[
        "plugin",
        "new",
        name,
        "--kind",
        kind,
        "--dir",
        work.to_str().unwrap(),
    ]);
    ok(&out, "plugin new");
    let krate = work.join(name);
    // The repository's lock file pins the same crates.io versions (and lets the build run
    // without reaching a registry when its cache holds them); the SDK and the handler library
    // come from the crate's own folder.
    std::fs::copy(repo().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let target = repo().join("target/plugin-template-build");
    let tests = ok(
        &cargo(&krate, &["test", "--release", "--offline"], &target),
        "cargo test",
    );
    let passed: usize = tests
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(passed > 0, "{kind}: no unit test ran:\n{tests}");
    ok(
        &cargo(
            &krate,
            &[
                "build",
                "--release",
                "--offline",
                "--target",
                "wasm32-wasip2",
            ],
            &target,
        ),
        "cargo build --target wasm32-wasip2",
    );
    // Lint-clean as written, natively (logic and tests) and for Wasm (the exports).
    for args in [
        &["clippy", "--release", "--offline", "--all-targets"][..],
        &[
            "clippy",
            "--release",
            "--offline",
            "--target",
            "wasm32-wasip2",
        ][..],
    ] {
        let mut args = args.to_vec();
        args.extend(["--", "-D", "warnings"]);
        ok(&cargo(&krate, &args, &target), "cargo clippy");
    }
    let wasm = target.join(format!(
        "wasm32-wasip2/release/{}.wasm",
        name.replace('-', "_")
    ));
    (work, wasm)
}

/// `plugin check` passes `wasm`, a plugin `name@0.1.0` of `kind`; returns the table.
fn check_passes(wasm: &Path, extra: &[&str], name: &str, kind: &str) -> String {
    let mut args = vec!["plugin", "check", wasm.to_str().unwrap()];
    args.extend_from_slice(extra);
    let report = ok(&worker_orcd(&args), "plugin check");
    assert!(
        report.contains(&format!("plugin: {name}@0.1.0 ({kind})")),
        "{report}"
    );
    assert!(report.contains(" 0 failed"), "{report}");
    report
}

#[test]
fn plugin_new_then_cargo_build_then_plugin_check_passes() {
    let (work, wasm) = new_and_build("sampler", "tmpl-sampler");
    let manifest = std::fs::read_to_string(work.join("tmpl-sampler/Cargo.toml")).unwrap();
    assert!(
        manifest.contains("path = \"vendor/orcd-plugin-sdk\""),
        "{manifest}"
    );
    check_passes(&wasm, &[], "tmpl-sampler", "sampler");

    // Dropped into a worker's plugin folder, the new sampler is selected per request through
    // the OpenAI endpoint, the body the `openai` client sends with
    // `extra_body={"sampler": "tmpl-sampler"}`.
    let plugin_dir = work.join("plugins");
    std::fs::create_dir_all(&plugin_dir).unwrap();
    std::fs::copy(&wasm, plugin_dir.join("tmpl_sampler.wasm")).unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(serve_the_new_sampler(&plugin_dir));

    // The kit refuses what it cannot check, with exit code 2.
    let not_wasm = work.join("not.wasm");
    std::fs::write(&not_wasm, b"nope").unwrap();
    let out = worker_orcd(&["plugin", "check", not_wasm.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn the_constraint_template_builds_and_passes_plugin_check() {
    let (work, wasm) = new_and_build("constraint", "tmpl-constraint");
    let report = check_passes(&wasm, &[], "tmpl-constraint", "constraint");
    // The kit compiled its `yes|no` as a regex (the template's own kind) and walked it.
    assert!(report.contains("regex \"yes|no\""), "{report}");
    assert!(
        report.contains("PASS  6 random walks end complete"),
        "{report}"
    );

    // Served: a /v1 completion with its grammar of literals and `constraint_plugin` (the body
    // the `openai` client sends with `extra_body`) answers one of them; a grammar the template
    // does not enforce is a 400 naming `grammar`.
    let plugin_dir = work.join("plugins");
    std::fs::create_dir_all(&plugin_dir).unwrap();
    std::fs::copy(&wasm, plugin_dir.join("tmpl_constraint.wasm")).unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let w = serve(&plugin_dir).await;
            let complete = |grammar: &'static str| {
                let body = serde_json::json!({"model": "any", "prompt": "Is the sky blue?",
                    "max_tokens": 8, "temperature": 0.9, "seed": 3, "grammar": grammar,
                    "constraint_plugin": "tmpl-constraint"});
                let (client, url) = (w.client.clone(), w.url("/v1/completions"));
                async move {
                    let resp = client.post(url).json(&body).send().await.unwrap();
                    let status = resp.status().as_u16();
                    (status, resp.json::<serde_json::Value>().await.unwrap())
                }
            };
            let (status, answer) = complete("root ::= \"yes\" | \"no\"").await;
            assert_eq!(status, 200, "{answer}");
            let text = answer["choices"][0]["text"].as_str().unwrap();
            assert!(text == "yes" || text == "no", "{answer}");
            let (status, refused) = complete("root ::= [a-z]+").await;
            assert_eq!(status, 400, "{refused}");
            assert!(refused.to_string().contains("grammar"), "{refused}");
        });
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn the_tokenizer_template_builds_and_passes_plugin_check() {
    let (work, wasm) = new_and_build("tokenizer", "tmpl-tokenizer");
    // SmolLM2's byte-level (gpt2) vocabulary.
    let vocab = common::smollm2_path();
    let report = check_passes(
        &wasm,
        &["--vocab", vocab.to_str().unwrap()],
        "tmpl-tokenizer",
        "tokenizer",
    );
    assert!(report.contains("PASS  round trip"), "{report}");
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn the_handler_template_builds_and_passes_plugin_check() {
    let (work, wasm) = new_and_build("handler", "tmpl-handler");
    let report = check_passes(&wasm, &[], "tmpl-handler", "request-handler");
    assert!(report.contains("PASS  SSE events"), "{report}");
    let _ = std::fs::remove_dir_all(&work);
}

/// A CPU worker on SmolLM2 with the plugins of `plugin_dir`.
async fn serve(plugin_dir: &Path) -> common::TestWorker {
    let path = common::smollm2_path();
    let model = orcd_model::Model::open(&path).expect("SmolLM2 loads");
    let facts = worker_orcd::model_facts::model_facts(&model, &path);
    let plugins = worker_orcd::plugin_bridge::load(Some(plugin_dir), &model, None)
        .expect("the plugin folder loads");
    let device = orcd_cpu::CpuBackend::new(
        model,
        orcd_cpu::CpuOptions {
            threads: 1,
            kv_tokens_budget: 2048,
            ..Default::default()
        },
    )
    .expect("CPU backend");
    common::start(Box::new(device), plugins, facts, common::test_options(2, 2)).await
}

/// A CPU worker on SmolLM2 with `plugin_dir`: a completion with the new sampler succeeds, its
/// tokens are the same for the same seed, and an unknown sampler is refused with
/// `PLUGIN_NOT_FOUND` listing the new one among those loaded.
async fn serve_the_new_sampler(plugin_dir: &Path) {
    let w = serve(plugin_dir).await;
    let complete = |sampler: &'static str| {
        let body = serde_json::json!({"model": "any", "prompt": "Once upon a time",
            "max_tokens": 6, "temperature": 0.9, "seed": 11, "sampler": sampler});
        let (client, url) = (w.client.clone(), w.url("/v1/completions"));
        async move {
            let resp = client.post(url).json(&body).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, first) = complete("tmpl-sampler").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["usage"]["completion_tokens"], 6, "{first}");
    let (_, again) = complete("tmpl-sampler").await;
    assert_eq!(first["choices"][0]["text"], again["choices"][0]["text"]);
    let (status, refused) = complete("no-such-sampler").await;
    assert_eq!(status, 400, "{refused}");
    let text = refused.to_string();
    assert!(
        text.contains("PLUGIN_NOT_FOUND") && text.contains("tmpl-sampler"),
        "{text}"
    );
}

#[test]
fn the_examples_pass_plugin_check() {
    for example in ["typical-sampler", "mirostat-sampler"] {
        let wasm = orcd_tests::guest::build_guest(&repo(), example);
        let report = ok(
            &worker_orcd(&["plugin", "check", wasm.to_str().unwrap()]),
            example,
        );
        assert!(report.contains(" 0 failed"), "{example}:\n{report}");
        assert!(report.contains("validate accepts the defaults"), "{report}");
    }
}
