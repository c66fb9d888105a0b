//! The guest SDK (`plugins/sdk`) and the plugin contract (`wit/`), carried in the worker binary
//! so that `plugin new` gives a new plugin everything it needs from this repository: an author
//! with only the binary and `cargo` never reaches for a checkout or a registry that does not
//! have the SDK.
//!
//! A new plugin's folder gets them as:
//!
//! ```text
//! NAME/wit/                        the contract (wit/*.wit and its README)
//! NAME/vendor/orcd-plugin-sdk/     the SDK crate, its manifest made standalone (samplers)
//! NAME/vendor/orcd-handler/        the worker's request-handler library (handlers): the
//!                                  `/execute` format the kit checks, without its exports
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

/// The request-handler library, `plugins/handler`, all but its Wasm exports
/// (`src/component.rs`, which a new handler replaces with its own).
pub const HANDLER: &[(&str, &str)] = embed!("plugins/handler":
    "Cargo.toml",
    "src/constraint.rs",
    "src/events.rs",
    "src/execute.rs",
    "src/execute_tests.rs",
    "src/lib.rs",
    "src/stop.rs",
);

/// The one file of `plugins/handler` that is not carried.
#[cfg(test)]
const HANDLER_LEFT_OUT: &str = "src/component.rs";

/// Where the handler library goes in a new handler's folder.
pub const HANDLER_DIR: &str = "vendor/orcd-handler";

/// The lines of `plugins/handler/src/lib.rs` that declare its exports; the carried copy is a
/// plain library without them.
const HANDLER_EXPORTS: &str = "#[cfg(target_arch = \"wasm32\")]\nmod component;\n";

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

/// The files to write for the handler library, under [`HANDLER_DIR`]: a plain library (its
/// `lib.rs` without the exports, a manifest with only `[package]` and `[dependencies]`).
pub fn handler_files() -> anyhow::Result<Vec<(&'static str, String)>> {
    HANDLER
        .iter()
        .map(|&(path, text)| {
            let text = match path {
                "Cargo.toml" => library_manifest(text, WORKSPACE_MANIFEST)
                    .context("the embedded handler manifest")?,
                "src/lib.rs" => {
                    anyhow::ensure!(
                        text.contains(HANDLER_EXPORTS),
                        "plugins/handler/src/lib.rs no longer declares `mod component` as \
                         cli/plugin_sdk.rs expects"
                    );
                    text.replace(HANDLER_EXPORTS, "")
                }
                _ => text.to_string(),
            };
            Ok((path, text))
        })
        .collect()
}

/// `manifest` as a plain library another crate depends on by path: `[package]` made
/// standalone as in [`standalone_manifest`], `[dependencies]` with each `NAME.workspace = true`
/// taking its `[workspace.dependencies]` value; `[lib]` (its crate types), the Wasm-only
/// dependencies (the bindings of the exports left out) and `[lints]` go. Any other section, or
/// a dependency it cannot resolve (a path inside the repository), is an error.
pub fn library_manifest(manifest: &str, workspace: &str) -> anyhow::Result<String> {
    let deps = section_values(workspace, "workspace.dependencies");
    let mut kept = String::new();
    let mut section = String::new();
    for line in manifest.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = name.to_string();
        }
        let dropped = section == "lib"
            || section == "lints"
            || section == "target.'cfg(target_arch = \"wasm32\")'.dependencies";
        anyhow::ensure!(
            dropped || matches!(section.as_str(), "" | "package" | "dependencies"),
            "[{section}]: a carried library has only [package] and [dependencies]"
        );
        if dropped {
            continue;
        }
        if section == "dependencies"
            && let Some(name) = t
                .strip_suffix("= true")
                .map(str::trim_end)
                .and_then(|k| k.strip_suffix(".workspace"))
        {
            let value = deps
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
                .with_context(|| format!("[workspace.dependencies] has no `{name}`"))?;
            anyhow::ensure!(
                !value.contains("path"),
                "`{name}` is a path inside the repository: it cannot be carried"
            );
            kept.push_str(&format!("{name} = {value}\n"));
            continue;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    // `[package]`'s inheritance is resolved the same way as the SDK's.
    standalone_manifest(&kept, workspace).map(|m| {
        m.replace(
            "# The worker-orcd plugin SDK (plugins/sdk of the worker's repository)",
            "# The worker-orcd request-handler library (plugins/handler of the worker's repository)",
        )
    })
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
    fn the_embedded_handler_is_the_tree_but_its_exports() {
        let dir = repo().join("plugins/handler");
        let mut carried: Vec<String> = HANDLER.iter().map(|(p, _)| p.to_string()).collect();
        carried.push(HANDLER_LEFT_OUT.to_string());
        carried.sort();
        assert_eq!(
            carried,
            tree(&dir, false),
            "update HANDLER in cli/plugin_sdk.rs"
        );
        for (path, text) in HANDLER {
            assert_eq!(*text, std::fs::read_to_string(dir.join(path)).unwrap());
        }
        let files = handler_files().unwrap();
        let file = |p: &str| &files.iter().find(|(q, _)| *q == p).unwrap().1;
        assert!(
            !file("src/lib.rs").contains("component"),
            "{}",
            file("src/lib.rs")
        );
        let manifest = file("Cargo.toml");
        assert!(!manifest.contains("workspace"), "{manifest}");
        assert!(
            !manifest.contains("cdylib") && !manifest.contains("wit-bindgen"),
            "{manifest}"
        );
        assert!(manifest.contains("name = \"orcd-handler\""), "{manifest}");
        assert!(
            manifest.contains("serde_json = { version = \"1\", features = [\"preserve_order\"] }"),
            "{manifest}"
        );
    }

    #[test]
    fn a_library_manifest_refuses_what_it_cannot_carry() {
        let ws = "[workspace.package]\nversion = \"1.0.0\"\n\n[workspace.dependencies]\n\
                  serde = \"1\"\norcd-model = { path = \"host/model\" }\n";
        let ok = library_manifest(
            "[package]\nversion.workspace = true\n[lib]\ncrate-type = [\"cdylib\"]\n\
             [dependencies]\nserde.workspace = true\n[lints]\nworkspace = true\n",
            ws,
        )
        .unwrap();
        assert!(
            ok.contains("version = \"1.0.0\"\n[dependencies]\nserde = \"1\"\n"),
            "{ok}"
        );
        assert!(!ok.contains("cdylib") && !ok.contains("lints"), "{ok}");
        let path_dep = "[dependencies]\norcd-model.workspace = true\n";
        assert!(library_manifest(path_dep, ws).is_err());
        let missing = "[dependencies]\nrayon.workspace = true\n";
        assert!(library_manifest(missing, ws).is_err());
        let dev = "[dev-dependencies]\nserde = \"1\"\n";
        assert!(library_manifest(dev, ws).is_err());
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
