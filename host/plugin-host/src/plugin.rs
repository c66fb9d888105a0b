//! What a loaded plugin is: its kind, contract version, name and version, and the
//! pre-linked component requests instantiate from.
//!
//! Kind and contract version are read from the component's type: the interface it exports
//! (`worker:plugin/sampler-plugin@0.1.0`) says both. Its imports are checked against an
//! allow-list per kind before anything is linked.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::PluginError;
use crate::bindings::{constraint, handler, sampler, tokenizer, v0_1_0};
use crate::state::PluginState;
use crate::versions::{
    ConstraintBindings, Contract, HandlerBindings, SamplerBindings, TokenizerBindings,
};

/// The newest contract version this host speaks (it also loads every version of
/// [`Contract::SUPPORTED`]).
pub const CONTRACT_VERSION: &str = "0.2.0";
/// The WIT package every plugin interface lives in.
const PACKAGE: &str = "worker:plugin/";
/// WASI 0.2 interface families a plugin may import (std's runtime needs them; the host grants
/// no file, environment or socket capability behind them).
const WASI_ALLOWED: &[&str] = &[
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/",
    "wasi:filesystem/",
];
/// Longest plugin name or version string.
const MAX_NAME_LEN: usize = 64;

/// The kinds of plugin, one per WIT world.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PluginKind {
    /// World `tokenizer`.
    Tokenizer,
    /// World `sampler`.
    Sampler,
    /// World `request-handler`.
    RequestHandler,
    /// World `constraint` (contract 0.2.0).
    Constraint,
}

impl PluginKind {
    /// The interface the kind exports, without package or version.
    fn export_interface(self) -> &'static str {
        match self {
            PluginKind::Tokenizer => "tokenizer-plugin",
            PluginKind::Sampler => "sampler-plugin",
            PluginKind::RequestHandler => "handler-plugin",
            PluginKind::Constraint => "constraint-plugin",
        }
    }

    /// The `worker:plugin` interfaces the kind may import.
    fn allowed_imports(self) -> &'static [&'static str] {
        match self {
            PluginKind::Tokenizer => &["types", "host", "vocab"],
            PluginKind::Sampler => &["types", "host", "logits"],
            PluginKind::RequestHandler => &["types", "host"],
            PluginKind::Constraint => &["types", "host", "vocab"],
        }
    }

    /// Lower-case name used in listings and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Tokenizer => "tokenizer",
            PluginKind::Sampler => "sampler",
            PluginKind::RequestHandler => "request-handler",
            PluginKind::Constraint => "constraint",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a plugin came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginSource {
    /// Built into the worker binary; the string is the guest crate's name.
    Builtin(String),
    /// A `.wasm` file loaded at start or on a rescan.
    File(PathBuf),
}

/// What the host knows about a loaded plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginInfo {
    /// The name requests select it by (from its `info()`).
    pub name: String,
    /// The plugin's own version (from its `info()`).
    pub version: String,
    /// One line of description (from its `info()`).
    pub description: String,
    pub kind: PluginKind,
    /// The contract version of the interface it exports, e.g. `0.1.0`.
    pub contract: String,
    pub source: PluginSource,
}

impl PluginInfo {
    /// `name@version`, the tag on every error of this plugin.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// A component linked against the host of its contract version, ready to instantiate.
pub(crate) enum PluginPre {
    Tokenizer(tokenizer::TokenizerPre<PluginState>),
    Sampler(sampler::SamplerPre<PluginState>),
    Handler(handler::RequestHandlerPre<PluginState>),
    TokenizerV0_1(v0_1_0::tokenizer::TokenizerPre<PluginState>),
    SamplerV0_1(v0_1_0::sampler::SamplerPre<PluginState>),
    HandlerV0_1(v0_1_0::handler::RequestHandlerPre<PluginState>),
    Constraint(constraint::ConstraintPre<PluginState>),
}

impl PluginPre {
    /// A new tokenizer instance, or `None` when this is not a tokenizer.
    pub fn tokenizer(
        &self,
        store: &mut wasmtime::Store<PluginState>,
    ) -> Option<wasmtime::Result<TokenizerBindings>> {
        Some(match self {
            PluginPre::Tokenizer(pre) => pre.instantiate(store).map(TokenizerBindings::V0_2),
            PluginPre::TokenizerV0_1(pre) => pre.instantiate(store).map(TokenizerBindings::V0_1),
            _ => return None,
        })
    }

    /// A new sampler instance, or `None` when this is not a sampler.
    pub fn sampler(
        &self,
        store: &mut wasmtime::Store<PluginState>,
    ) -> Option<wasmtime::Result<SamplerBindings>> {
        Some(match self {
            PluginPre::Sampler(pre) => pre.instantiate(store).map(SamplerBindings::V0_2),
            PluginPre::SamplerV0_1(pre) => pre.instantiate(store).map(SamplerBindings::V0_1),
            _ => return None,
        })
    }

    /// A new constraint instance, or `None` when this is not a constraint plugin.
    pub fn constraint(
        &self,
        store: &mut wasmtime::Store<PluginState>,
    ) -> Option<wasmtime::Result<ConstraintBindings>> {
        match self {
            PluginPre::Constraint(pre) => Some(pre.instantiate(store).map(ConstraintBindings)),
            _ => None,
        }
    }

