//! `worker-orcd plugin new`: write a standalone plugin crate from the templates in
//! `plugin_template/` (embedded in the binary, so an author needs nothing of this repository).
//!
//! The crate has its own `[workspace]` (it builds in any folder, even inside another
//! workspace), no inherited fields, the contract in `wit/`, a README and native unit tests.
//! By kind:
//! - sampler: depends on `orcd-plugin-sdk`: by default the copy the worker carries
//!   (`plugin_sdk`), written to `vendor/orcd-plugin-sdk`; or by path (`--sdk-path`, e.g. a
//!   checkout's `plugins/sdk`) or by version (`--sdk-version`, from a registry);
//! - constraint, tokenizer: `wit-bindgen` over `wit/` directly (the SDK is a sampler SDK);
//!   the logic in `src/lib.rs`, the exports in `src/component.rs`;
//! - handler: the worker's own request-handler library, carried in `vendor/orcd-handler` (the
//!   `/execute` format is a spec of 60-odd checks the kit runs; a handler rewritten from
//!   nothing would not pass them), with the author's policy in `src/lib.rs` in front of it.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::plugin_sdk;

/// The contract version the templates are written against.
const CONTRACT: &str = orcd_plugin_host::CONTRACT_VERSION;

/// The kinds of plugin a template exists for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NewKind {
    /// A sampler: picks each next token (the SDK's `Sampler` trait).
    Sampler,
    /// A constraint (the `constraint` world): the output is one of a list of answers
    /// (`"regex": "yes|no|maybe"`).
    Constraint,
    /// A tokenizer (the `tokenizer` world): byte-level (one token per byte), which round-trips
    /// any text but is not the model's own tokenization.
    Tokenizer,
    /// A request handler (the `request-handler` world): the worker's own `/execute` handling
    /// (carried in `vendor/orcd-handler`) with a policy of the author's in front.
    Handler,
}

impl NewKind {
    fn name(self) -> &'static str {
        match self {
            NewKind::Sampler => "sampler",
            NewKind::Constraint => "constraint",
            NewKind::Tokenizer => "tokenizer",
            NewKind::Handler => "handler",
        }
    }

    fn default_description(self) -> &'static str {
        match self {
            NewKind::Sampler => "a custom sampler",
            NewKind::Constraint => "the output is one of the answers of a regex like yes|no|maybe",
            NewKind::Tokenizer => "a byte-level tokenizer: one token per byte",
            NewKind::Handler => "the worker's /execute handling with a prompt policy in front",
        }
    }

    /// `(path in the crate, template)` of the kind's own files.
    fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            NewKind::Sampler => &[
                (
                    "src/lib.rs",
                    include_str!("plugin_template/sampler.lib.rs.tmpl"),
                ),
                (
                    "README.md",
                    include_str!("plugin_template/sampler.README.md.tmpl"),
                ),
            ],
            NewKind::Constraint => &[
                (
                    "src/lib.rs",
                    include_str!("plugin_template/constraint.lib.rs.tmpl"),
                ),
                (
                    "src/component.rs",
                    include_str!("plugin_template/constraint.component.rs.tmpl"),
                ),
                (
                    "README.md",
                    include_str!("plugin_template/constraint.README.md.tmpl"),
                ),
            ],
            NewKind::Tokenizer => &[
                (
                    "src/lib.rs",
                    include_str!("plugin_template/tokenizer.lib.rs.tmpl"),
                ),
                (
                    "src/component.rs",
                    include_str!("plugin_template/tokenizer.component.rs.tmpl"),
                ),
                (
                    "README.md",
                    include_str!("plugin_template/tokenizer.README.md.tmpl"),
                ),
            ],
            NewKind::Handler => &[
                (
                    "src/lib.rs",
                    include_str!("plugin_template/handler.lib.rs.tmpl"),
                ),
                (
                    "src/component.rs",
                    include_str!("plugin_template/handler.component.rs.tmpl"),
                ),
                (
                    "README.md",
                    include_str!("plugin_template/handler.README.md.tmpl"),
                ),
            ],
        }
    }
}

/// The bindings generator, for the kinds that use the contract directly (the sampler's come
/// with the SDK). The version the worker's own plugins build with.
const WIT_BINDGEN: &str = "[target.'cfg(target_arch = \"wasm32\")'.dependencies]\n\
     wit-bindgen = { version = \"0.61\", default-features = false, features = [\"macros\", \"realloc\", \"std\"] }";

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
    /// Samplers: depend on the SDK at this path (a checkout's `plugins/sdk`) instead of the
    /// copy the worker carries (written to `NAME/vendor/orcd-plugin-sdk` by default).
    #[arg(long, value_name = "DIR", conflicts_with = "sdk_version")]
    sdk_path: Option<PathBuf>,
    /// Samplers: depend on this version of `orcd-plugin-sdk` from a registry instead of the
    /// copy the worker carries.
    #[arg(long, value_name = "VERSION")]
    sdk_version: Option<String>,
    /// One line describing the plugin (shown by `worker-orcd plugin list`); each kind has a
    /// default.
    #[arg(long)]
    description: Option<String>,
}

