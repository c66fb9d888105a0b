//! orcd-tokenizer (being written).
