//! Random-weight GGUF models with a real model's shape (`worker-orcd synth`).
//!
//! The file looks like a llama.cpp conversion of the real model: the same metadata keys
//! (`<arch>.block_count`, `.embedding_length`, ...), the same tensor names and shapes
//! (`token_embd.weight`, `blk.N.attn_q.weight`, ...), the tokenizer (every `tokenizer.*` key)
//! copied from a vocabulary GGUF, and weights drawn at random with realistic magnitudes
//! (matrices and embeddings ~ N(0, 0.02²), norms ~ 1 + N(0, 0.02²)) so that a forward pass
//! stays finite. Matrices are quantized with [`orcd_model::quant::quantize_row`]; a row length that
//! is not a whole number of the type's blocks falls back to another type as llama.cpp's
//! quantizer does (q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0, else f16).
//!
//! Generation is deterministic in the seed (each chunk of rows has its own generator, so the
//! thread count does not matter), parallel over rows with rayon, and streamed to the file one
//! group of chunks at a time: an 8B model never sits in memory. Measured on the 16-core host of
//! an H200 machine: Llama-3-8B Q4_0 (Q8_0 embeddings, 5.05 GB) in 11.7 s with 235 MB peak RSS,
//! Llama-3-8B Q8_0 (8.54 GB) in 13.5 s, Qwen2.5-7B Q4_K (4.29 GB) in 14.9 s.

pub mod harmony;
mod layout;
pub mod shapes;

use std::io::Write;
use std::path::Path;

use rayon::prelude::*;

use layout::{Fill, Sizes, TensorPlan, plan_metadata, plan_tensors};
use orcd_common::SplitMix64;
pub use shapes::{SHAPES, Shape, shape, shape_names};

use orcd_device::EngineError;
use orcd_model::gguf::{GgufFile, GgufWriter, TensorInfo};
use orcd_model::quant::{GgmlType, quantize_row};

/// Standard deviation of random matrix, embedding and bias values.
pub const WEIGHT_STD: f32 = 0.02;

/// Rows quantized per generator: enough work per task, small enough to spread over threads.
const ELEMENTS_PER_CHUNK: usize = 1 << 20;

/// Chunks held in memory at once while writing (bounds memory to ~this many MB of f32 work).
const CHUNKS_IN_FLIGHT: usize = 64;

/// What to synthesize.
#[derive(Clone, Debug)]
pub struct SynthOptions {
    pub shape: &'static Shape,
    /// Type of the layer matrices (attention and feed-forward projections).
    pub ty: GgmlType,
    /// Type of `token_embd.weight` and `output.weight` (default: `ty`).
    pub embed_ty: Option<GgmlType>,
    /// Keep only the first N layers (default: all of the shape's).
    pub layers: Option<u32>,
    /// A mixture of experts: keep only the first N experts (default: all of the shape's; at
    /// least the experts each token uses). `expert_count` says N, so the file is a smaller
    /// model of the same layer shape (a two-layer gpt-oss-20b with 8 experts is 0.2 GB instead
    /// of 0.9 GB).
    pub experts: Option<u32>,
    pub seed: u64,
    /// Standard deviation of the output projection (the embedding when tied); default
    /// [`WEIGHT_STD`]. A larger one spreads the logits so that comparisons against another
    /// engine see real top-2 margins.
    pub output_std: Option<f32>,
}

/// What [`synthesize`] wrote.
#[derive(Clone, Debug)]
pub struct SynthSummary {
    pub n_tensors: usize,
    pub n_params: u64,
    pub bytes: u64,
    pub vocab_size: usize,
}

/// `ty` if a row of `row_len` is a whole number of its blocks, else llama.cpp's fallback.
pub fn type_for_row(ty: GgmlType, row_len: u64) -> GgmlType {
    let fits = |t: GgmlType| row_len.is_multiple_of(t.block_size() as u64);
    if fits(ty) {
        return ty;
    }
    let fallback = match ty {
        GgmlType::Q4K => GgmlType::Q5_0,
        GgmlType::Q5K => GgmlType::Q5_1,
        GgmlType::Q6K => GgmlType::Q8_0,
        _ => GgmlType::F16,
    };
    if fits(fallback) {
        fallback
    } else {
        GgmlType::F16
    }
}

