//! Real Python clients against the worker (SmolLM2 on the CPU backend, behind an API key): the
//! `openai` SDK on both OpenAI endpoints, streaming and not, with the key, with a wrong key and
//! with model names the worker never heard of; `prometheus_client`'s parser on `/metrics`.
//! The clients are installed with pip into the git-ignored `.cache/pyclients` venv; without
//! access to PyPI the test is skipped with a message.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's python with `openai`, `prometheus_client` and `jsonschema`, or why it cannot
/// be had.
fn python_with_clients() -> Result<PathBuf, String> {
    let venv = root().join(".cache/pyclients");
    let python = venv.join("bin/python");
    let has = |py: &PathBuf| {
        Command::new(py)
            .args(["-c", "import openai, prometheus_client, jsonschema"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.exists() && has(&python) {
        return Ok(python);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .map_err(|e| format!("python3 -m venv: {e}"))?;
    if !made.status.success() {
        return Err(format!(
            "python3 -m venv: {}",
            String::from_utf8_lossy(&made.stderr)
        ));
    }
    // `python -m pip`: a venv's `bin/pip` names the interpreter by absolute path, which is
    // wrong once the folder was copied or moved.
    let pip = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "openai",
            "prometheus_client",
            "jsonschema",
        ])
        .output()
        .map_err(|e| format!("pip: {e}"))?;
    if !pip.status.success() || !has(&python) {
        return Err(format!(
            "pip could not install openai, prometheus_client and jsonschema: {}",
            String::from_utf8_lossy(&pip.stderr)
        ));
    }
    Ok(python)
}

/// A SmolLM2 worker on the CPU backend behind `key` (under `chat_template` when given, else
/// the model's own), and `script` run against it; its stdout.
async fn run_script(
    python: PathBuf,
    script: &str,
    key: &'static str,
    chat_template: Option<&str>,
) -> String {
    let (plugins, mut facts, model) = smollm2_plugins();
    if let Some(t) = chat_template {
        facts.chat_template = Some(t.to_string());
    }
    let device = orcd_cpu::CpuBackend::new(
        model,
        orcd_cpu::CpuOptions {
            threads: 2,
            kv_tokens_budget: 8192,
            ..Default::default()
        },
    )
    .expect("CPU backend");
    let mut options = test_options(4, 8);
    options.api_key = worker_orcd::server::ApiKey::new(key);
    let w = start(Box::new(device), plugins, facts, options).await;
    let script = root().join(script);
    let base = w.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("ORCD_BASE_URL", base)
            .env("ORCD_API_KEY", key)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "python clients failed:\n{stdout}");
    stdout
}

/// The `openai` SDK on issue 16's API additions: a tool call round trip (named and
/// `required`, streamed and not, arguments validated with `jsonschema`), `logprobs` on both
/// endpoints, `n` with `stream_options.include_usage`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_tool_calls_logprobs_and_n() {
    let python = match python_with_clients() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let stdout = run_script(
        python,
        "tests/python/openai_extras.py",
        "python-extras-key",
        None,
    )
    .await;
    assert!(stdout.contains("4 passed, 0 failed"), "{stdout}");
}

/// The `openai` SDK on `tool_choice: "auto"` (SmolLM2 under a Hermes-style template: a call,
/// its round trip, text, two calls in one choice, streamed and not), `required`, and on `n` = 3
/// choices sharing their prompt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_tool_choice_auto_and_shared_n() {
    let python = match python_with_clients() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let stdout = run_script(
        python,
        "tests/python/openai_tools_auto.py",
        "python-auto-key",
        Some(include_str!("fixtures/hermes-tools-chatml.jinja")),
    )
    .await;
    assert!(stdout.contains("5 passed, 0 failed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_and_prometheus_parser_against_the_worker() {
    let python = match python_with_clients() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let stdout = run_script(
        python,
        "tests/python/openai_clients.py",
        "python-clients-key",
        None,
    )
    .await;
    assert!(stdout.contains("9 passed, 0 failed"), "{stdout}");
}
