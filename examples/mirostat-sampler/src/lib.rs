//! mirostat-sampler (being written).
