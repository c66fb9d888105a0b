//! `worker-orcd tokenize`: print the token ids of a text as the model's tokenizer *plugin*
//! produces them (the same Wasm component the server uses, not a native shortcut).
//!
//! ```text
//! worker-orcd tokenize --model model.gguf [--parse-special] [--add-special] [--json] [--] TEXT
//! ```
//! A vocabulary-only GGUF (llama.cpp's `ggml-vocab-*.gguf`) is a valid `--model`. TEXT is taken
//! verbatim: it may be empty, start with `-` or hold newlines; `--` ends the options.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use orcd_model::gguf::GgufFile;
use orcd_plugin_host::{ModelFacts, PluginHost, PluginHostConfig};

use super::plugin_cache::PluginCacheArgs;

#[derive(clap::Args, Debug)]
pub struct TokenizeArgs {
    /// GGUF file whose vocabulary to use (a full model or a vocabulary-only file).
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
    /// Turn special-token texts such as `<|im_start|>` into their ids.
    #[arg(long)]
    pub parse_special: bool,
    /// Add BOS (and EOS) where the model's vocabulary asks for them.
    #[arg(long)]
    pub add_special: bool,
    /// Print `{"ids": [...]}` instead of space-separated ids.
    #[arg(long)]
    pub json: bool,
    /// Folder of extra plugins (a custom tokenizer plugin there replaces the built-in one).
    #[arg(long, value_name = "DIR")]
    pub plugin_dir: Option<PathBuf>,
    #[command(flatten)]
    pub cache: PluginCacheArgs,
    /// The text, verbatim.
    #[arg(allow_hyphen_values = true, value_name = "TEXT")]
    pub text: String,
}

pub fn run(args: TokenizeArgs) -> anyhow::Result<ExitCode> {
    let path = &args.model;
    let file = GgufFile::open(path).context("cannot open the model")?;
    let vocab = orcd_model::vocab::from_gguf(&file)
        .with_context(|| format!("{}: no usable vocabulary", path.display()))?;
    let architecture = file
        .get_str_opt("general.architecture")
        .ok()
        .flatten()
        .unwrap_or_default()
        .to_string();
    let name = if vocab.name.is_empty() {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        vocab.name.clone()
    };
    let facts = ModelFacts {
        architecture,
        name,
        vocab_size: vocab.len() as u32,
        context_length: 0,
        bos: vocab.bos,
        eos: vocab.eos,
        eot: vocab.eot,
    };
    let cfg = PluginHostConfig {
        plugin_dir: args.plugin_dir.clone(),
        cache_dir: args.cache.resolve()?,
        ..PluginHostConfig::default()
    };
    let host = PluginHost::new(cfg, facts, &vocab).context("cannot start the plugin runtime")?;
    let mut tokenizer = host
        .tokenizer()
        .context("no tokenizer plugin for this vocabulary")?;
    let ids = tokenizer
        .encode(&args.text, args.parse_special, args.add_special)
        .context("the tokenizer plugin failed")?;

    if args.json {
        println!("{}", serde_json::json!({ "ids": ids }));
    } else {
        let line: Vec<String> = ids.iter().map(u32::to_string).collect();
        println!("{}", line.join(" "));
    }
    Ok(ExitCode::SUCCESS)
}
