//! Command-line parsing and dispatch. One file per subcommand.

mod bench;
mod connection_args;
mod generate;
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
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => serve::run(cli.serve),
        Some(Command::Generate(a)) => generate::run(a),
        Some(Command::Score(a)) => score::run(a),
        Some(Command::Tokenize(a)) => tokenize::run(a),
        Some(Command::Synth(a)) => synth::run(a),
        Some(Command::Bench(a)) => bench::run(a),
    }
}
