//! Is the Rust target the built-in plugins compile for installed, and if not, can rustup install
//! it? Used by `build.rs` before it builds the guests, and by `tests/wasm_target.rs` against a
//! sysroot of its own (so the test never touches the developer's toolchain).
//!
//! Why this exists: rustup installs the `targets` of `rust-toolchain.toml` only when it installs
//! that toolchain, so a machine that already had the pinned toolchain never gets
//! `wasm32-wasip2`, and every guest build then fails with `can't find crate for core`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The target every built-in plugin is compiled for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// The compiler to probe and the tool that can add a target to it.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// The `rustc` that builds the guests.
    pub rustc: PathBuf,
    /// Extra arguments for every `rustc` call (a test passes `--sysroot DIR`).
    pub rustc_args: Vec<OsString>,
    /// `rustup`, when one is available.
    pub rustup: Option<PathBuf>,
    /// The rustup toolchain `rustc` belongs to (`1.95.0-x86_64-unknown-linux-gnu`), when known.
    pub toolchain: Option<String>,
}

/// What [`ensure_target`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetState {
    /// The target was already there.
    Present,
    /// It was missing and `rustup target add` installed it.
    Installed,
}

/// Whether `rustc` can compile a `no_std` crate for `target` (the very thing a guest build
/// needs first: the target's `core`). `scratch` receives the probe's output.
pub fn has_target(tc: &Toolchain, target: &str, scratch: &Path) -> Result<bool, String> {
    let src = scratch.join("wasm_target_probe.rs");
    std::fs::write(&src, "#![no_std]\n").map_err(|e| format!("{}: {e}", src.display()))?;
    let status = Command::new(&tc.rustc)
        .args(&tc.rustc_args)
        .args(["--target", target, "--crate-type", "lib", "--crate-name"])
        .arg("wasm_target_probe")
        .args(["--emit", "metadata", "--out-dir"])
        .arg(scratch)
        .arg(&src)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", tc.rustc.display()))?;
    Ok(status.success())
}

/// The command that fixes a missing target, for messages.
pub fn fix_command(target: &str) -> String {
    format!("rustup target add {target}")
}

/// Make sure `target` is installed: probe, and when it is missing, run
/// `rustup target add TARGET --toolchain TOOLCHAIN` (idempotent, a few seconds) and probe again.
/// `say` receives one line per action taken. Fails, naming the fixing command, when the target
/// is missing and rustup is not there, fails, or does not make the probe pass.
pub fn ensure_target(
    tc: &Toolchain,
    target: &str,
    scratch: &Path,
    say: &mut dyn FnMut(&str),
) -> Result<TargetState, String> {
    if has_target(tc, target, scratch)? {
        return Ok(TargetState::Present);
    }
    let fix = fix_command(target);
    let Some(rustup) = &tc.rustup else {
        return Err(format!(
            "the Rust target {target} is not installed for {} and rustup is not available to \
             install it; fix: `{fix}` (or install the {target} standard library for this \
             compiler another way)",
            tc.rustc.display()
        ));
    };
    let mut cmd = Command::new(rustup);
    cmd.args(["target", "add", target]);
    if let Some(toolchain) = &tc.toolchain {
        cmd.args(["--toolchain", toolchain]);
    }
    say(&format!(
        "the Rust target {target} is missing; running `rustup target add {target}{}`",
        tc.toolchain
            .as_deref()
            .map(|t| format!(" --toolchain {t}"))
            .unwrap_or_default()
    ));
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}; fix: `{fix}`", rustup.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`rustup target add {target}` failed ({}): {}; fix: `{fix}`",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if !has_target(tc, target, scratch)? {
        return Err(format!(
            "`rustup target add {target}` succeeded but {} still cannot compile for {target}; \
             fix: `{fix}` for the toolchain that builds this project",
            tc.rustc.display()
        ));
    }
    say(&format!("installed the Rust target {target}"));
    Ok(TargetState::Installed)
}

/// `name` on `PATH`, else in `$CARGO_HOME/bin` or `~/.cargo/bin` (where rustup puts itself).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// The rustup toolchain of `rustc`: `RUSTUP_TOOLCHAIN` when rustup set it, else the name of
/// the sysroot folder when it sits in a rustup `toolchains/` folder.
pub fn rustup_toolchain(rustc: &Path) -> Option<String> {
    if let Some(t) = std::env::var_os("RUSTUP_TOOLCHAIN") {
        return t.into_string().ok();
    }
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    let parent = sysroot.parent()?;
    if parent.file_name()? != "toolchains" {
        return None;
    }
    sysroot.file_name()?.to_str().map(str::to_string)
}
