//! `worker-orcd synth`: write a random-weight GGUF with a real model's shape and tokenizer.
//!
//! ```text
//! worker-orcd synth --shape llama3-8b --type q4_0 \
//!     --vocab-from ggml-vocab-llama-bpe.gguf --out llama3-8b-synth.gguf [--seed N]
//! ```
//!
//! With `--harmony-template FILE` (for `gpt-oss-20b`) the borrowed vocabulary gets GPT-OSS's
//! harmony special tokens and FILE as its chat template (see [`orcd_tools::synth::harmony`]),
//! e.g. llama.cpp's `models/templates/openai-gpt-oss-120b.jinja` (`scripts/fetch-models.sh
//! templates` extracts it).
//!
//! The work is [`orcd_tools::synth`]; this file parses the flags and reports what was written.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use orcd_model::gguf::GgufFile;
use orcd_model::quant::GgmlType;
use orcd_tools::synth::{SynthOptions, shape, shape_names, synthesize_with_progress};
use worker_orcd::progress::{Progress, Unit};

#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Model shape: llama3-8b, llama3.2-1b, qwen2.5-0.5b, qwen2.5-7b, smollm2-135m, gemma3-270m,
    /// mistral-7b, qwen3-0.6b, qwen3-0.6b-yarn, qwen3-8b, phi3.5-mini, gpt2, gpt-oss-20b
    /// (its experts always MXFP4).
    #[arg(long)]
    shape: String,
    /// Type of the layer matrices: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k,
    /// mxfp4.
    #[arg(long = "type", value_parser = parse_type)]
    ty: GgmlType,
    /// GGUF file whose `tokenizer.*` keys (and so vocabulary size) the model takes.
    #[arg(long)]
    vocab_from: PathBuf,
    /// Where to write the model.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the random weights; the same seed gives the same file.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Type of `token_embd.weight` and `output.weight` (default: --type).
    #[arg(long, value_parser = parse_type)]
    embed_type: Option<GgmlType>,
    /// Keep only the first N layers.
    #[arg(long)]
    layers: Option<u32>,
    /// Mixture of experts (gpt-oss-20b): keep only the first N experts (at least the number
    /// each token uses), for a small test file of the same layer shape.
    #[arg(long)]
    experts: Option<u32>,
    /// Standard deviation of the output projection (the embedding when tied), default 0.02:
    /// e.g. 0.1 spreads the logits so that comparisons see real top-2 margins.
    #[arg(long)]
    output_std: Option<f32>,
    /// Chat template in GPT-OSS's harmony format: the vocabulary gets harmony's special tokens
    /// (those it lacks, as control tokens after its own; `<|return|>` becomes EOS) and this
    /// file as `tokenizer.chat_template`.
    #[arg(long)]
    harmony_template: Option<PathBuf>,
}

fn parse_type(s: &str) -> Result<GgmlType, String> {
    GgmlType::parse(s).ok_or_else(|| {
        let names: Vec<_> = GgmlType::ALL.iter().map(|t| t.name()).collect();
        format!("unknown type `{s}` (known: {})", names.join(", "))
    })
}

pub fn run(args: SynthArgs) -> anyhow::Result<ExitCode> {
    let shape = shape(&args.shape)
        .with_context(|| format!("unknown shape `{}` (known: {})", args.shape, shape_names()))?;
    let vocab = GgufFile::open(&args.vocab_from)
        .with_context(|| format!("reading the vocabulary from {}", args.vocab_from.display()))?;
    let vocab = match &args.harmony_template {
        None => vocab,
        Some(path) => {
            let template = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            orcd_tools::synth::harmony::with_harmony(&vocab, &template)
                .context("adding harmony's tokens and template to the vocabulary")?
        }
    };
    let opts = SynthOptions {
        shape,
        ty: args.ty,
        embed_ty: args.embed_type,
        layers: args.layers,
        experts: args.experts,
        seed: args.seed,
        output_std: args.output_std,
    };
    let start = Instant::now();
    let mut bar: Option<Progress> = None;
    let label = format!("synth {}", args.out.display());
    let summary = synthesize_with_progress(&opts, &vocab, &args.out, &mut |done, total| {
        bar.get_or_insert_with(|| Progress::new(label.clone(), total, Unit::Bytes))
            .set(done)
    })
    .with_context(|| format!("writing {}", args.out.display()))?;
    if let Some(bar) = bar {
        bar.finish();
    }
    println!(
        "wrote {}: {} ({}), {} tensors, {:.3} B parameters, vocab {}, {:.2} GB in {:.1} s",
        args.out.display(),
        shape.name,
        args.ty.name(),
        summary.n_tensors,
        summary.n_params as f64 / 1e9,
        summary.vocab_size,
        summary.bytes as f64 / 1e9,
        start.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