/// Lay out the synthetic model (metadata and declared tensors) without writing it.
fn plan(
    opts: &SynthOptions,
    vocab: &GgufFile,
) -> Result<(GgufWriter, Vec<TensorPlan>, usize), EngineError> {
    let n_vocab = vocab.get_str_array("tokenizer.ggml.tokens")?.len();
    if n_vocab == 0 {
        return Err(EngineError::BadMetadata {
            key: "tokenizer.ggml.tokens".into(),
            problem: "the vocabulary is empty".into(),
        });
    }
    let n_layer = match opts.layers {
        None => opts.shape.n_layer,
        Some(0) => {
            return Err(EngineError::InvalidInput(
                "--layers must be at least 1".into(),
            ));
        }
        Some(n) if n > opts.shape.n_layer => {
            return Err(EngineError::InvalidInput(format!(
                "--layers {n}: {} has only {} layers",
                opts.shape.name, opts.shape.n_layer
            )));
        }
        Some(n) => n,
    };
    let n_expert = match (opts.shape.moe, opts.experts) {
        (None, None) => 0,
        (None, Some(_)) => {
            return Err(EngineError::InvalidInput(format!(
                "--experts: {} has no experts",
                opts.shape.name
            )));
        }
        (Some(m), None) => m.n_expert,
        (Some(m), Some(n)) if n < m.n_expert_used || n > m.n_expert => {
            return Err(EngineError::InvalidInput(format!(
                "--experts {n}: {} has {} experts and uses {} per token",
                opts.shape.name, m.n_expert, m.n_expert_used
            )));
        }
        (Some(_), Some(n)) => n,
    };
    let embed_ty = opts.embed_ty.unwrap_or(opts.ty);
    let output_fill = match opts.output_std {
        None => Fill::Normal,
        Some(std) if std.is_finite() && std > 0.0 => Fill::Scaled(std),
        Some(std) => {
            return Err(EngineError::InvalidInput(format!(
                "--output-std {std} must be a positive number"
            )));
        }
    };
    let sizes = Sizes {
        n_layer,
        n_expert,
        n_vocab: n_vocab as u64,
    };
    let tensors = plan_tensors(opts.shape, sizes, opts.ty, embed_ty, output_fill);
    let mut w = GgufWriter::new();
    for (key, value) in plan_metadata(opts, n_layer, n_expert, vocab, n_vocab) {
        w.add_metadata(key, value)?;
    }
    for t in &tensors {
        w.declare_tensor(t.name.clone(), &t.dims, t.ty)?;
    }
    Ok((w, tensors, n_vocab))
}

/// Write the synthetic model described by `opts`, with the tokenizer of `vocab`, to `out`.
pub fn synthesize(
    opts: &SynthOptions,
    vocab: &GgufFile,
    out: &Path,
) -> Result<SynthSummary, EngineError> {
    synthesize_with_progress(opts, vocab, out, &mut |_, _| {})
}

