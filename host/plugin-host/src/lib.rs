//! The Wasm plugin runtime (see the plugin-platform issue).
