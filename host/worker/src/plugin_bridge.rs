//! The shipped [`Plugins`]: the Wasm components of `orcd-plugin-host` behind the worker's plugin
//! traits.

use std::path::Path;

use orcd_engine::model::Model;

use crate::error_code::ErrorCode;
use crate::plugins::{PluginFailure, Plugins};

/// Load the tokenizer, sampler and request-handler plugins for `model`.
pub fn load(_plugin_dir: Option<&Path>, _model: &Model) -> Result<Plugins, PluginFailure> {
    Err(PluginFailure {
        code: ErrorCode::PluginLoadFailed,
        plugin: "plugin-host".into(),
        message: "the plugin runtime is not linked yet".into(),
    })
}
