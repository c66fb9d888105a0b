//! orcd-sampler-standard (being written).
