//! `worker-orcd score` (being written).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ScoreArgs {}

pub fn run(_args: ScoreArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`score` is not built yet")
}
