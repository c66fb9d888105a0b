//! `worker-orcd`: the inference worker and its command-line tools.
//!
//! Without a subcommand it serves the worker's HTTP API (flags of the worker spec); the
//! subcommands are tools for people: `generate`, `score`, `tokenize`, `synth`, `bench`.

mod cli;

use clap::{CommandFactory, FromArgMatches};

fn main() -> std::process::ExitCode {
    let matches = cli::Cli::command()
        .version(cli::version_text())
        .get_matches();
    let args = match cli::Cli::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
