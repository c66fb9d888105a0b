//! `orcd-conform`: check a plugin component against the worker's plugin contract.
//! Prints a pass/fail table; exits 0 when every check passes, 1 when one fails, 2 on a usage
//! or load error.

use std::path::PathBuf;
use std::process::ExitCode;

use orcd_conformance::{
    Report, SamplerOptions, Suite, check_constraint, check_handler, check_sampler, check_tokenizer,
};

const USAGE: &str = "usage:
  orcd-conform sampler FILE.wasm [--max-us-per-token N]
  orcd-conform tokenizer FILE.wasm --vocab X.gguf [--inp X.inp --out X.out] [--suite Y.gguf ...]
  orcd-conform handler FILE.wasm
  orcd-conform constraint FILE.wasm";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(report) => {
            println!("{report}");
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("orcd-conform: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> anyhow::Result<Report> {
    let (Some(kind), Some(file)) = (args.first(), args.get(1)) else {
        anyhow::bail!("{USAGE}");
    };
    let wasm = PathBuf::from(file);
    let mut rest = args[2..].iter();
    let mut flags: Vec<(String, String)> = Vec::new();
    while let Some(flag) = rest.next() {
        let Some(value) = rest.next() else {
            anyhow::bail!("{flag} needs a value\n{USAGE}");
        };
        flags.push((flag.clone(), value.clone()));
    }
    let one = |name: &str| {
        flags
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, v)| v.clone())
    };
    let known: &[&str] = match kind.as_str() {
        "sampler" => &["--max-us-per-token"],
        "tokenizer" => &["--vocab", "--inp", "--out", "--suite"],
        "handler" | "constraint" => &[],
        other => anyhow::bail!("unknown plugin kind `{other}`\n{USAGE}"),
    };
    if let Some((f, _)) = flags.iter().find(|(f, _)| !known.contains(&f.as_str())) {
        anyhow::bail!("unknown option {f} for {kind}\n{USAGE}");
    }
    Ok(match kind.as_str() {
        "sampler" => {
            let max_us_per_token = one("--max-us-per-token")
                .map(|v| v.parse::<f64>())
                .transpose()?;
            let opts = SamplerOptions {
                max_us_per_token,
                ..SamplerOptions::default()
            };
            check_sampler(&wasm, &opts)?
        }
        "tokenizer" => {
            let Some(vocab) = one("--vocab").map(PathBuf::from) else {
                anyhow::bail!("tokenizer checks need --vocab X.gguf\n{USAGE}");
            };
            let mut suites: Vec<Suite> = flags
                .iter()
                .filter(|(f, _)| f == "--suite")
                .map(|(_, v)| Suite::beside(&PathBuf::from(v)))
                .collect();
            match (one("--inp"), one("--out")) {
                (Some(inp), Some(out)) => suites.push(Suite {
                    vocab: vocab.clone(),
                    inp: inp.into(),
                    out: out.into(),
                }),
                (None, None) => {}
                _ => anyhow::bail!("--inp and --out go together\n{USAGE}"),
            }
            check_tokenizer(&wasm, &vocab, &suites)?
        }
        "constraint" => check_constraint(&wasm)?,
        _ => check_handler(&wasm)?,
    })
}
