//! What the host crates and the Wasm guests share, with no dependencies so that a guest built
//! for wasm32 can use it: the model's vocabulary as plain data ([`Vocab`]: the host reads it from
//! the GGUF file in `orcd-model`, packs it for the WIT `vocab` interface in `orcd-plugin-host`,
//! and the tokenizer and constraint plugins rebuild it from that interface) and the
//! [`SplitMix64`] generator behind every seeded stream (synth weights, the mock device's rows,
//! bench prompts, the conformance kit's walks, the plugin SDK's seeding), and the guests' one
//! reader of the WIT `vocab` import ([`vocab_import`]).

pub mod splitmix;
pub mod vocab;
pub mod vocab_import;

pub use splitmix::SplitMix64;
pub use vocab::{TokenType, Vocab};
