//! The kit's error enum: why a run could not happen at all (as opposed to a failed check).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum KitError {
    #[error(transparent)]
    Plugin(#[from] orcd_plugin_host::PluginError),
    #[error(transparent)]
    Engine(#[from] orcd_device::EngineError),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file holds a plugin of another kind than the one being checked.
    #[error("{plugin} is a {found} plugin, not a {wanted} plugin")]
    WrongKind {
        plugin: String,
        found: String,
        wanted: &'static str,
    },
    /// A corpus or suite file is malformed.
    #[error("bad data file {path}: {problem}")]
    BadData { path: String, problem: String },
}
