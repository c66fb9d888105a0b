//! Builds the shipped Wasm plugins (plugins/tokenizer, plugins/sampler, plugins/handler) for
//! `wasm32-wasip2` and embeds them: writes `$OUT_DIR/builtin_plugins.rs` with one
//! `include_bytes!` per component, tagged with the guest crate's name and version.
//!
//! No worker without its plugins: when the target is missing and rustup is available, this
//! script installs it (`rustup target add wasm32-wasip2`, idempotent, a few seconds) and says
//! so; when it cannot, or a guest fails to build, the build fails naming the plugin and the
//! command that fixes it. `ORCD_SKIP_PLUGIN_BUILD=1` is the deliberate opt-out for hosts that
//! bring every plugin through `--plugin-dir`.
//!
//! The guests are built by a nested `cargo build` into `target/wasm-plugins` (never the outer
//! target directory, which the outer cargo holds locked), with the outer cargo's environment
//! cleared so its flags, target and jobserver do not leak.

#[path = "build/wasm_target.rs"]
mod wasm_target;

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use wasm_target::{TargetState, Toolchain, WASM_TARGET};

/// (package name, folder under plugins/) of each built-in plugin.
const GUESTS: &[(&str, &str)] = &[
    ("orcd-tokenizer", "tokenizer"),
    ("orcd-sampler-standard", "sampler"),
    ("orcd-handler", "handler"),
    ("orcd-constraint", "constraint"),
];

/// A guest that was built: its crate, version and component file.
struct Built {
    package: &'static str,
    version: String,
    wasm: PathBuf,
}

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={}", root.join("plugins").display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/wasm_target.rs");
    println!("cargo:rerun-if-env-changed=ORCD_SKIP_PLUGIN_BUILD");

    let mut built: Vec<Built> = Vec::new();
    if env::var_os("ORCD_SKIP_PLUGIN_BUILD").is_some_and(|v| v == "1") {
        println!(
            "cargo:warning=ORCD_SKIP_PLUGIN_BUILD=1: this worker has no built-in plugins; it \
             serves only with a tokenizer and a request handler from --plugin-dir"
        );
    } else {
        ensure_wasm_target(&out_dir);
        let target_dir = root.join("target").join("wasm-plugins");
        for &(package, folder) in GUESTS {
            match build_guest(&root, &target_dir, package, folder) {
                // Copied at once: a later guest that depends on this crate (the constraint
                // plugin reuses the tokenizer library) rebuilds it and overwrites the shared
                // `<crate>.wasm` path with a build without this guest's exports.
                Ok(mut b) => {
                    let kept = out_dir.join(format!("{package}.wasm"));
                    if let Err(e) = std::fs::copy(&b.wasm, &kept) {
                        fail(
                            package,
                            &format!("cannot copy {}: {e}", b.wasm.display()),
                            "the error above",
                        );
                    }
                    b.wasm = kept;
                    built.push(b);
                }
                Err(why) => fail(
                    package,
                    &why,
                    &format!(
                        "the error above (the plugin builds alone with `cargo build --release \
                         --target {WASM_TARGET} -p {package}`)"
                    ),
                ),
            }
        }
    }

    let mut code = String::from(
        "/// The built-in plugins: (guest crate, crate version, component bytes).\n\
         pub(crate) const BUILTIN_PLUGINS: &[(&str, &str, &[u8])] = &[\n",
    );
    for b in &built {
        writeln!(
            code,
            "    ({:?}, {:?}, include_bytes!({:?})),",
            b.package,
            b.version,
            b.wasm.display().to_string()
        )
        .expect("writing to a String cannot fail");
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("builtin_plugins.rs"), code)
        .expect("cannot write builtin_plugins.rs");
}

/// Stop the build: a worker without its plugins cannot serve a single request.
fn fail(package: &str, why: &str, fix: &str) -> ! {
    panic!(
        "\n\nbuilt-in plugin {package} cannot be built for {WASM_TARGET}:\n  {why}\n\n\
         Fix: {fix}, then build again.\n\
         A worker without built-in plugins is possible only on purpose: \
         ORCD_SKIP_PLUGIN_BUILD=1 (it then needs every plugin from --plugin-dir).\n\n"
    );
}

/// Install the Wasm target with rustup when it is missing; fail the build when that is not
/// possible.
fn ensure_wasm_target(scratch: &Path) {
    let rustc = PathBuf::from(env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()));
    let tc = Toolchain {
        toolchain: wasm_target::rustup_toolchain(&rustc),
        rustup: wasm_target::find_tool("rustup"),
        rustc,
        rustc_args: Vec::new(),
    };
    let mut say = |line: &str| println!("cargo:warning={line}");
    match wasm_target::ensure_target(&tc, WASM_TARGET, scratch, &mut say) {
        Ok(TargetState::Present | TargetState::Installed) => {}
        Err(why) => {
            let all: Vec<&str> = GUESTS.iter().map(|g| g.0).collect();
            fail(
                &all.join(", "),
                &why,
                &format!("`{}`", wasm_target::fix_command(WASM_TARGET)),
            )
        }
    }
}

/// Build one guest and return its crate version and component path.
fn build_guest(
    root: &Path,
    target_dir: &Path,
    package: &'static str,
    folder: &str,
) -> Result<Built, String> {
    let manifest = root.join("plugins").join(folder).join("Cargo.toml");
    let text =
        std::fs::read_to_string(&manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
    if !text.contains("cdylib") {
        return Err(format!("{} builds no cdylib", manifest.display()));
    }
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
            "--target",
            WASM_TARGET,
            "-p",
            package,
            "--target-dir",
        ])
        .arg(target_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    clear_outer_env(&mut cmd);
    let output = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error"))
            .take(5)
            .collect();
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        let shown = if errors.is_empty() {
            tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
        } else {
            errors.join("\n  ")
        };
        return Err(format!("cargo build failed:\n  {shown}"));
    }
    artifact(&output.stdout, package)
}

/// The component file and version of `package` from cargo's JSON messages.
fn artifact(stdout: &[u8], package: &'static str) -> Result<Built, String> {
    let text = String::from_utf8_lossy(stdout);
    for line in text.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact"
            || msg["target"]["name"] != package.replace('-', "_")
        {
            continue;
        }
        let wasm = msg["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(".wasm"));
        let Some(wasm) = wasm else { continue };
        // `path+file:///.../plugins/tokenizer#orcd-tokenizer@0.1.0` or `...#0.1.0`.
        let id = msg["package_id"].as_str().unwrap_or_default();
        let tail = id.rsplit('#').next().unwrap_or_default();
        let version = tail.rsplit('@').next().unwrap_or_default().to_string();
        if version.is_empty() {
            return Err(format!("no version in cargo's package id `{id}`"));
        }
        return Ok(Built {
            package,
            version,
            wasm: PathBuf::from(wasm),
        });
    }
    Err("cargo reported no .wasm artifact".into())
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
