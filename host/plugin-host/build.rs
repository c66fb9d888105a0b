//! Builds the shipped Wasm plugins (plugins/tokenizer, plugins/sampler, plugins/handler) for
//! `wasm32-wasip2` and embeds them: writes `$OUT_DIR/builtin_plugins.rs` with one
//! `include_bytes!` per component.
//!
//! The guests are built by a nested `cargo build` into `target/wasm-plugins` (never the outer
//! target directory, which the outer cargo holds locked), with the outer cargo's environment
//! cleared so its flags, target and jobserver do not leak. A guest crate that is still a
//! placeholder (no `cdylib`), or that fails to build, is skipped with a `cargo:warning`; the
//! host still builds. `ORCD_SKIP_PLUGIN_BUILD=1` skips all of them.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (package name, folder under plugins/) of each built-in plugin.
const GUESTS: &[(&str, &str)] = &[
    ("orcd-tokenizer", "tokenizer"),
    ("orcd-sampler-standard", "sampler"),
    ("orcd-handler", "handler"),
];

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={}", root.join("plugins").display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ORCD_SKIP_PLUGIN_BUILD");

    let mut built: Vec<(&str, PathBuf)> = Vec::new();
    if env::var_os("ORCD_SKIP_PLUGIN_BUILD").is_none() {
        let target_dir = root.join("target").join("wasm-plugins");
        for &(package, folder) in GUESTS {
            match build_guest(&root, &target_dir, package, folder) {
                Ok(wasm) => built.push((package, wasm)),
                Err(why) => println!("cargo:warning=built-in plugin {package} skipped: {why}"),
            }
        }
    }

    let mut code = String::from(
        "/// The built-in plugins: (guest crate, component bytes).\n\
         pub(crate) const BUILTIN_PLUGINS: &[(&str, &[u8])] = &[\n",
    );
    for (package, wasm) in &built {
        writeln!(
            code,
            "    ({package:?}, include_bytes!({:?})),",
            wasm.display().to_string()
        )
        .expect("writing to a String cannot fail");
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("builtin_plugins.rs"), code)
        .expect("cannot write builtin_plugins.rs");
}

/// Build one guest and return the path of its component.
fn build_guest(
    root: &Path,
    target_dir: &Path,
    package: &str,
    folder: &str,
) -> Result<PathBuf, String> {
    let manifest = root.join("plugins").join(folder).join("Cargo.toml");
    let text =
        std::fs::read_to_string(&manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
    if !text.contains("cdylib") {
        return Err("not a cdylib yet (placeholder)".into());
    }
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            package,
            "--target-dir",
        ])
        .arg(target_dir);
    clear_outer_env(&mut cmd);
    let output = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first_error = stderr
            .lines()
            .find(|l| l.starts_with("error"))
            .unwrap_or("cargo build failed");
        return Err(first_error.to_string());
    }
    let wasm = target_dir
        .join("wasm32-wasip2")
        .join("release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    if !wasm.is_file() {
        return Err(format!("{} was not produced", wasm.display()));
    }
    Ok(wasm)
}

/// Remove what the outer cargo set for this build script: flags, target, profile, jobserver.
fn clear_outer_env(cmd: &mut Command) {
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let leaks = (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || key == "CARGO"
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "MAKEFLAGS"
                    | "MFLAGS"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "PROFILE"
                    | "OPT_LEVEL"
                    | "DEBUG"
                    | "NUM_JOBS"
                    | "RUSTC_LINKER"
                    | "RUSTC_WORKSPACE_WRAPPER"
            );
        if leaks {
            cmd.env_remove(key);
        }
    }
}
