//! orcd-handler (being written).
