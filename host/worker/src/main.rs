//! `worker-orcd`: the inference worker and its command-line tools.
//!
//! Without a subcommand it serves the worker's HTTP API (flags of the worker spec); the
//! subcommands are tools for people: `generate`, `score`, `tokenize`, `synth`, `bench`.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
