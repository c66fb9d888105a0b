//! `worker-orcd plugin new`: write a standalone plugin crate from the templates in
//! `plugin_template/` (embedded in the binary, so an author needs nothing of this repository).
//!
//! The crate has its own `[workspace]` (it builds in any folder, even inside another
//! workspace), no inherited fields, the contract in `wit/`, and depends on `orcd-plugin-sdk`:
//! by default the copy the worker carries (`plugin_sdk`), written to `vendor/orcd-plugin-sdk`;
//! or by path (`--sdk-path`, e.g. a checkout's `plugins/sdk`) or by version (`--sdk-version`,
//! from a registry).

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::plugin_sdk;

/// The contract version the templates are written against.
const CONTRACT: &str = orcd_plugin_host::CONTRACT_VERSION;

/// The kinds a template exists for (and the one that is planned).
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NewKind {
    /// A sampler: picks each next token (the SDK's `Sampler` trait).
    Sampler,
    /// A constraint (the `constraint` world of contract 0.2.0): no template yet; asking for
    /// one is an error that points at `examples/choice-constraint` and `plugins/constraint`.
    Constraint,
    /// A tokenizer: text to token ids and back (the `tokenizer` world).
    Tokenizer,
    /// A request handler: the `/execute` body, stop sequences, SSE events.
    Handler,
}

