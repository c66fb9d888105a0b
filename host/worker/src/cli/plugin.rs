//! `worker-orcd plugin`: the plugin author's tools, in the binary they already have.
//!
//! ```text
//! worker-orcd plugin new NAME --kind sampler|constraint|tokenizer|handler [--dir PARENT]
//!     [--sdk-path DIR | --sdk-version V]
//! worker-orcd plugin check FILE.wasm [--vocab X.gguf] [--max-us-per-token N]
//! worker-orcd plugin list [--url http://127.0.0.1:8080]
//! ```
//!
//! `check` runs the conformance kit (`orcd-conformance`) on the component, whatever its kind;
//! `list` asks a running worker (`GET /plugins`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use orcd_conformance::{
    Report, SamplerOptions, Suite, check_constraint, check_handler, check_sampler, check_tokenizer,
    detect_kind,
};
use orcd_plugin_host::PluginKind;

use crate::cli::plugin_new::{NewArgs, new_crate};

#[derive(clap::Args, Debug)]
pub struct PluginArgs {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(clap::Subcommand, Debug)]
enum PluginCommand {
    /// Write a standalone plugin crate (Cargo.toml, src/lib.rs with a native unit test,
    /// README) that builds anywhere with `cargo build --release --target wasm32-wasip2`.
    New(NewArgs),
    /// Run the conformance kit on a plugin component and print its pass/fail table
    /// (exit 0: every check passed, 1: a check failed, 2: the file could not be checked).
    Check(CheckArgs),
    /// List the plugins a running worker has in service and the plugin files it cannot load.
    List(ListArgs),
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// The component (`target/wasm32-wasip2/release/NAME.wasm`).
    file: PathBuf,
    /// Tokenizer plugins: the GGUF whose vocabulary to check against (a model or a
    /// vocabulary-only file).
    #[arg(long, value_name = "GGUF")]
    vocab: Option<PathBuf>,
    /// Tokenizer plugins: more llama.cpp-style suites (`X.gguf` with `X.gguf.inp` and
    /// `X.gguf.out` beside it).
    #[arg(long, value_name = "GGUF")]
    suite: Vec<PathBuf>,
    /// Sampler plugins: fail the cost check above this many microseconds of plugin work per
    /// token (otherwise the cost is only reported).
    #[arg(long, value_name = "N")]
    max_us_per_token: Option<f64>,
}

#[derive(clap::Args, Debug)]
struct ListArgs {
    /// The worker's address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Print the `GET /plugins` JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: PluginArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PluginCommand::New(a) => {
            let dir = new_crate(&a)?;
            println!("wrote {}", dir.display());
            println!(
                "next: cd {} && cargo test && cargo build --release --target wasm32-wasip2",
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Check(a) => match check(&a) {
            Ok(report) => {
                println!("{report}");
                Ok(if report.passed() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                })
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                Ok(ExitCode::from(2))
            }
        },
        PluginCommand::List(a) => list(&a),
    }
}

fn check(a: &CheckArgs) -> anyhow::Result<Report> {
    let kind = detect_kind(&a.file)?;
    Ok(match kind {
        PluginKind::Sampler => {
            let opts = SamplerOptions {
                max_us_per_token: a.max_us_per_token,
                ..SamplerOptions::default()
            };
            check_sampler(&a.file, &opts)?
        }
        PluginKind::Tokenizer => {
            let Some(vocab) = &a.vocab else {
                anyhow::bail!(
                    "{} is a tokenizer plugin: its checks need --vocab X.gguf",
                    a.file.display()
                );
            };
            let suites: Vec<Suite> = a.suite.iter().map(|p| Suite::beside(p)).collect();
            check_tokenizer(&a.file, vocab, &suites)?
        }
        PluginKind::RequestHandler => check_handler(&a.file)?,
        PluginKind::Constraint => check_constraint(&a.file)?,
    })
}

fn list(a: &ListArgs) -> anyhow::Result<ExitCode> {
    let url = format!("{}/plugins", a.url.trim_end_matches('/'));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let body: serde_json::Value = rt.block_on(async {
        let resp = reqwest::get(&url)
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        anyhow::ensure!(status.is_success(), "{url} answered {status}");
        resp.json().await.context("the answer is not JSON")
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let list: worker_orcd::server::PluginList =
        serde_json::from_value(body).context("unexpected /plugins answer")?;
    print!("{}", table(&list));
    Ok(ExitCode::SUCCESS)
}

/// The listing as a table: one plugin a row, then the files that fail to load.
fn table(list: &worker_orcd::server::PluginList) -> String {
    let mut rows = vec![[
        "KIND".to_string(),
        "NAME".into(),
        "VERSION".into(),
        "CONTRACT".into(),
        "SOURCE".into(),
    ]];
    for p in &list.plugins {
        rows.push([
            p.kind.clone(),
            p.name.clone(),
            p.version.clone(),
            p.contract.clone(),
            p.source.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = (0..5)
            .map(|c| format!("{:<w$}", r[c], w = widths[c]))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    for f in &list.load_failures {
        out.push_str(&format!("FAILED  {}  {}: {}\n", f.path, f.code, f.message));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use worker_orcd::error_code::ErrorCode;
    use worker_orcd::plugins::{PluginLoadFailure, PluginRow};

    #[test]
    fn list_is_a_table_with_failures_after() {
        let list = worker_orcd::server::PluginList {
            plugins: vec![PluginRow {
                kind: "sampler".into(),
                name: "typical".into(),
                version: "0.3.0".into(),
                contract: "0.2.0".into(),
                source: "/plugins/typical.wasm".into(),
                description: "typical-p".into(),
            }],
            load_failures: vec![PluginLoadFailure {
                path: "/plugins/bad.wasm".into(),
                code: ErrorCode::PluginLoadFailed.as_str().into(),
                message: "not a component".into(),
            }],
        };
        let t = table(&list);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "KIND     NAME     VERSION  CONTRACT  SOURCE");
        assert_eq!(
            lines[1],
            "sampler  typical  0.3.0    0.2.0     /plugins/typical.wasm"
        );
        assert!(lines[2].starts_with("FAILED  /plugins/bad.wasm  PLUGIN_LOAD_FAILED"));
    }
}
