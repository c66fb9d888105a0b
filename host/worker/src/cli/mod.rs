//! Command-line parsing and dispatch. One file per subcommand.

mod bench;
mod connection_args;
mod generate;
mod plugin;
mod plugin_cache;
mod plugin_new;
mod plugin_sdk;
mod score;
mod serve;
mod synth;
mod tokenize;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "worker-orcd", version, about = "GPU inference worker")]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Serve the worker's HTTP API (the default when no subcommand is given).
    #[command(flatten)]
    serve: serve::ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate tokens for a prompt and print them.
    Generate(generate::GenerateArgs),
    /// Teacher-forced scoring: the best next-token candidates at every position.
    Score(score::ScoreArgs),
    /// Tokenize text with the model's tokenizer plugin.
    Tokenize(tokenize::TokenizeArgs),
    /// Write a random-weight GGUF with a real model's shape.
    Synth(synth::SynthArgs),
    /// Measure prefill, decode, time to first token, plugin cost, load time and VRAM.
    Bench(bench::BenchArgs),
    /// Plugin tools: `new` (a plugin crate), `check` (the conformance kit), `list` (what a
    /// running worker has loaded).
    Plugin(plugin::PluginArgs),
}

/// What `--version` prints after the program name: the worker's version and the plugins built
/// into this binary with theirs (read from the build, nothing is compiled to answer).
pub fn version_text() -> String {
    let builtins = orcd_plugin_host::builtin_plugins();
    let listed = if builtins.is_empty() {
        "none (built with ORCD_SKIP_PLUGIN_BUILD=1; plugins come from --plugin-dir)".to_string()
    } else {
        builtins
            .iter()
            .map(|p| format!("{} {}", p.crate_name, p.version))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{}\nplugin contract: worker:plugin@{}\nbuilt-in plugins: {listed}",
        env!("CARGO_PKG_VERSION"),
        orcd_plugin_host::CONTRACT_VERSION
    )
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => serve::run(cli.serve),
        Some(Command::Generate(a)) => generate::run(a),
        Some(Command::Score(a)) => score::run(a),
        Some(Command::Tokenize(a)) => tokenize::run(a),
        Some(Command::Synth(a)) => synth::run(a),
        Some(Command::Bench(a)) => bench::run(a),
        Some(Command::Plugin(a)) => plugin::run(a),
    }
}