/// Write the crate; returns its folder.
pub fn new_crate(a: &NewArgs) -> anyhow::Result<PathBuf> {
    check_name(&a.name)?;
    if a.kind != NewKind::Sampler && (a.sdk_path.is_some() || a.sdk_version.is_some()) {
        anyhow::bail!(
            "--sdk-path and --sdk-version are for samplers: a {} plugin uses the contract in \
             wit/ directly",
            a.kind.name()
        );
    }
    let description = a
        .description
        .as_deref()
        .unwrap_or(a.kind.default_description());
    if description.contains(['"', '\\', '\n']) {
        anyhow::bail!("--description: one line without quotes or backslashes");
    }
    let root = a.dir.join(&a.name);
    if root.exists() {
        anyhow::bail!("{} already exists", root.display());
    }
    let deps = match a.kind {
        NewKind::Sampler => format!("[dependencies]\n{}", sdk_dependency(a)?),
        NewKind::Constraint | NewKind::Tokenizer => WIT_BINDGEN.to_string(),
        NewKind::Handler => format!(
            "[dependencies]\n\
             # The request-handler library of worker-orcd {}, as the worker carries it.\n\
             orcd-handler = {{ path = \"{}\" }}\n\n{WIT_BINDGEN}",
            env!("CARGO_PKG_VERSION"),
            plugin_sdk::HANDLER_DIR
        ),
    };
    let lib = a.name.replace('-', "_");
    let fill = |t: &str| {
        t.replace("{{name}}", &a.name)
            .replace("{{lib}}", &lib)
            .replace("{{description}}", description)
            .replace("{{deps}}", &deps)
            .replace("{{contract}}", CONTRACT)
    };
    let mut files: Vec<(String, String)> = vec![
        (
            "Cargo.toml".to_string(),
            fill(include_str!("plugin_template/Cargo.toml.tmpl")),
        ),
        (
            ".gitignore".to_string(),
            include_str!("plugin_template/gitignore.tmpl").to_string(),
        ),
    ];
    for (path, template) in a.kind.files() {
        files.push((path.to_string(), fill(template)));
    }
    // The contract, for the bindings and for the author to read.
    for (path, text) in plugin_sdk::WIT {
        files.push((format!("wit/{path}"), text.to_string()));
    }
    match a.kind {
        NewKind::Sampler if a.sdk_path.is_none() && a.sdk_version.is_none() => {
            for (path, text) in plugin_sdk::sdk_files()? {
                files.push((format!("{}/{path}", plugin_sdk::SDK_DIR), text));
            }
        }
        NewKind::Handler => {
            for (path, text) in plugin_sdk::handler_files()? {
                files.push((format!("{}/{path}", plugin_sdk::HANDLER_DIR), text));
            }
        }
        _ => {}
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
            sdk_version: (kind == NewKind::Sampler).then(|| "0.2.0".into()),
            description: None,
        }
    }

    fn temp(what: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("orcd-plugin-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn writes_a_standalone_crate() {
        let dir = temp("new");
        let a = NewArgs {
            description: Some("test sampler".into()),
            ..args("my-sampler", NewKind::Sampler, &dir)
        };
        let root = new_crate(&a).unwrap();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"my-sampler\""));
        assert!(manifest.contains("description = \"test sampler\""));
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
        assert!(new_crate(&a).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_kind_gets_its_own_crate() {
        let dir = temp("kinds");
        for (kind, world) in [
            (NewKind::Constraint, "world: \"constraint\""),
            (NewKind::Tokenizer, "world: \"tokenizer\""),
            (NewKind::Handler, "world: \"request-handler\""),
        ] {
            let name = format!("my-{}", kind.name());
            let root = new_crate(&args(&name, kind, &dir)).unwrap();
            let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
            let manifest = read("Cargo.toml");
            assert!(manifest.contains("[workspace]") && !manifest.contains(".workspace"));
            assert!(
                manifest.contains("wit-bindgen = { version = \"0.61\""),
                "{manifest}"
            );
            assert!(!manifest.contains("orcd-plugin-sdk"), "{manifest}");
            let (lib, component, readme) = (
                read("src/lib.rs"),
                read("src/component.rs"),
                read("README.md"),
            );
            assert!(component.contains(world), "{kind:?}");
            assert!(component.contains("path: \"wit\""), "{kind:?}");
            assert!(lib.contains("#[test]"), "{kind:?}: a native unit test");
            assert!(
                readme.contains(&format!("release/my_{}.wasm", kind.name())),
                "{kind:?}"
            );
            assert!(
                lib.contains(&format!("\"{name}\"")),
                "{kind:?}: the plugin's name"
            );
            for text in [&manifest, &lib, &component, &readme] {
                assert!(!text.contains("{{"), "{kind:?}: a placeholder left");
            }
            assert!(root.join("wit/worlds.wit").is_file());
            assert_eq!(
                root.join("vendor/orcd-handler").exists(),
                kind == NewKind::Handler
            );
            assert!(!root.join("vendor/orcd-plugin-sdk").exists());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn by_default_the_crate_carries_the_sdk_and_the_contract() {
        let dir = temp("sdk");
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
    fn bad_names_and_misplaced_options_are_errors() {
        let dir = temp("bad");
        assert!(new_crate(&args("My Sampler", NewKind::Sampler, &dir)).is_err());
        assert!(new_crate(&args("1st", NewKind::Sampler, &dir)).is_err());
        let a = NewArgs {
            sdk_version: Some("0.2.0".into()),
            ..args("c", NewKind::Constraint, &dir)
        };
        let e = new_crate(&a).unwrap_err();
        assert!(e.to_string().contains("for samplers"), "{e}");
        let a = NewArgs {
            description: Some("say \"hi\"".into()),
            ..args("c", NewKind::Constraint, &dir)
        };
        assert!(new_crate(&a).is_err());
        assert!(!dir.exists(), "nothing written for a refused crate");
    }
}
