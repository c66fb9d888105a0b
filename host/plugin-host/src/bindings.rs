//! Host bindings generated from `wit/` (package `worker:plugin@0.1.0`), one module per world.
//!
//! The `tokenizer` world owns the shared interfaces (`types`, `host`); the other worlds reuse
//! them through `with`, so one host implementation serves every kind of plugin. Imports are
//! `trappable`: a host function that fails (a device error, bad arguments from the guest)
//! traps the calling plugin, and the session turns the trap into a [`crate::PluginError`].

/// The `tokenizer` world: imports `host` and `vocab`, exports `tokenizer-plugin`.
pub mod tokenizer {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "tokenizer",
        imports: { default: trappable },
    });
}

/// The `sampler` world: imports `host` and `logits`, exports `sampler-plugin`.
pub mod sampler {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "sampler",
        imports: { default: trappable },
        with: {
            "worker:plugin/types": super::tokenizer::worker::plugin::types,
            "worker:plugin/host": super::tokenizer::worker::plugin::host,
            "worker:plugin/logits.logits": crate::logits::LogitsHandle,
        },
    });
}

/// The `request-handler` world: imports `host`, exports `handler-plugin`.
pub mod handler {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "request-handler",
        imports: { default: trappable },
        with: {
            "worker:plugin/types": super::tokenizer::worker::plugin::types,
            "worker:plugin/host": super::tokenizer::worker::plugin::host,
        },
    });
}

pub use tokenizer::worker::plugin::types;
