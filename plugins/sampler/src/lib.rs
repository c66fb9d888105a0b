//! The standard sampler plugin (`"sampler": "standard"`, the default).
//!
//! Per token, in the order of the worker spec (1420-1421) and llama.cpp:
//! 1. penalties (repetition, frequency, presence) over the penalty window, applied by the host
//!    to the row in place (the repetition penalty is multiplicative, so it commutes with the
//!    temperature);
//! 2. temperature 0 (or `top_k` 1): the host's argmax, nothing copied;
//! 3. otherwise the best candidates come from the host (`top_k` of them, or a window of
//!    [`standard::DEFAULT_WINDOW`] when `top_k` is 0, widened while min-p keeps them all),
//!    then temperature, top-p, min-p, and a draw from the seeded RNG.
//!
//! NaN logits are never chosen, -inf ones get no mass, and a row with nothing else fails with
//! `NO_VALID_LOGITS` rather than trapping.

pub mod standard;

pub use standard::Standard;

orcd_plugin_sdk::export_sampler!(Standard);
