//! orcd-conformance (being written).