    /// A new request-handler instance, or `None` when this is not a handler.
    pub fn handler(
        &self,
        store: &mut wasmtime::Store<PluginState>,
    ) -> Option<wasmtime::Result<HandlerBindings>> {
        Some(match self {
            PluginPre::Handler(pre) => pre.instantiate(store).map(HandlerBindings::V0_2),
            PluginPre::HandlerV0_1(pre) => pre.instantiate(store).map(HandlerBindings::V0_1),
            _ => return None,
        })
    }
}

/// A plugin in the directory. Sessions hold an `Arc` to it, so replacing it in the directory
/// leaves requests in flight untouched.
pub(crate) struct LoadedPlugin {
    pub info: PluginInfo,
    /// `name@version`.
    pub label: Arc<str>,
    pub pre: PluginPre,
    /// Set once the plugin is in the directory: its drop (the last session of a plugin taken
    /// out of service ended) is counted there.
    pub released: Option<Arc<crate::directory::Counters>>,
}

impl Drop for LoadedPlugin {
    fn drop(&mut self) {
        if let Some(counters) = &self.released {
            counters
                .released
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(event = "plugin_released", plugin = %self.label, "plugin released");
        }
    }
}

/// Which kind and contract version `component` exports, after checking its imports.
pub(crate) fn inspect(
    engine: &Engine,
    component: &Component,
    hint: &str,
) -> Result<(PluginKind, String, Contract), PluginError> {
    let ty = component.component_type();
    let mut found: Option<(PluginKind, String)> = None;
    for (name, _) in ty.exports(engine) {
        let Some((kind, version)) = parse_export(name) else {
            continue;
        };
        if found.is_some() {
            return Err(PluginError::load(
                hint,
                "the component exports more than one plugin interface",
            ));
        }
        found = Some((kind, version));
    }
    let Some((kind, version)) = found else {
        return Err(PluginError::load(
            hint,
            "the component exports no worker:plugin interface (tokenizer-plugin, \
             sampler-plugin, handler-plugin or constraint-plugin)",
        ));
    };
    let Some(contract) = Contract::parse(&version) else {
        return Err(PluginError::load(
            hint,
            format!(
                "contract version {version} is not supported (this host loads {})",
                Contract::SUPPORTED
            ),
        ));
    };
    for (name, _) in ty.imports(engine) {
        check_import(kind, contract, name).map_err(|reason| PluginError::load(hint, reason))?;
    }
    Ok((kind, version, contract))
}

/// `worker:plugin/sampler-plugin@0.1.0` -> (sampler, "0.1.0").
fn parse_export(name: &str) -> Option<(PluginKind, String)> {
    let rest = name.strip_prefix(PACKAGE)?;
    let (iface, version) = rest.split_once('@')?;
    [
        PluginKind::Tokenizer,
        PluginKind::Sampler,
        PluginKind::RequestHandler,
        PluginKind::Constraint,
    ]
    .into_iter()
    .find(|k| k.export_interface() == iface)
    .map(|k| (k, version.to_string()))
}

/// Refuse imports outside WASI's allowed families and the kind's own host interfaces.
fn check_import(kind: PluginKind, contract: Contract, name: &str) -> Result<(), String> {
    if WASI_ALLOWED.iter().any(|p| name.starts_with(p)) {
        return Ok(());
    }
    if let Some(rest) = name.strip_prefix(PACKAGE) {
        let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
        if Contract::parse(version) != Some(contract) {
            return Err(format!(
                "import `{name}`: not the contract version of the plugin's export"
            ));
        }
        if kind.allowed_imports().contains(&iface) {
            return Ok(());
        }
        return Err(format!("a {kind} plugin may not import `{name}`"));
    }
    Err(format!("import `{name}` is not offered to plugins"))
}

/// Check what a plugin's `info()` returned.
pub(crate) fn check_info(name: &str, version: &str, hint: &str) -> Result<(), PluginError> {
    let ok_name = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok_name {
        return Err(PluginError::load(
            hint,
            format!("info() name {name:?} must be 1-{MAX_NAME_LEN} of [a-z0-9_-]"),
        ));
    }
    let ok_version = !version.is_empty()
        && version.len() <= MAX_NAME_LEN
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b));
    if !ok_version {
        return Err(PluginError::load(
            hint,
            format!("info() version {version:?} must be 1-{MAX_NAME_LEN} of [A-Za-z0-9._+-]"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_name_kind_and_version() {
        assert_eq!(
            parse_export("worker:plugin/sampler-plugin@0.1.0"),
            Some((PluginKind::Sampler, "0.1.0".into()))
        );
        assert_eq!(parse_export("worker:plugin/types@0.1.0"), None);
        assert_eq!(parse_export("other:pkg/sampler-plugin@0.1.0"), None);
    }

    #[test]
    fn imports_are_checked_per_kind() {
        use Contract::{V0_1, V0_2};
        assert!(check_import(PluginKind::Sampler, V0_2, "wasi:cli/stdout@0.2.6").is_ok());
        assert!(check_import(PluginKind::Sampler, V0_1, "worker:plugin/logits@0.1.0").is_ok());
        assert!(check_import(PluginKind::Sampler, V0_2, "worker:plugin/logits@0.2.0").is_ok());
        assert!(check_import(PluginKind::Sampler, V0_2, "worker:plugin/logits@0.1.0").is_err());
        assert!(check_import(PluginKind::Sampler, V0_1, "worker:plugin/vocab@0.1.0").is_err());
        assert!(check_import(PluginKind::Tokenizer, V0_1, "worker:plugin/vocab@0.3.0").is_err());
        assert!(check_import(PluginKind::RequestHandler, V0_2, "wasi:sockets/tcp@0.2.0").is_err());
        assert!(check_import(PluginKind::RequestHandler, V0_2, "evil:x/y").is_err());
    }

    #[test]
    fn info_is_checked() {
        assert!(check_info("standard", "0.1.0", "x").is_ok());
        assert!(check_info("", "0.1.0", "x").is_err());
        assert!(check_info("Bad Name", "0.1.0", "x").is_err());
        assert!(check_info("ok", "0.1.0\n", "x").is_err());
    }
}
