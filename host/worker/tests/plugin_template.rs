//! The plugin author's path, end to end with the `worker-orcd` binary, so the template cannot
//! rot: `plugin new` (no `--sdk-path`: the SDK the worker carries) writes a crate in a folder
//! outside the repository, its native unit tests pass, it builds for `wasm32-wasip2` with a
//! plain `cargo build`, `plugin check` passes it, and a worker serves it through
//! `/v1/completions`. The examples pass the kit the same way; `plugin check` of a file
//! that is not a plugin exits 2.

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

#[test]
fn plugin_new_then_cargo_build_then_plugin_check_passes() {
    // Outside the repository: nothing of it is reachable by a relative path.
    let work = std::env::temp_dir().join(format!("orcd-plugin-template-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    assert!(!work.canonicalize().unwrap().starts_with(repo()));
    let out = worker_orcd(&[
        "plugin",
        "new",
        "tmpl-sampler",
        "--kind",
        "sampler",
        "--dir",
        work.to_str().unwrap(),
    ]);
    ok(&out, "plugin new");
    let krate = work.join("tmpl-sampler");
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("path = \"vendor/orcd-plugin-sdk\""),
        "{manifest}"
    );
    // The repository's lock file pins the same crates.io versions (and lets the build run
    // without reaching a registry when its cache holds them); the SDK itself comes from the
    // crate's own folder.
    std::fs::copy(repo().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let target = repo().join("target/plugin-template-build");
    ok(
        &cargo(&krate, &["test", "--release", "--offline"], &target),
        "cargo test",
    );
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
    let wasm = target.join("wasm32-wasip2/release/tmpl_sampler.wasm");
    let report = ok(
        &worker_orcd(&["plugin", "check", wasm.to_str().unwrap()]),
        "plugin check",
    );
    assert!(
        report.contains("plugin: tmpl-sampler@0.1.0 (sampler)"),
        "{report}"
    );
    assert!(report.contains(" 0 failed"), "{report}");

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
    // A kind without a template is a clear error pointing at the built-in one.
    let out = worker_orcd(&[
        "plugin",
        "new",
        "c1",
        "--kind",
        "constraint",
        "--dir",
        work.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("plugins/constraint"));
    let _ = std::fs::remove_dir_all(&work);
}

/// A CPU worker on SmolLM2 with `plugin_dir`: a completion with the new sampler succeeds, its
/// tokens are the same for the same seed, and an unknown sampler is refused with
/// `PLUGIN_NOT_FOUND` listing the new one among those loaded.
async fn serve_the_new_sampler(plugin_dir: &Path) {
    let path = common::smollm2_path();
    let model = orcd_engine::model::Model::open(&path).expect("SmolLM2 loads");
    let facts = worker_orcd::model_facts::model_facts(&model, &path);
    let plugins = worker_orcd::plugin_bridge::load(Some(plugin_dir), &model, None)
        .expect("the plugin folder loads");
    let device = orcd_engine::cpu::CpuBackend::new(
        model,
        orcd_engine::cpu::CpuOptions {
            threads: 1,
            kv_tokens_budget: 2048,
            ..Default::default()
        },
    )
    .expect("CPU backend");
    let w = common::start(Box::new(device), plugins, facts, common::test_options(2, 2)).await;
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
