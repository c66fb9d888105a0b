//! The guest SDK for worker-orcd plugins: everything a sampler author needs, so a custom
//! sampler is a few dozen lines.
//!
//! - [`Sampler`]: implement `new(params)` and `sample(logits, history)`.
//! - [`Logits`]: host-side operations on the logits row (argmax, top-k candidates, penalties;
//!   the full row only when asked).
//! - [`Rng`]: the seeded generator (no OS randomness in Wasm: same seed, same tokens).
//! - [`candidates`]: softmax weights, top-p / min-p cut-offs and the draw, shared with the
//!   standard sampler.
//! - `export_sampler!(MyType)`: wires `MyType` to the `sampler` world's exports (Wasm builds).
//!
//! A complete sampler (build it with `cargo build --release --target wasm32-wasip2`):
//!
//! ```
//! use orcd_plugin_sdk::candidates::{draw, weights};
//! use orcd_plugin_sdk::{Error, Logits, Rng, Sampler, SamplerParams};
//!
//! pub struct Hot {
//!     temperature: f32,
//!     rng: Rng,
//! }
//!
//! impl Sampler for Hot {
//!     const NAME: &'static str = "hot";
//!     const DESCRIPTION: &'static str = "top-64 at the request's temperature";
//!
//!     fn new(params: &SamplerParams) -> Result<Self, Error> {
//!         params.validate()?;
//!         let temperature = params.temperature.max(0.1);
//!         Ok(Hot { temperature, rng: Rng::new(params.seed) })
//!     }
//!
//!     fn sample(&mut self, logits: &dyn Logits, _history: &[u32]) -> Result<u32, Error> {
//!         let cands = logits.top_k(64)?;
//!         let w = weights(&cands, self.temperature);
//!         let i = draw(&w, &mut self.rng).ok_or(Error::NoValidLogits)?;
//!         Ok(cands[i].id)
//!     }
//! }
//!
//! orcd_plugin_sdk::export_sampler!(Hot);
//!
//! // Natively the same type runs over a row held in memory.
//! let mut s = Hot::new(&SamplerParams::default())?;
//! let row = orcd_plugin_sdk::RowLogits::new(vec![0.0, 5.0, f32::NAN, 1.0]);
//! assert_ne!(s.sample(&row, &[])?, 2);
//! # Ok::<(), Error>(())
//! ```

// The generated bindings name this crate by its external path, so that the export macro also
// works when expanded in an author's crate.
extern crate self as orcd_plugin_sdk;

pub mod candidates;
mod error;
mod logits;
mod macros;
mod rng;
mod sampler;

pub use error::Error;
pub use logits::{Candidate, Logits, RowLogits, best_first};
pub use rng::Rng;
pub use sampler::{Sampler, SamplerParams};

/// Bindings for the `sampler` world of `wit/` (Wasm builds only).
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "sampler",
        pub_export_macro: true,
        default_bindings_module: "orcd_plugin_sdk::bindings",
        runtime_path: "orcd_plugin_sdk::__wit_bindgen::rt",
    });
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod export;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;
