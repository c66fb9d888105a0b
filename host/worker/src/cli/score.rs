//! `worker-orcd score`: teacher-forced scoring over the whole sequence (in steps of 128
//! tokens); for each position, the best next-token candidates and their logits, as JSON.
//!
//! ```text
//! worker-orcd score --model PATH --ids 1,2,3 --top K --json [--backend cpu|cuda] [--threads N]
//! ```
//! Prints `{"positions": [[[id, logit], ...], ...]}`, one list per input position.

use std::process::ExitCode;

use orcd_device::decode::score_positions;

use super::generate::{DeviceArgs, parse_ids};

#[derive(clap::Args, Debug)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// The sequence's token ids, comma-separated.
    #[arg(long, value_name = "IDS", value_parser = parse_ids)]
    pub ids: std::vec::Vec<u32>,
    /// Candidates per position.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Print one JSON object (the only output format for now; accepted for clarity).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ScoreArgs) -> anyhow::Result<ExitCode> {
    let (_model, mut dev) = args.device.open(args.ids.len())?;
    let positions = score_positions(dev.as_mut(), &args.ids, args.top)?;
    println!("{}", serde_json::json!({ "positions": positions }));
    Ok(ExitCode::SUCCESS)
}
