//! The guest SDK (`plugins/sdk`) and the plugin contract (`wit/`), carried in the worker binary
//! so that `plugin new` gives a new plugin everything it needs from this repository: an author
//! with only the binary and `cargo` never reaches for a checkout or a registry that does not
//! have the SDK.
//!
//! A new plugin's folder gets them as:
//!
//! ```text
//! NAME/wit/                        the contract (wit/*.wit and its README)
//! NAME/vendor/orcd-plugin-sdk/     the SDK crate, its manifest made standalone
//! ```
//!
//! The SDK's bindings read `../../wit` from its own folder, which is `wit/` in the repository
//! and `NAME/wit/` in the new plugin, so the sources are written unchanged. The tests below check
//! that the embedded lists hold every file of both folders.

use anyhow::Context;

/// `(path under its folder, text)` of each embedded file, read from the repository at build
/// time (`$root` relative to the repository root).
macro_rules! embed {
    ($root:literal: $($path:literal),* $(,)?) => {
        &[$((
            $path,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../", $root, "/", $path)),
        )),*]
    };
}

/// The SDK crate, `plugins/sdk`.
pub const SDK: &[(&str, &str)] = embed!("plugins/sdk":
    "Cargo.toml",
    "src/candidates.rs",
    "src/error.rs",
    "src/export.rs",
    "src/lib.rs",
    "src/logits.rs",
    "src/macros.rs",
    "src/rng.rs",
    "src/sampler.rs",
);

/// The current contract, `wit/` (the frozen `since_v0.1.0/` stays behind: new plugins are
/// written against the current version).
pub const WIT: &[(&str, &str)] = embed!("wit":
    "README.md",
    "constraint.wit",
    "handler.wit",
    "host.wit",
    "logits.wit",
    "sampler.wit",
    "tokenizer.wit",
    "types.wit",
    "vocab.wit",
    "worlds.wit",
);

/// Where the SDK goes in a new plugin's folder (its bindings find the contract at `../../wit`).
pub const SDK_DIR: &str = "vendor/orcd-plugin-sdk";

/// The workspace manifest, for the `[workspace.package]` values the SDK inherits.
const WORKSPACE_MANIFEST: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"));

/// The files to write for the SDK, under [`SDK_DIR`]: the sources as they are, the manifest
/// made standalone.
pub fn sdk_files() -> anyhow::Result<Vec<(&'static str, String)>> {
    SDK.iter()
        .map(|&(path, text)| {
            let text = if path == "Cargo.toml" {
                standalone_manifest(text, WORKSPACE_MANIFEST)
                    .context("the embedded SDK manifest")?
            } else {
                text.to_string()
            };
            Ok((path, text))
        })
        .collect()
}

/// `manifest` without workspace inheritance: each `KEY.workspace = true` of `[package]` takes
/// the value of `[workspace.package]` in `workspace`, and `[lints] workspace = true` goes (the
/// lints are the repository's own). Anything else inherited is an error, never left to fail in
/// the author's build.
pub fn standalone_manifest(manifest: &str, workspace: &str) -> anyhow::Result<String> {
    let inherited = section_values(workspace, "workspace.package");
    let mut out = String::from(
        "# The worker-orcd plugin SDK (plugins/sdk of the worker's repository), written by\n\
         # `worker-orcd plugin new` with the worker's version of it: nothing inherited, so it\n\
         # builds beside the plugin in any folder.\n",
    );
    let mut section = String::new();
    for line in manifest.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = name.to_string();
            if section == "lints" {
                continue;
            }
        } else if section == "lints" {
            anyhow::ensure!(
                t.is_empty() || t.replace(' ', "") == "workspace=true",
                "[lints] holds more than `workspace = true`: {t}"
            );
            continue;
        } else if let Some(key) = t
            .strip_suffix("= true")
            .map(str::trim_end)
            .and_then(|k| k.strip_suffix(".workspace"))
        {
            anyhow::ensure!(
                section == "package",
                "[{section}] inherits `{key}` from the workspace"
            );
            let value = inherited
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .with_context(|| format!("[workspace.package] has no `{key}`"))?;
            out.push_str(&format!("{key} = {value}\n"));
            continue;
        }
        anyhow::ensure!(
            !t.contains("workspace"),
            "[{section}] inherits from the workspace: {t}"
        );
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// The `key = value` lines of `[section]` (values as written, quotes included).
fn section_values(manifest: &str, section: &str) -> Vec<(String, String)> {
    let header = format!("[{section}]");
    manifest
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// Every file under `dir` (recursively unless `flat`), as sorted paths relative to it.
    fn tree(dir: &Path, flat: bool) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    if !flat {
                        stack.push(p);
                    }
                } else {
                    out.push(p.strip_prefix(dir).unwrap().to_str().unwrap().to_string());
                }
            }
        }
        out.sort();
        out
    }

    fn check_embedded(files: &[(&str, &str)], dir: &Path, flat: bool) {
        let embedded: Vec<String> = files.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(
            embedded,
            tree(dir, flat),
            "the embedded list of {} is not the folder's files: update cli/plugin_sdk.rs",
            dir.display()
        );
        for (path, text) in files {
            let on_disk = std::fs::read_to_string(dir.join(path)).unwrap();
            assert_eq!(*text, on_disk, "{path} differs from {}", dir.display());
        }
    }

    #[test]
    fn the_embedded_sdk_is_the_tree() {
        check_embedded(SDK, &repo().join("plugins/sdk"), false);
    }

    #[test]
    fn the_embedded_contract_is_the_tree() {
        check_embedded(WIT, &repo().join("wit"), true);
        // The SDK's bindings find the contract two folders up, as SDK_DIR puts it.
        let lib = SDK.iter().find(|(p, _)| *p == "src/lib.rs").unwrap().1;
        assert!(lib.contains("path: \"../../wit\""));
        assert_eq!(SDK_DIR.split('/').count(), 2);
    }

    #[test]
    fn the_sdk_manifest_becomes_standalone() {
        let files = sdk_files().unwrap();
        let manifest = &files.iter().find(|(p, _)| *p == "Cargo.toml").unwrap().1;
        assert!(!manifest.contains("workspace"), "{manifest}");
        assert!(
            manifest.contains("name = \"orcd-plugin-sdk\""),
            "{manifest}"
        );
        let version = format!("version = \"{}\"", env!("CARGO_PKG_VERSION"));
        assert!(manifest.contains(&version), "{manifest}");
        assert!(manifest.contains("edition = \"2024\""), "{manifest}");
        assert!(manifest.contains("wit-bindgen"), "{manifest}");
    }

    #[test]
    fn inheritance_it_cannot_resolve_is_an_error() {
        let ws = "[workspace.package]\nversion = \"1.0.0\"\n";
        let ok = standalone_manifest("[package]\nversion.workspace = true\n", ws).unwrap();
        assert!(ok.ends_with("[package]\nversion = \"1.0.0\"\n"), "{ok}");
        let missing = "[package]\nedition.workspace = true\n";
        assert!(standalone_manifest(missing, ws).is_err());
        let dep = "[dependencies]\nserde.workspace = true\n";
        assert!(standalone_manifest(dep, ws).is_err());
        let dep_table = "[dependencies]\nserde = { workspace = true }\n";
        assert!(standalone_manifest(dep_table, ws).is_err());
    }
}
