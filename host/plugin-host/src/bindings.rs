//! Host bindings generated from `wit/` (package `worker:plugin@0.2.0`), one module per world,
//! and from the frozen `wit/since_v0.1.0/` (package `worker:plugin@0.1.0`) in [`v0_1_0`].
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

/// The `constraint` world (0.2.0 only): imports `host` and `vocab`, exports
/// `constraint-plugin`.
pub mod constraint {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "constraint",
        imports: { default: trappable },
        with: {
            "worker:plugin/types": super::tokenizer::worker::plugin::types,
            "worker:plugin/host": super::tokenizer::worker::plugin::host,
            "worker:plugin/vocab": super::tokenizer::worker::plugin::vocab,
        },
    });
}

/// The frozen contract `worker:plugin@0.1.0` (`wit/since_v0.1.0/`), for plugins built against
/// it. Its `types` records are the same as 0.2.0's, so they are mapped onto the 0.2.0 Rust
/// types; the other interfaces get their own traits, implemented in [`crate::legacy`] by
/// forwarding to the 0.2.0 host.
pub mod v0_1_0 {
    /// The 0.1.0 `tokenizer` world.
    pub mod tokenizer {
        wasmtime::component::bindgen!({
            path: "../../wit/since_v0.1.0",
            world: "tokenizer",
            imports: { default: trappable },
            with: {
                "worker:plugin/types": crate::bindings::types,
            },
        });
    }

    /// The 0.1.0 `sampler` world.
    pub mod sampler {
        wasmtime::component::bindgen!({
            path: "../../wit/since_v0.1.0",
            world: "sampler",
            imports: { default: trappable },
            with: {
                "worker:plugin/types": crate::bindings::types,
                "worker:plugin/host": super::tokenizer::worker::plugin::host,
                "worker:plugin/logits.logits": crate::logits::LogitsHandle,
            },
        });
    }

    /// The 0.1.0 `request-handler` world.
    pub mod handler {
        wasmtime::component::bindgen!({
            path: "../../wit/since_v0.1.0",
            world: "request-handler",
            imports: { default: trappable },
            with: {
                "worker:plugin/types": crate::bindings::types,
                "worker:plugin/host": super::tokenizer::worker::plugin::host,
            },
        });
    }
}

pub use tokenizer::worker::plugin::types;
