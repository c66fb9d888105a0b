//! The worker's public error codes are the device crate's [`ErrorCode`], the one enum every crate maps
//! its errors into (see `host/device/src/error_code.rs`).

pub use orcd_device::ErrorCode;
