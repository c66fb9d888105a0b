//! Building Wasm guests (plugins, test guests) for tests, with a nested `cargo build` for
//! `wasm32-wasip2` into the workspace's `target/wasm-plugins` (not the outer, locked target dir).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::golden::repo_root;

/// Build package `package` of the workspace containing `dir` for `wasm32-wasip2` and return
/// the path of its `.wasm` component. Panics with cargo's output when the build fails.
///
/// With `ORCD_PREBUILT_GUESTS` set (a machine without Rust, e.g. the GPU machine, running
/// test binaries built elsewhere), the component is that folder's `{package}.wasm`, which must
/// exist: nothing is built and nothing falls back.
pub fn build_guest(dir: &Path, package: &str) -> PathBuf {
    if let Some(prebuilt) = std::env::var_os("ORCD_PREBUILT_GUESTS") {
        let path = Path::new(&prebuilt).join(format!("{package}.wasm"));
        assert!(
            path.is_file(),
            "ORCD_PREBUILT_GUESTS is set but {} does not exist",
            path.display()
        );
        return path;
    }
    let target = repo_root().join("target/wasm-plugins");
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            package,
        ])
        .arg("--target-dir")
        .arg(&target);
    // The outer cargo's settings must not leak into the nested build.
    for (key, _) in std::env::vars_os() {
        if let Some(k) = key.to_str()
            && ((k.starts_with("CARGO_") && k != "CARGO_HOME")
                || matches!(k, "RUSTFLAGS" | "MAKEFLAGS" | "MFLAGS"))
        {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("run cargo");
    assert!(
        out.status.success(),
        "building {package} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", package.replace('-', "_")))
}
