//! Tools beside the library, not on a request's path: [`synth`] writes random-weight GGUF
//! models with a real model's shape (`worker-orcd synth`). The GGUF writer it uses stays in
//! `orcd-model` (`orcd_model::gguf::GgufWriter`), where the reader's and the loader's tests build
//! their files with it.

pub mod synth;
