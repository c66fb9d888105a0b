//! orcd-plugin-sdk (being written).
