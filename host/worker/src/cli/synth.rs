//! `worker-orcd synth` (being written).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct SynthArgs {}

pub fn run(_args: SynthArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`synth` is not built yet")
}
