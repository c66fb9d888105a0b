//! A component with a plain core export and no worker:plugin interface.

/// Adds two numbers; nothing the host can call as a plugin.
#[unsafe(no_mangle)]
pub extern "C" fn add(a: u32, b: u32) -> u32 {
    a.wrapping_add(b)
}
