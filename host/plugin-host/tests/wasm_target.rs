//! The build script's handling of a missing `wasm32-wasip2` target, run against a sysroot of
//! the test's own (an empty folder: no target at all) so the developer's toolchain is never
//! touched: the probe sees the target missing, a `rustup` that installs it is called with the
//! right arguments and the probe then passes; without rustup, or when rustup fails, the error
//! names the fixing command. The "installing" rustup is a shell script that links the real
//! toolchain's `wasm32-wasip2` standard library into the test's sysroot.

#[allow(dead_code)]
#[path = "../build/wasm_target.rs"]
mod wasm_target;

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use wasm_target::{TargetState, Toolchain, WASM_TARGET, ensure_target, has_target};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("wasm-target")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The real `rustc` (the one that built this test) and its sysroot.
fn real_rustc() -> (PathBuf, PathBuf) {
    let rustc = PathBuf::from(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()));
    let out = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .expect("run rustc");
    let sysroot = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    (rustc, sysroot)
}

/// A toolchain whose sysroot is `sysroot` (empty: no target installed).
fn toolchain(sysroot: &Path, rustup: Option<PathBuf>) -> Toolchain {
    let mut arg = OsString::from("--sysroot=");
    arg.push(sysroot);
    Toolchain {
        rustc: real_rustc().0,
        rustc_args: vec![arg],
        rustup,
        toolchain: Some("test-toolchain".into()),
    }
}

/// A `rustup` script that logs its arguments and runs `body`.
fn fake_rustup(dir: &Path, body: &str) -> (PathBuf, PathBuf) {
    let log = dir.join("rustup.log");
    let path = dir.join("rustup");
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\n{body}\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    (path, log)
}

#[test]
fn the_real_toolchain_has_the_target() {
    // The build script made sure of it before this crate was built.
    let dir = scratch("real");
    let (rustc, _) = real_rustc();
    let tc = Toolchain {
        rustc,
        rustc_args: Vec::new(),
        rustup: None,
        toolchain: None,
    };
    assert_eq!(
        ensure_target(&tc, WASM_TARGET, &dir, &mut |_| {}),
        Ok(TargetState::Present)
    );
}

#[test]
fn a_missing_target_is_installed_with_rustup() {
    let dir = scratch("install");
    let sysroot = dir.join("sysroot");
    std::fs::create_dir_all(sysroot.join("lib/rustlib")).unwrap();
    let real = real_rustc().1.join("lib/rustlib").join(WASM_TARGET);
    assert!(real.is_dir(), "{} missing", real.display());
    let (rustup, log) = fake_rustup(
        &dir,
        &format!(
            "ln -s '{}' '{}'",
            real.display(),
            sysroot.join("lib/rustlib").join(WASM_TARGET).display()
        ),
    );
    let tc = toolchain(&sysroot, Some(rustup));
    assert!(!has_target(&tc, WASM_TARGET, &dir).unwrap());
    let mut said = Vec::new();
    let state = ensure_target(&tc, WASM_TARGET, &dir, &mut |l| said.push(l.to_string()));
    assert_eq!(state, Ok(TargetState::Installed));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("target add {WASM_TARGET} --toolchain test-toolchain\n")
    );
    assert!(
        said.iter().any(|l| l.contains("rustup target add")),
        "{said:?}"
    );
    assert!(has_target(&tc, WASM_TARGET, &dir).unwrap());
    // Idempotent: a second call finds it and runs nothing.
    assert_eq!(
        ensure_target(&tc, WASM_TARGET, &dir, &mut |_| {}),
        Ok(TargetState::Present)
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
}

#[test]
fn without_rustup_the_error_names_the_fix() {
    let dir = scratch("no-rustup");
    let tc = toolchain(&dir.join("sysroot"), None);
    let err = ensure_target(&tc, WASM_TARGET, &dir, &mut |_| {}).unwrap_err();
    assert!(err.contains("rustup target add wasm32-wasip2"), "{err}");
    assert!(err.contains("not installed"), "{err}");
}

#[test]
fn a_failing_rustup_fails_loudly() {
    let dir = scratch("rustup-fails");
    let (rustup, _) = fake_rustup(&dir, "echo 'error: no network' >&2; exit 1");
    let tc = toolchain(&dir.join("sysroot"), Some(rustup));
    let err = ensure_target(&tc, WASM_TARGET, &dir, &mut |_| {}).unwrap_err();
    assert!(err.contains("no network"), "{err}");
    assert!(err.contains("rustup target add wasm32-wasip2"), "{err}");

    // A rustup that claims success without installing anything is not believed.
    let (liar, _) = fake_rustup(&dir, "exit 0");
    let tc = toolchain(&dir.join("sysroot"), Some(liar));
    let err = ensure_target(&tc, WASM_TARGET, &dir, &mut |_| {}).unwrap_err();
    assert!(err.contains("still cannot compile"), "{err}");
}