#[derive(clap::Args, Debug)]
pub struct NewArgs {
    /// The plugin's name: what requests select it by, and the crate's name (lower case,
    /// digits, `-` or `_`, starting with a letter).
    name: String,
    /// The kind of plugin.
    #[arg(long, value_enum)]
    kind: NewKind,
    /// Folder to create the crate in (it becomes DIR/NAME).
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Depend on the SDK at this path (a checkout's `plugins/sdk`) instead of the copy the
    /// worker carries (written to `NAME/vendor/orcd-plugin-sdk` by default).
    #[arg(long, value_name = "DIR", conflicts_with = "sdk_version")]
    sdk_path: Option<PathBuf>,
    /// Depend on this version of `orcd-plugin-sdk` from a registry instead of the copy the
    /// worker carries.
    #[arg(long, value_name = "VERSION")]
    sdk_version: Option<String>,
    /// One line describing the plugin (shown by `worker-orcd plugin list`).
    #[arg(long, default_value = "a custom sampler")]
    description: String,
}

/// Write the crate; returns its folder.
pub fn new_crate(a: &NewArgs) -> anyhow::Result<PathBuf> {
    check_name(&a.name)?;
    match a.kind {
        NewKind::Sampler => {}
        NewKind::Constraint | NewKind::Tokenizer | NewKind::Handler => anyhow::bail!(
            "no template for {:?} plugins yet: start from the worker's own \
             (examples/choice-constraint, plugins/constraint, plugins/tokenizer, plugins/handler \
             in the repository) and the WIT contract {CONTRACT}",
            a.kind
        ),
    }
    if a.description.contains(['"', '\\', '\n']) {
        anyhow::bail!("--description: one line without quotes or backslashes");
    }
    let root = a.dir.join(&a.name);
    if root.exists() {
        anyhow::bail!("{} already exists", root.display());
    }
    let deps = sdk_dependency(a)?;
    let lib = a.name.replace('-', "_");
    let fill = |t: &str| {
        t.replace("{{name}}", &a.name)
            .replace("{{lib}}", &lib)
            .replace("{{description}}", &a.description)
            .replace("{{deps}}", &deps)
            .replace("{{contract}}", CONTRACT)
    };
    let mut files: Vec<(String, String)> = vec![
        (
            "Cargo.toml",
            fill(include_str!("plugin_template/Cargo.toml.tmpl")),
        ),
        (
            "src/lib.rs",
            fill(include_str!("plugin_template/sampler.lib.rs.tmpl")),
        ),
        (
            "README.md",
            fill(include_str!("plugin_template/sampler.README.md.tmpl")),
        ),
        (
            ".gitignore",
            include_str!("plugin_template/gitignore.tmpl").to_string(),
        ),
    ]
    .into_iter()
    .map(|(p, t)| (p.to_string(), t))
    .collect();
    // The contract, for the SDK's bindings and for the author to read.
    for (path, text) in plugin_sdk::WIT {
        files.push((format!("wit/{path}"), text.to_string()));
    }
    if a.sdk_path.is_none() && a.sdk_version.is_none() {
        for (path, text) in plugin_sdk::sdk_files()? {
            files.push((format!("{}/{path}", plugin_sdk::SDK_DIR), text));
        }
    }
    for (rel, text) in &files {
        write(&root.join(rel), text)?;
    }
    Ok(root)
}

/// The `[dependencies]` line for the SDK.
fn sdk_dependency(a: &NewArgs) -> anyhow::Result<String> {
    Ok(match (&a.sdk_path, &a.sdk_version) {
        (Some(path), _) => {
            let path = std::fs::canonicalize(path)
                .with_context(|| format!("--sdk-path {}", path.display()))?;
            anyhow::ensure!(
                path.join("Cargo.toml").is_file(),
                "--sdk-path {}: no Cargo.toml there (expected the SDK crate, plugins/sdk)",
                path.display()
            );
            let shown = path.display().to_string();
            anyhow::ensure!(
                !shown.contains(['"', '\\']),
                "--sdk-path: the path holds a quote or backslash"
            );
            format!("orcd-plugin-sdk = {{ path = \"{shown}\" }}")
        }
        (None, Some(v)) => format!("orcd-plugin-sdk = \"{v}\""),
        (None, None) => format!(
            "# The SDK of worker-orcd {}, as the worker carries it.\n\
             orcd-plugin-sdk = {{ path = \"{}\" }}",
            env!("CARGO_PKG_VERSION"),
            plugin_sdk::SDK_DIR
        ),
    })
}

/// A plugin name the host accepts that is also a crate name.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    anyhow::ensure!(
        ok,
        "plugin name {name:?}: 1 to 64 of [a-z0-9_-], starting with a letter"
    );
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str, kind: NewKind, dir: &Path) -> NewArgs {
        NewArgs {
            name: name.into(),
            kind,
            dir: dir.to_path_buf(),
            sdk_path: None,
            sdk_version: Some("0.2.0".into()),
            description: "test sampler".into(),
        }
    }

    #[test]
    fn writes_a_standalone_crate() {
        let dir = std::env::temp_dir().join(format!("orcd-plugin-new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = new_crate(&args("my-sampler", NewKind::Sampler, &dir)).unwrap();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"my-sampler\""));
        assert!(manifest.contains("orcd-plugin-sdk = \"0.2.0\""));
        assert!(manifest.contains("[workspace]"), "standalone");
        assert!(!manifest.contains(".workspace"), "nothing inherited");
        let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
        assert!(lib.contains("const NAME: &'static str = \"my-sampler\";"));
        assert!(lib.contains("#[test]"));
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        assert!(readme.contains("release/my_sampler.wasm"));
        assert!(!readme.contains("{{") && !lib.contains("{{") && !manifest.contains("{{"));
        // Never over an existing folder.
        assert!(new_crate(&args("my-sampler", NewKind::Sampler, &dir)).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn by_default_the_crate_carries_the_sdk_and_the_contract() {
        let dir = std::env::temp_dir().join(format!("orcd-plugin-sdk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = NewArgs {
            sdk_version: None,
            ..args("carried", NewKind::Sampler, &dir)
        };
        let root = new_crate(&a).unwrap();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("orcd-plugin-sdk = { path = \"vendor/orcd-plugin-sdk\" }"),
            "{manifest}"
        );
        for (path, text) in plugin_sdk::WIT {
            assert_eq!(
                std::fs::read_to_string(root.join("wit").join(path)).unwrap(),
                *text
            );
        }
        for (path, text) in plugin_sdk::sdk_files().unwrap() {
            let written = std::fs::read_to_string(root.join(plugin_sdk::SDK_DIR).join(path));
            assert_eq!(written.unwrap(), text, "{path}");
        }
        // With a version or a path, the SDK is not written (the contract still is).
        let root = new_crate(&args("by-version", NewKind::Sampler, &dir)).unwrap();
        assert!(!root.join("vendor").exists());
        assert!(root.join("wit/worlds.wit").is_file());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_names_and_planned_kinds_are_errors() {
        let dir = std::env::temp_dir();
        assert!(new_crate(&args("My Sampler", NewKind::Sampler, &dir)).is_err());
        assert!(new_crate(&args("1st", NewKind::Sampler, &dir)).is_err());
        let e = new_crate(&args("c", NewKind::Constraint, &dir)).unwrap_err();
        assert!(e.to_string().contains("plugins/constraint"), "{e}");
    }
}
