//! The worker's public error codes are the engine's [`ErrorCode`], the one enum every crate maps
//! its errors into (see `host/engine/src/error_code.rs`).

pub use orcd_engine::ErrorCode;
