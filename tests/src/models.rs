//! Where the test suite's files are: the workspace, llama.cpp's golden files, and the real
//! models that `scripts/fetch-models.sh` fetches and checksums.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Where llama.cpp's golden files are (`ORCD_REFERENCE_DIR` overrides).
pub fn reference_dir() -> PathBuf {
    std::env::var_os("ORCD_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/reference"))
}

/// The folder of llama.cpp's vocabulary test suites (`ggml-vocab-*.gguf` with their
/// `.gguf.inp` / `.gguf.out`), extracted from the pinned llama-cpp-python sdist by
/// `scripts/fetch-models.sh vocab` when missing.
pub fn fetch_vocab_suites() -> PathBuf {
    fetch_model("vocab")
}

/// The folder of llama.cpp's example GBNF grammars (`json.gbnf`, `arithmetic.gbnf`, ...),
/// extracted from the same sdist by `scripts/fetch-models.sh grammars` when missing.
pub fn fetch_grammars() -> PathBuf {
    fetch_model("grammars")
}

/// The folder of llama.cpp's copies of models' chat templates (`openai-gpt-oss-120b.jinja`, ...),
/// extracted from the same sdist by `scripts/fetch-models.sh templates` when missing.
pub fn fetch_chat_templates() -> PathBuf {
    fetch_model("templates")
}

/// The path of a real model (`smollm2` or `gemma3`; `vocab`, `grammars`, `templates` for those folders), fetched
/// and verified by `scripts/fetch-models.sh` when missing; the script prints the path as its
/// last line.
pub fn fetch_model(which: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/fetch-models.sh"))
        .arg(which)
        .output()
        .expect("run scripts/fetch-models.sh");
    assert!(
        out.status.success(),
        "fetch-models.sh {which} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8 path");
    PathBuf::from(stdout.lines().last().expect("a path").trim())
}
