//! Shared helpers for the cross-crate tests.

pub mod golden;
pub mod guest;
pub mod models;
