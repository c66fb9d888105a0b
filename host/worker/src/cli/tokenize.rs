//! `worker-orcd tokenize` (being written).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct TokenizeArgs {}

pub fn run(_args: TokenizeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`tokenize` is not built yet")
}
