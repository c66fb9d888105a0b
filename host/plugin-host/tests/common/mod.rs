//! Shared helpers of the plugin-host integration tests: building the test guests, a small
//! vocabulary, a host with test settings, scratch folders.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use orcd_common::Vocab;
use orcd_plugin_host::{ModelFacts, PluginHost, PluginHostConfig, SamplingParams};

/// Vocabulary size of the test model.
pub const VOCAB: u32 = 1000;

/// Folder of the test guests' workspace.
fn guests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests")
}

/// Build the test guests once per test binary and return the folder holding their `.wasm`.
pub fn guest_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/wasm-test-guests");
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.current_dir(guests_dir())
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--target-dir",
            ])
            .arg(&target);
        for (key, _) in std::env::vars_os() {
            if let Some(k) = key.to_str()
                && ((k.starts_with("CARGO_") && k != "CARGO_HOME")
                    || matches!(k, "RUSTFLAGS" | "MAKEFLAGS" | "MFLAGS"))
            {
                cmd.env_remove(k);
            }
        }
        let out = cmd.output().expect("cannot run cargo for the test guests");
        assert!(
            out.status.success(),
            "building the test guests failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("wasm32-wasip2/release")
    })
}

/// Path of one test guest's component, e.g. `guest("hostile_sampler")`.
pub fn guest(name: &str) -> PathBuf {
    guest_dir().join(format!("{name}.wasm"))
}

/// Facts of the test model.
pub fn facts(n: u32) -> ModelFacts {
    ModelFacts {
        architecture: "llama".into(),
        name: "test".into(),
        vocab_size: n,
        context_length: 4096,
        bos: Some(0),
        eos: Some(1),
        eot: None,
    }
}

/// Test settings: no built-ins, short time bound, 64 MiB memory.
pub fn config() -> PluginHostConfig {
    PluginHostConfig {
        load_builtins: false,
        call_timeout: Duration::from_millis(300),
        memory_limit_bytes: 64 << 20,
        ..PluginHostConfig::default()
    }
}

/// A host over the test vocabulary with the hostile sampler loaded.
pub fn hostile_host(cfg: PluginHostConfig) -> PluginHost {
    let host = PluginHost::new(cfg, facts(VOCAB), &Vocab::synthetic(VOCAB)).expect("host starts");
    host.load_file(&guest("hostile_sampler"))
        .expect("hostile sampler loads");
    host
}

/// Sampling parameters with the hostile sampler's `mode`.
pub fn params(mode: u32) -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repetition_penalty: 1.0,
        presence_penalty: 0.0,
        frequency_penalty: 0.0,
        penalty_window: 0,
        extra: vec![("mode".into(), f64::from(mode))],
    }
}

/// A fresh empty folder under the system temp folder.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "orcd-plugin-host-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}
