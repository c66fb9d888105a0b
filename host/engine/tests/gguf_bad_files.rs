//! The GGUF reader against real files and hostile ones.
//!
//! Each hostile file is built byte by byte (or written valid by `GgufWriter` and then corrupted
//! in one field) and must be rejected with the right error, never a panic.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use orcd_engine::EngineError;
use orcd_engine::gguf::GgufFile;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The path of a real model, fetched (idempotently) by `scripts/fetch-models.sh`.
fn model(which: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/fetch-models.sh"))
        .arg(which)
        .output()
        .expect("run scripts/fetch-models.sh");
    assert!(
        out.status.success(),
        "fetch-models.sh {which}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn check_all_tensor_data(f: &GgufFile) {
    for t in f.tensors() {
        assert_eq!(f.tensor_data(t).len() as u64, t.size, "{}", t.name);
        assert_eq!(t.offset % f.alignment(), 0, "{}", t.name);
    }
}

#[test]
fn smollm2_opens() {
    let start = Instant::now();
    let f = GgufFile::open(&model("smollm2")).unwrap();
    eprintln!("SmolLM2 parsed in {:?}", start.elapsed());
    assert_eq!(f.version(), 3);
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.tensors().len(), 272);
    assert_eq!(f.metadata().len(), 33);
    assert_eq!(f.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(f.get_u32("llama.embedding_length").unwrap(), 576);
    assert_eq!(f.get_f32("llama.rope.freq_base").unwrap(), 100000.0);
    assert_eq!(
        f.get_str_array("tokenizer.ggml.tokens").unwrap().len(),
        49152
    );
    assert_eq!(
        f.get_str_array("tokenizer.ggml.merges").unwrap().len(),
        48900
    );
    assert_eq!(
        f.get_i32_array("tokenizer.ggml.token_type").unwrap().len(),
        49152
    );
    let embd = f.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.dims, [576, 49152]);
    assert_eq!(embd.ty, orcd_engine::quant::GgmlType::Q8_0);
    assert_eq!((embd.row_len(), embd.n_rows()), (576, 49152));
    assert_eq!(
        f.tensor("blk.0.ffn_down.weight").unwrap().ty,
        orcd_engine::quant::GgmlType::Q4_1
    );
    check_all_tensor_data(&f);
}

#[test]
fn gemma3_opens() {
    let start = Instant::now();
    let f = GgufFile::open(&model("gemma3")).unwrap();
    eprintln!("Gemma 3 parsed in {:?}", start.elapsed());
    assert_eq!(f.architecture().unwrap(), "gemma3");
    assert_eq!(f.tensors().len(), 236);
    assert_eq!(f.get_u32("gemma3.attention.sliding_window").unwrap(), 512);
    assert_eq!(
        f.get_str_array("tokenizer.ggml.tokens").unwrap().len(),
        262144
    );
    assert_eq!(
        f.get_f32_array("tokenizer.ggml.scores").unwrap().len(),
        262144
    );
    assert_eq!(f.tensor("token_embd.weight").unwrap().dims, [640, 262144]);
    assert_eq!(f.tensor("blk.0.attn_q_norm.weight").unwrap().dims, [256]);
    assert!(f.tensor("output.weight").is_none());
    check_all_tensor_data(&f);
}

#[test]
fn reference_vocab_files_open() {
    let dir = Path::new("/work/shared/reference/tokenizer");
    let expected = [
        ("ggml-vocab-gpt-2.gguf", "gpt2", 50257),
        ("ggml-vocab-llama-bpe.gguf", "llama", 128256),
        ("ggml-vocab-llama-spm.gguf", "llama", 32000),
        ("ggml-vocab-phi-3.gguf", "phi3", 32064),
        ("ggml-vocab-qwen2.gguf", "qwen2", 151936),
    ];
    for (file, arch, n_vocab) in expected {
        let f = GgufFile::open(&dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(f.architecture().unwrap(), arch, "{file}");
        assert!(f.tensors().is_empty(), "{file}");
        let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap();
        assert_eq!(tokens.len(), n_vocab, "{file}");
    }
}

#[test]
fn missing_file_is_an_io_error() {
    let err = GgufFile::open(Path::new("/nonexistent/model.gguf")).unwrap_err();
    assert!(matches!(err, EngineError::Io { .. }), "{err}");
}