/// [`synthesize`], calling `progress(tensor_bytes_written, tensor_bytes_total)` once before the
/// first tensor and after each one (a large model takes minutes).
pub fn synthesize_with_progress(
    opts: &SynthOptions,
    vocab: &GgufFile,
    out: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SynthSummary, EngineError> {
    let (writer, tensors, vocab_size) = plan(opts, vocab)?;
    let mut total = 0u64;
    for t in &tensors {
        let rows: u64 = t.dims[1..].iter().product();
        total += rows * t.ty.row_bytes(t.dims[0] as usize)? as u64;
    }
    let mut written = 0u64;
    progress(0, total);
    let bytes = writer.write_file(out, |i, info, sink| {
        write_tensor_data(&tensors[i], info, opts.seed, i as u64, sink)?;
        written += info.size;
        progress(written, total);
        Ok(())
    })?;
    Ok(SynthSummary {
        n_tensors: tensors.len(),
        n_params: tensors.iter().map(|t| t.dims.iter().product::<u64>()).sum(),
        bytes,
        vocab_size,
    })
}

/// Generate, quantize and write one tensor, a group of row chunks at a time.
fn write_tensor_data(
    plan: &TensorPlan,
    info: &TensorInfo,
    seed: u64,
    index: u64,
    sink: &mut dyn Write,
) -> Result<(), EngineError> {
    let io = |source| EngineError::Io {
        path: "<synthetic model>".into(),
        source,
    };
    if let Fill::Values(v) = &plan.fill {
        return sink.write_all(&quantize_row(plan.ty, v)?).map_err(io);
    }
    let row_len = info.row_len();
    let n_rows = info.n_rows();
    let rows_per_chunk = (ELEMENTS_PER_CHUNK / row_len).max(1);
    let n_chunks = n_rows.div_ceil(rows_per_chunk);
    for group in (0..n_chunks).collect::<Vec<_>>().chunks(CHUNKS_IN_FLIGHT) {
        let parts: Vec<Vec<u8>> = group
            .par_iter()
            .map(|&c| {
                let rows = rows_per_chunk.min(n_rows - c * rows_per_chunk);
                let mut rng = chunk_rng(seed, index, c as u64);
                let values: Vec<f32> = (0..rows * row_len)
                    .map(|_| match plan.fill {
                        Fill::NearOne => 1.0 + WEIGHT_STD * normal(&mut rng),
                        Fill::Scaled(std) => std * normal(&mut rng),
                        _ => WEIGHT_STD * normal(&mut rng),
                    })
                    .collect();
                let mut bytes = Vec::with_capacity(rows * plan.ty.row_bytes(row_len)?);
                for row in values.chunks_exact(row_len) {
                    bytes.extend_from_slice(&quantize_row(plan.ty, row)?);
                }
                Ok(bytes)
            })
            .collect::<Result<_, EngineError>>()?;
        for p in parts {
            sink.write_all(&p).map_err(io)?;
        }
    }
    Ok(())
}

/// The generator of one (seed, tensor, chunk): SplitMix64 seeded from the seed mixed with
/// both, so that each chunk's stream is fixed whatever thread draws it.
fn chunk_rng(seed: u64, tensor: u64, chunk: u64) -> SplitMix64 {
    let a = SplitMix64(seed).next_u64() ^ tensor.wrapping_mul(0xA24B_AED4_963E_E407);
    SplitMix64(SplitMix64(a).next_u64() ^ chunk.wrapping_mul(0x9FB2_1C65_1E98_DF25))
}

/// Approximately standard normal: the Irwin-Hall sum of four 16-bit uniforms, centred and
/// scaled to unit variance (bounded by ±3.46, which suits weights).
fn normal(rng: &mut SplitMix64) -> f32 {
    let r = rng.next_u64();
    let sum: u32 = (0..4).map(|i| ((r >> (16 * i)) & 0xFFFF) as u32).sum();
    // Each uniform on [0, 65535] has variance 65536² / 12; four of them, 65536² / 3.
    const SCALE: f32 = 1.732_050_8 / 65536.0; // sqrt(3) / 65536
    (sum as f32 - 2.0 * 65535.0) * SCALE
}

#[cfg(test)]
mod tests {
    use super::*;
    use orcd_model::gguf::{MetaArray, MetaValue};

    /// A tiny vocabulary GGUF made with the writer.
    fn tiny_vocab(n: usize) -> GgufFile {
        let mut w = GgufWriter::new();
        w.add_metadata("general.architecture", MetaValue::Str("llama".into()))
            .unwrap();
        w.add_metadata("tokenizer.ggml.model", MetaValue::Str("gpt2".into()))
            .unwrap();
        let tokens = (0..n).map(|i| format!("t{i}")).collect();
        w.add_metadata(
            "tokenizer.ggml.tokens",
            MetaValue::Array(MetaArray::Str(tokens)),
        )
        .unwrap();
        w.add_metadata("tokenizer.ggml.bos_token_id", MetaValue::U32(1))
            .unwrap();
        GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap()
    }

    fn temp_path(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("orcd-synth-{tag}-{}.gguf", std::process::id()))
    }

    fn opts(name: &str, ty: GgmlType, layers: u32, seed: u64) -> SynthOptions {
        SynthOptions {
            shape: shape(name).unwrap(),
            ty,
            embed_ty: Some(GgmlType::Q8_0),
            layers: Some(layers),
            experts: None,
            seed,
            output_std: None,
        }
    }

    #[test]
    fn smollm2_shape_reads_back_with_expected_tensors_and_metadata() {
        let vocab = tiny_vocab(320);
        let path = temp_path("smollm2");
        let summary =
            synthesize(&opts("smollm2-135m", GgmlType::Q4_0, 2, 7), &vocab, &path).unwrap();
        let f = GgufFile::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();

        assert_eq!(summary.vocab_size, 320);
        assert_eq!(f.architecture().unwrap(), "llama");
        assert_eq!(f.get_u32("llama.block_count").unwrap(), 2);
        assert_eq!(f.get_u32("llama.embedding_length").unwrap(), 576);
        assert_eq!(f.get_u32("llama.attention.head_count_kv").unwrap(), 3);
        assert_eq!(f.get_u32("llama.vocab_size").unwrap(), 320);
        assert_eq!(f.get_u32("tokenizer.ggml.bos_token_id").unwrap(), 1);
        assert_eq!(f.get_str_array("tokenizer.ggml.tokens").unwrap().len(), 320);
        assert_eq!(f.tensors().len(), 1 + 2 * 9 + 1);
        assert!(f.tensor("output.weight").is_none(), "tied embeddings");
        let embd = f.tensor("token_embd.weight").unwrap();
        assert_eq!(
            (embd.dims.as_slice(), embd.ty),
            (&[576, 320][..], GgmlType::Q8_0)
        );
        let k = f.tensor("blk.1.attn_k.weight").unwrap();
        assert_eq!((k.dims.as_slice(), k.ty), (&[576, 192][..], GgmlType::Q4_0));
        let down = f.tensor("blk.0.ffn_down.weight").unwrap();
        assert_eq!(down.dims, [1536, 576]);
        assert_eq!(
            f.tensor("blk.0.attn_norm.weight").unwrap().ty,
            GgmlType::F32
        );
        assert_eq!(summary.n_tensors, f.tensors().len());
    }

    #[test]
    fn weights_have_realistic_magnitudes() {
        let vocab = tiny_vocab(64);
        let path = temp_path("magnitudes");
        synthesize(&opts("qwen2.5-0.5b", GgmlType::Q4K, 1, 3), &vocab, &path).unwrap();
        let f = GgufFile::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let stats = |name: &str| {
            let t = f.tensor(name).unwrap();
            let mut v = vec![0.0f32; t.n_elements() as usize];
            orcd_model::quant::dequantize_row(t.ty, f.tensor_data(t), &mut v).unwrap();
            let mean = v.iter().sum::<f32>() / v.len() as f32;
            let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / v.len() as f32;
            (mean, var.sqrt())
        };
        // Rows of 896 are not whole q4_K blocks: q5_0 as in llama.cpp; rows of 4864 are.
        assert_eq!(f.tensor("blk.0.attn_q.weight").unwrap().ty, GgmlType::Q5_0);
        assert_eq!(f.tensor("blk.0.ffn_down.weight").unwrap().ty, GgmlType::Q4K);
        assert_eq!(f.tensor("blk.0.attn_q.bias").unwrap().dims, [896]);
        for name in [
            "blk.0.ffn_gate.weight",
            "blk.0.ffn_down.weight",
            "token_embd.weight",
        ] {
            let (mean, std) = stats(name);
            assert!(
                mean.abs() < 0.002 && (0.015..0.025).contains(&std),
                "{name}: {mean} {std}"
            );
        }
        let (mean, std) = stats("blk.0.attn_q.bias");
        assert!(
            mean.abs() < 0.004 && (0.015..0.025).contains(&std),
            "{mean} {std}"
        );
        let (mean, std) = stats("blk.0.attn_norm.weight");
        assert!((mean - 1.0).abs() < 0.01 && std < 0.03, "{mean} {std}");
    }

    #[test]
    fn same_seed_same_file_other_seed_other_weights() {
        let vocab = tiny_vocab(64);
        let write = |seed, tag| {
            let path = temp_path(tag);
            synthesize(&opts("gemma3-270m", GgmlType::Q8_0, 1, seed), &vocab, &path).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            bytes
        };
        let (a, b, c) = (write(1, "seed-a"), write(1, "seed-b"), write(2, "seed-c"));
        assert_eq!(a, b);
        let fa = GgufFile::from_bytes(a).unwrap();
        let fc = GgufFile::from_bytes(c).unwrap();
        let t = fa.tensor("blk.0.ffn_up.weight").unwrap();
        assert_ne!(
            fa.tensor_data(t),
            fc.tensor_data(fc.tensor(&t.name).unwrap())
        );
    }

    #[test]
    fn llama3_rope_factors_match_the_scaling_rule() {
        let s = shape("llama3.2-1b").unwrap();
        let f = s
            .llama3_rope
            .unwrap()
            .frequency_factors(s.head_dim, s.rope_freq_base);
        assert_eq!(f.len(), 32);
        assert_eq!(f[0], 1.0); // highest frequency: unscaled
        assert_eq!(f[31], 32.0); // lowest: scaled by the full factor
        assert!(f.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn new_family_shapes_load_with_their_layouts() {
        use orcd_model::{FfnKind, Model, NormKind, RopeFactors};
        let vocab = tiny_vocab(64);
        let load = |name: &str| {
            let path = temp_path(name);
            let o = SynthOptions {
                output_std: Some(0.1),
                ..opts(name, GgmlType::Q8_0, 1, 5)
            };
            synthesize(&o, &vocab, &path).unwrap();
            let m = Model::open(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            m
        };
        let q = load("qwen3-0.6b");
        assert!(q.config.qk_norm && q.config.q_dim() == 2048 && q.config.dim == 1024);
        let y = load("qwen3-0.6b-yarn").config;
        assert_eq!((y.rope_freq_scale, y.rope_scaling.ext_factor), (0.25, 1.0));
        assert_eq!(y.rope_scaling.n_ctx_orig, 32768);
        let p = load("phi3.5-mini");
        assert_eq!(p.config.ffn, FfnKind::FusedGateUp);
        assert_eq!(p.config.rope_factors, Some(RopeFactors::Long));
        assert!((p.config.rope_scaling.attn_factor - 1.190_238).abs() < 1e-5);
        assert_eq!(
            p.config.sliding_window, None,
            "262144 >= the context: full attention"
        );
        assert_eq!(
            p.weights.layers[0].attn_qkv.as_ref().unwrap().dims,
            [3072, 9216]
        );
        let g = load("gpt2");
        assert_eq!(g.config.norm, NormKind::Layer);
        assert_eq!(g.weights.position_embd.as_ref().unwrap().dims, [768, 1024]);
        assert_eq!(
            g.weights.layers[0].attn_qkv_bias.as_ref().unwrap().dims,
            [2304]
        );
    }

    #[test]
    fn gpt_oss_shape_loads_with_mxfp4_experts_sinks_and_yarn() {
        use orcd_model::{FfnKind, Model};
        let vocab = tiny_vocab(64);
        let path = temp_path("gpt-oss");
        let o = SynthOptions {
            experts: Some(4),
            ..opts("gpt-oss-20b", GgmlType::Q8_0, 2, 5)
        };
        synthesize(&o, &vocab, &path).unwrap();
        let m = Model::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let c = &m.config;
        assert_eq!(c.ffn, FfnKind::Moe);
        let moe = c.moe.unwrap();
        assert_eq!((moe.n_expert, moe.n_expert_used, c.ffn_dim), (4, 4, 2880));
        assert_eq!((c.q_dim(), c.kv_dim(), c.dim), (4096, 512, 2880));
        assert_eq!((c.window_of(0), c.window_of(1)), (Some(128), None));
        assert_eq!(c.rope_freq_scale, 1.0 / 32.0);
        assert_eq!(c.rope_scaling.n_ctx_orig, 4096);
        assert!(c.attn_sinks && !c.tied_output);
        let l = &m.weights.layers[1];
        let gate = l.ffn_gate.as_ref().unwrap();
        assert_eq!(
            (gate.ty, gate.dims.as_slice()),
            (GgmlType::Mxfp4, &[2880, 2880, 4][..])
        );
        assert_eq!(l.ffn_down.dims, [2880, 2880, 4]);
        assert_eq!(l.ffn_gate_inp.as_ref().unwrap().ty, GgmlType::F32);
        assert_eq!(l.attn_sinks.as_ref().unwrap().dims, [64]);
        assert_eq!(l.attn_q.as_ref().unwrap().ty, GgmlType::Q8_0);
        // fewer experts than a token uses, or experts on a dense shape: errors
        for (shape_name, n) in [("gpt-oss-20b", 3), ("gpt-oss-20b", 33), ("smollm2-135m", 4)] {
            let o = SynthOptions {
                experts: Some(n),
                ..opts(shape_name, GgmlType::Q8_0, 1, 0)
            };
            let e = synthesize(&o, &vocab, &path);
            assert!(
                matches!(e, Err(EngineError::InvalidInput(_))),
                "{shape_name} {n}"
            );
        }
        assert!(!path.exists());
    }

    #[test]
    fn bad_options_are_errors() {
        let vocab = tiny_vocab(8);
        let path = temp_path("bad");
        let e = synthesize(&opts("smollm2-135m", GgmlType::Q4_0, 31, 0), &vocab, &path);
        assert!(matches!(e, Err(EngineError::InvalidInput(_))));
        let e = synthesize(&opts("smollm2-135m", GgmlType::Q4_0, 0, 0), &vocab, &path);
        assert!(matches!(e, Err(EngineError::InvalidInput(_))));
        let no_tokens = GgufFile::from_bytes(GgufWriter::new().to_bytes().unwrap()).unwrap();
        let e = synthesize(
            &opts("smollm2-135m", GgmlType::Q4_0, 1, 0),
            &no_tokens,
            &path,
        );
        assert!(matches!(e, Err(EngineError::BadMetadata { .. })));
        assert!(!path.exists());
    }

    /// A real model from `scripts/fetch-models.sh` (idempotent; prints the path).
    fn real_model(which: &str) -> GgufFile {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fetch-models.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .arg(which)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        GgufFile::open(Path::new(String::from_utf8(out.stdout).unwrap().trim())).unwrap()
    }

    /// Synthesize `shape` with 2 layers and the real model's vocabulary, then check that it has
    /// the real model's architecture keys and values and its tensors' names and shapes.
    fn matches_real_model(which: &str, shape_name: &str, ty: GgmlType) {
        let real = real_model(which);
        let path = temp_path(shape_name);
        let o = SynthOptions {
            embed_ty: None,
            ..opts(shape_name, ty, 2, 0)
        };
        synthesize(&o, &real, &path).unwrap();
        let synth = GgufFile::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();

        let arch = real.architecture().unwrap();
        assert_eq!(synth.architecture().unwrap(), arch);
        for (key, value) in real.metadata() {
            let compare = key.starts_with(&format!("{arch}.")) || key.starts_with("tokenizer.");
            if compare && !key.ends_with(".block_count") {
                assert_eq!(synth.get(key), Some(value), "{key}");
            }
        }
        let real_names: Vec<&str> = real
            .tensors()
            .iter()
            .map(|t| t.name.as_str())
            .filter(|n| {
                !n.starts_with("blk.") || n.starts_with("blk.0.") || n.starts_with("blk.1.")
            })
            .collect();
        assert_eq!(synth.tensors().len(), real_names.len());
        for name in real_names {
            let (r, s) = (real.tensor(name).unwrap(), synth.tensor(name));
            assert_eq!(s.map(|s| &s.dims), Some(&r.dims), "{name}");
        }
    }

    #[test]
    fn smollm2_135m_shape_matches_the_real_file() {
        matches_real_model("smollm2", "smollm2-135m", GgmlType::Q4_1);
    }

    #[test]
    fn gemma3_270m_shape_matches_the_real_file() {
        matches_real_model("gemma3", "gemma3-270m", GgmlType::Q4K);
    }
}
