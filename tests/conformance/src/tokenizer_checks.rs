//! Tokenizer conformance over a real vocabulary (a `.gguf` file): `decode(encode(text))`
//! gives the text back, streaming pieces concatenate to the same bytes (up to the one leading
//! space of a SentencePiece vocabulary), and any llama.cpp-style
//! suite (`X.gguf` + `X.gguf.inp` + `X.gguf.out`) encodes to exactly llama.cpp's ids.

use std::path::{Path, PathBuf};

use orcd_common::Vocab;
use orcd_plugin_host::{ModelFacts, PluginKind};

use crate::harness::host_with;
use crate::{KitError, Report};

/// Marker line that ends each string of a `.inp` file.
const INP_MARKER: &str = "\n__ggml_vocab_test__\n";

/// Texts of the round-trip check: ASCII, accents, CJK, emoji, whitespace runs, digits.
const ROUND_TRIP: &[&str] = &[
    "Hello world",
    " leading space and trailing space ",
    "Ünïcödé àccents, ß and œ",
    "你好，世界。日本語のテキスト",
    "emoji 😀👍🏽 and 🇫🇷 flags",
    "tabs\tand\nnew\n\nlines   and    runs",
    "numbers 1234567890 3.14159 -42",
    "code: fn main() { println!(\"hi\"); }",
];

/// One llama.cpp suite: its vocabulary and the `.inp` / `.out` files.
#[derive(Clone, Debug)]
pub struct Suite {
    pub vocab: PathBuf,
    pub inp: PathBuf,
    pub out: PathBuf,
}

impl Suite {
    /// The suite of `X.gguf`: `X.gguf.inp` and `X.gguf.out` beside it.
    pub fn beside(vocab: &Path) -> Suite {
        let with = |ext: &str| {
            let mut p = vocab.as_os_str().to_owned();
            p.push(ext);
            PathBuf::from(p)
        };
        Suite {
            vocab: vocab.to_path_buf(),
            inp: with(".inp"),
            out: with(".out"),
        }
    }
}

/// Run the tokenizer checks: round trip over `vocab`, then every suite.
pub fn check_tokenizer(wasm: &Path, vocab: &Path, suites: &[Suite]) -> Result<Report, KitError> {
    let (facts, data) = load_vocab(vocab)?;
    let (host, info) = host_with(wasm, PluginKind::Tokenizer, facts, &data)?;
    let mut report = Report::new(format!("{} ({})", info.label(), info.kind));
    let vocab_name = vocab
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into());

    report.record(format!("round trip ({vocab_name})"), {
        let mut tok = host.tokenizer()?;
        let mut verdict = Ok(format!("{} texts", ROUND_TRIP.len()));
        for text in ROUND_TRIP {
            let result = tok.encode(text, false, false).and_then(|ids| {
                let whole = tok.decode(&ids, false)?;
                let mut streamed = Vec::new();
                for &id in &ids {
                    streamed.extend(tok.piece(id)?);
                }
                Ok((whole, streamed))
            });
            match result {
                Ok((whole, _)) if whole != text.as_bytes() => {
                    verdict = Err(format!(
                        "{text:?} came back as {:?}",
                        String::from_utf8_lossy(&whole)
                    ));
                    break;
                }
                // Pieces keep SentencePiece's leading space, which `decode` drops once.
                Ok((_, streamed))
                    if streamed != text.as_bytes()
                        && streamed.strip_prefix(b" ") != Some(text.as_bytes()) =>
                {
                    verdict = Err(format!(
                        "{text:?} streamed as {:?}",
                        String::from_utf8_lossy(&streamed)
                    ));
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    verdict = Err(format!("{text:?}: {}: {e}", e.code()));
                    break;
                }
            }
        }
        verdict
    });

    for suite in suites {
        let name = suite
            .vocab
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into());
        let verdict = run_suite(wasm, suite);
        report.record(format!("suite {name}"), verdict);
    }
    Ok(report)
}

/// Model facts and vocabulary of a `.gguf` file.
fn load_vocab(path: &Path) -> Result<(ModelFacts, Vocab), KitError> {
    let vocab = orcd_model::vocab::open(path)?;
    let facts = ModelFacts {
        architecture: "llama".into(),
        name: vocab.name.clone(),
        vocab_size: vocab.len() as u32,
        context_length: 4096,
        bos: vocab.bos,
        eos: vocab.eos,
        eot: vocab.eot,
    };
    Ok((facts, vocab))
}

fn read(path: &Path) -> Result<String, KitError> {
    std::fs::read_to_string(path).map_err(|source| KitError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// The (text, ids) cases of a suite.
pub fn suite_cases(suite: &Suite) -> Result<Vec<(String, Vec<u32>)>, KitError> {
    let bad = |problem: String| KitError::BadData {
        path: suite.inp.display().to_string(),
        problem,
    };
    let inp = read(&suite.inp)?;
    let out = read(&suite.out)?;
    let mut texts: Vec<&str> = inp.split(INP_MARKER).collect();
    if texts.pop() != Some("") {
        return Err(bad("does not end with the marker line".into()));
    }
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(str::parse).collect())
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("bad token id in .out: {e}")))?;
    if ids.len() != texts.len() {
        return Err(bad(format!(
            "{} strings but {} id lines",
            texts.len(),
            ids.len()
        )));
    }
    Ok(texts.into_iter().map(String::from).zip(ids).collect())
}

fn run_suite(wasm: &Path, suite: &Suite) -> Result<String, String> {
    let cases = suite_cases(suite).map_err(|e| e.to_string())?;
    let (facts, data) = load_vocab(&suite.vocab).map_err(|e| e.to_string())?;
    let (host, _) =
        host_with(wasm, PluginKind::Tokenizer, facts, &data).map_err(|e| e.to_string())?;
    let mut tok = host.tokenizer().map_err(|e| e.to_string())?;
    let mut failed = Vec::new();
    for (text, want) in &cases {
        match tok.encode(text, false, false) {
            Ok(got) if &got == want => {}
            Ok(got) => failed.push(format!("{text:?}: {got:?} != {want:?}")),
            Err(e) => {
                failed.push(format!("{text:?}: {}: {e}", e.code()));
                tok = host.tokenizer().map_err(|e| e.to_string())?;
            }
        }
    }
    if failed.is_empty() {
        Ok(format!("{} strings match llama.cpp", cases.len()))
    } else {
        Err(format!(
            "{} of {} differ; first: {}",
            failed.len(),
            cases.len(),
            failed[0]
        ))
    }
}
