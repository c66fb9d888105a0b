//! The `host` and `types` interfaces every plugin imports: model facts and logging.

use crate::bindings::tokenizer::worker::plugin::host::{Host, LogLevel};
use crate::bindings::tokenizer::worker::plugin::types;
use crate::state::{MAX_LOG_BYTES, MAX_LOG_LINES, PluginState};

impl Host for PluginState {
    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        self.log_lines = self.log_lines.saturating_add(1);
        if self.log_lines > MAX_LOG_LINES {
            return Ok(());
        }
        let mut end = message.len().min(MAX_LOG_BYTES);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let msg = &message[..end];
        let plugin = &*self.label;
        match level {
            LogLevel::Trace => tracing::trace!(event = "plugin_log", plugin, "{msg}"),
            LogLevel::Debug => tracing::debug!(event = "plugin_log", plugin, "{msg}"),
            LogLevel::Info => tracing::info!(event = "plugin_log", plugin, "{msg}"),
            LogLevel::Warn => tracing::warn!(event = "plugin_log", plugin, "{msg}"),
            LogLevel::Error => tracing::error!(event = "plugin_log", plugin, "{msg}"),
        }
        if self.log_lines == MAX_LOG_LINES {
            tracing::warn!(
                event = "plugin_log",
                plugin,
                "log limit reached; dropping further lines"
            );
        }
        Ok(())
    }

    fn model(&mut self) -> wasmtime::Result<types::ModelFacts> {
        Ok((*self.facts).clone())
    }
}

impl types::Host for PluginState {}
