//! The plugin runtime's error enum. Every variant has a stable public code (see
//! [`PluginError::code`]) and, where a plugin is at fault, names the plugin and its version.

use thiserror::Error;

use orcd_device::{EngineError, ErrorCode};

/// A plugin's identity in error messages: `name@version` (or the file it came from when it
/// could not be read far enough to know).
pub type PluginLabel = String;

/// Everything that can go wrong while loading or calling a plugin.
#[derive(Debug, Error)]
pub enum PluginError {
    /// No plugin of that kind and name is loaded.
    #[error("no {kind} plugin named `{name}` is loaded")]
    NotFound { kind: &'static str, name: String },
    /// The file is not a plugin this host can load (bad component, unknown contract version,
    /// imports outside the allow-list, a bad `info()`).
    #[error("cannot load plugin {plugin}: {reason}")]
    LoadFailed { plugin: PluginLabel, reason: String },
    /// The plugin trapped (panic, unreachable, out-of-bounds access, stack overflow).
    #[error("plugin {plugin} trapped: {reason}")]
    Trap { plugin: PluginLabel, reason: String },
    /// A call ran past its time bound (epoch deadline or fuel).
    #[error("plugin {plugin} ran past its time limit: {reason}")]
    Timeout { plugin: PluginLabel, reason: String },
    /// The plugin tried to grow its memory or tables past the instance limit.
    #[error("plugin {plugin} exceeded its memory limit of {limit_bytes} bytes")]
    Memory {
        plugin: PluginLabel,
        limit_bytes: usize,
    },
    /// The plugin returned something the host cannot accept (a token id outside the
    /// vocabulary, a malformed event, a job that breaks the limits) or passed bad arguments to
    /// a host function.
    #[error("plugin {plugin} returned invalid output: {reason}")]
    InvalidOutput { plugin: PluginLabel, reason: String },
    /// The plugin reported an expected failure through its `result<_, error>`.
    #[error("plugin {plugin} failed with {code}: {message}")]
    Reported {
        plugin: PluginLabel,
        code: String,
        message: String,
    },
    /// The request handler refused a request body; `field` names the offending field.
    #[error("invalid request: {field}: {message}")]
    InvalidRequest { field: String, message: String },
    /// The device failed while the plugin asked for logits; carries the device's own code.
    #[error("device error during plugin {plugin}: {source}")]
    Device {
        plugin: PluginLabel,
        #[source]
        source: EngineError,
    },
    /// The runtime itself failed (engine setup, cache directory, plugin directory).
    #[error("plugin runtime: {0}")]
    Runtime(String),
}

impl PluginError {
    /// The stable public code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            PluginError::NotFound { .. } => ErrorCode::PluginNotFound,
            PluginError::LoadFailed { .. } => ErrorCode::PluginLoadFailed,
            PluginError::Trap { .. } => ErrorCode::PluginTrap,
            PluginError::Timeout { .. } => ErrorCode::PluginTimeout,
            PluginError::Memory { .. } => ErrorCode::PluginMemory,
            PluginError::InvalidOutput { .. } => ErrorCode::PluginInvalidOutput,
            PluginError::Reported { .. } => ErrorCode::PluginError,
            PluginError::InvalidRequest { .. } => ErrorCode::InvalidRequest,
            PluginError::Device { source, .. } => source.code(),
            PluginError::Runtime(_) => ErrorCode::Internal,
        }
    }

    /// Whether retrying the request later may succeed (only device capacity errors).
    pub fn retriable(&self) -> bool {
        self.code().retriable()
    }

    pub(crate) fn load(plugin: impl Into<String>, reason: impl Into<String>) -> Self {
        PluginError::LoadFailed {
            plugin: plugin.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_output(plugin: impl Into<String>, reason: impl Into<String>) -> Self {
        PluginError::InvalidOutput {
            plugin: plugin.into(),
            reason: reason.into(),
        }
    }
}
