//! The GGUF reader against real files and hostile ones.
//!
//! Each hostile file is built byte by byte (or written valid by `GgufWriter` and then corrupted
//! in one field) and must be rejected with the right error, never a panic.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use orcd_device::EngineError;
use orcd_model::gguf::limits::*;
use orcd_model::gguf::{GgufFile, GgufWriter, MetaValue};
use orcd_model::quant::GgmlType;

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
    let path = model("smollm2");
    let start = Instant::now();
    let f = GgufFile::open(&path).unwrap();
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
    assert_eq!(embd.ty, orcd_model::quant::GgmlType::Q8_0);
    assert_eq!((embd.row_len(), embd.n_rows()), (576, 49152));
    assert_eq!(
        f.tensor("blk.0.ffn_down.weight").unwrap().ty,
        orcd_model::quant::GgmlType::Q4_1
    );
    check_all_tensor_data(&f);
}

#[test]
fn gemma3_opens() {
    let path = model("gemma3");
    let start = Instant::now();
    let f = GgufFile::open(&path).unwrap();
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
    let reference = std::env::var_os("ORCD_REFERENCE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference"));
    let dir = reference.join("tokenizer");
    let dir = dir.as_path();
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

/// A GGUF file assembled field by field, so that any field can hold any value.
struct Raw(Vec<u8>);

impl Raw {
    /// Magic, version and the two counts.
    fn new(n_tensors: u64, n_kv: u64) -> Raw {
        Raw(b"GGUF".to_vec()).u32(3).u64(n_tensors).u64(n_kv)
    }
    fn bytes(mut self, b: &[u8]) -> Raw {
        self.0.extend_from_slice(b);
        self
    }
    fn u8(self, v: u8) -> Raw {
        self.bytes(&[v])
    }
    fn u32(self, v: u32) -> Raw {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(self, v: u64) -> Raw {
        self.bytes(&v.to_le_bytes())
    }
    /// A GGUF string: u64 length, bytes.
    fn str(self, s: &[u8]) -> Raw {
        self.u64(s.len() as u64).bytes(s)
    }
    fn kv_u32(self, key: &str, v: u32) -> Raw {
        self.str(key.as_bytes()).u32(4).u32(v)
    }
    fn kv_str(self, key: &str, v: &str) -> Raw {
        self.str(key.as_bytes()).u32(8).str(v.as_bytes())
    }
    /// A tensor info: name, n_dims, dims, ggml type, offset in the data section.
    fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Raw {
        let mut r = self.str(name.as_bytes()).u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(ty).u64(offset)
    }
    /// Pad to the default alignment of 32, then `n` bytes of tensor data.
    fn data(mut self, n: usize) -> Raw {
        let padded = self.0.len().next_multiple_of(32);
        self.0.resize(padded + n, 0);
        self
    }
}

const F32: u32 = GgmlType::F32 as u32;

fn rejected(bytes: Vec<u8>) -> EngineError {
    match GgufFile::from_bytes(bytes) {
        Ok(f) => panic!("accepted a bad file: {f:?}"),
        Err(e) => e,
    }
}

/// Asserts the file is rejected as invalid GGUF with a message containing every `needle`.
fn assert_invalid(raw: Raw, needles: &[&str]) {
    match rejected(raw.0) {
        EngineError::InvalidGguf { what } => {
            for n in needles {
                assert!(what.contains(n), "message {what:?} lacks {n:?}");
            }
        }
        e => panic!("expected InvalidGguf, got {e:?}"),
    }
}

/// A small valid file with two tensors, written by `GgufWriter`.
fn valid_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", MetaValue::Str("llama".into()))
        .unwrap();
    w.add_metadata("llama.block_count", MetaValue::U32(1))
        .unwrap();
    w.add_tensor("a", &[4], GgmlType::F32, vec![1; 16]).unwrap();
    w.add_tensor("b", &[32, 2], GgmlType::Q8_0, vec![2; 68])
        .unwrap();
    w.to_bytes().unwrap()
}

#[test]
fn the_raw_builder_makes_valid_files() {
    let raw = Raw::new(1, 1)
        .kv_u32("k", 7)
        .tensor("w", &[8], F32, 0)
        .data(32);
    let f = GgufFile::from_bytes(raw.0).unwrap();
    assert_eq!(f.get_u32("k").unwrap(), 7);
    assert_eq!(f.tensor("w").unwrap().size, 32);
    GgufFile::from_bytes(valid_file()).unwrap();
}

#[test]
fn bad_magic() {
    let mut b = valid_file();
    b[..4].copy_from_slice(b"GGML");
    assert_invalid(Raw(b), &["bad magic"]);
}

#[test]
fn bad_version() {
    for version in [0u32, 1, 4, 0x0300_0000] {
        let mut b = valid_file();
        b[4..8].copy_from_slice(&version.to_le_bytes());
        assert_invalid(Raw(b), &["unsupported version", &version.to_string()]);
    }
}

#[test]
fn version_2_is_accepted() {
    let mut b = valid_file();
    b[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(GgufFile::from_bytes(b).unwrap().version(), 2);
}

#[test]
fn truncated_header() {
    assert_invalid(
        Raw(b"GGUF".to_vec()).u32(3).bytes(&[0; 3]),
        &["tensor_count"],
    );
    assert_invalid(Raw(vec![]), &["magic"]);
    assert_invalid(Raw(b"GG".to_vec()), &["magic"]);
    assert_invalid(Raw::new(0, 1).str(b"key").u32(4).u8(1), &["`key`"]);
}

#[test]
fn every_truncation_of_a_valid_file_is_rejected() {
    let b = valid_file();
    let f = GgufFile::from_bytes(b.clone()).unwrap();
    let data_end = f.tensors().iter().map(|t| t.offset + t.size).max().unwrap() as usize;
    for cut in 0..data_end {
        let e = rejected(b[..cut].to_vec());
        assert!(
            matches!(e, EngineError::InvalidGguf { .. }),
            "cut {cut}: {e:?}"
        );
    }
}

#[test]
fn tensor_count_over_cap() {
    assert_invalid(Raw::new(MAX_TENSORS + 1, 0), &["tensor_count", "cap"]);
    assert_invalid(Raw::new(u64::MAX, 0), &["tensor_count", "cap"]);
}

#[test]
fn tensor_count_larger_than_the_file() {
    // Under the cap, but the infos cannot fit in the bytes that follow.
    assert_invalid(
        Raw::new(MAX_TENSORS, 0).data(64),
        &["tensor_infos", "remain"],
    );
}

#[test]
fn kv_count_over_cap() {
    assert_invalid(Raw::new(0, MAX_METADATA + 1), &["metadata_kv_count", "cap"]);
    assert_invalid(
        Raw::new(0, MAX_METADATA).kv_u32("a", 1),
        &["metadata", "remain"],
    );
}

#[test]
fn string_length_over_cap() {
    assert_invalid(
        Raw::new(0, 1).u64(u64::MAX).bytes(&[b'k'; 16]),
        &["metadata key #0", "cap"],
    );
    assert_invalid(
        Raw::new(0, 1).str(b"k").u32(8).u64(MAX_STRING_LEN + 1),
        &["`k`", "over the cap"],
    );
    let long_name = "x".repeat(MAX_TENSOR_NAME_LEN as usize + 1);
    assert_invalid(
        Raw::new(1, 0).tensor(&long_name, &[1], F32, 0).data(4),
        &["tensor #0", "cap"],
    );
}

#[test]
fn string_past_end() {
    assert_invalid(
        Raw::new(0, 1).str(b"k").u32(8).u64(100).bytes(b"short"),
        &["`k`", "past the end"],
    );
    assert_invalid(
        Raw::new(0, 1).u64(100).bytes(&[b'k'; 16]),
        &["metadata key #0", "past the end"],
    );
}

#[test]
fn array_length_over_cap() {
    assert_invalid(
        Raw::new(0, 1)
            .str(b"arr")
            .u32(9)
            .u32(4)
            .u64(MAX_ARRAY_LEN + 1),
        &["`arr`", "array length", "cap"],
    );
}

#[test]
fn array_past_end() {
    // A million u32s announced, two present: rejected before allocating.
    assert_invalid(
        Raw::new(0, 1)
            .str(b"arr")
            .u32(9)
            .u32(4)
            .u64(1_000_000)
            .u32(1)
            .u32(2),
        &["`arr`", "past the end"],
    );
    // Strings: each takes at least its 8-byte length.
    assert_invalid(
        Raw::new(0, 1)
            .str(b"arr")
            .u32(9)
            .u32(8)
            .u64(MAX_ARRAY_LEN)
            .bytes(&[0; 64]),
        &["`arr`", "past the end"],
    );
}

#[test]
fn nested_array_depth() {
    let nest = |depth: usize| {
        let mut r = Raw::new(0, 1).str(b"deep").u32(9);
        for _ in 1..depth {
            r = r.u32(9).u64(1);
        }
        r.u32(4).u64(1).u32(42)
    };
    let f = GgufFile::from_bytes(nest(MAX_ARRAY_DEPTH).0).unwrap();
    assert!(f.get("deep").is_some());
    assert_invalid(nest(MAX_ARRAY_DEPTH + 1), &["`deep`", "nested"]);
    assert_invalid(nest(10_000), &["`deep`", "nested"]);
}

#[test]
fn unknown_value_type() {
    assert_invalid(
        Raw::new(0, 1).str(b"k").u32(13).u32(0),
        &["`k`", "unknown value type 13"],
    );
    assert_invalid(
        Raw::new(0, 1).str(b"k").u32(9).u32(99).u64(0),
        &["`k`", "unknown array element type 99"],
    );
}

#[test]
fn bool_that_is_neither_0_nor_1() {
    assert_invalid(
        Raw::new(0, 1).str(b"flag").u32(7).u8(2),
        &["`flag`", "bool"],
    );
}

#[test]
fn unknown_tensor_type() {
    let raw = Raw::new(1, 0).tensor("blk.0.w", &[32], 4, 0).data(64);
    match rejected(raw.0) {
        EngineError::UnsupportedTensorType { tensor, ty } => {
            assert_eq!((tensor.as_str(), ty), ("blk.0.w", 4));
        }
        e => panic!("expected UnsupportedTensorType, got {e:?}"),
    }
}

#[test]
fn too_many_dims() {
    let raw = Raw::new(1, 0).tensor("w", &[1, 1, 1, 1, 1], F32, 0).data(4);
    assert_invalid(raw, &["`w`", "5 dimensions"]);
    assert_invalid(
        Raw::new(1, 0).tensor("w", &[], F32, 0).data(4),
        &["`w`", "0 dimensions"],
    );
    assert_invalid(
        Raw::new(1, 0).str(b"w").u32(u32::MAX).bytes(&[0; 32]),
        &["`w`", "dimensions"],
    );
}

#[test]
fn zero_dims() {
    assert_invalid(
        Raw::new(1, 0).tensor("w", &[4, 0], F32, 0).data(16),
        &["`w`", "zero"],
    );
}

#[test]
fn overflowing_dims() {
    let big = 1u64 << 32;
    assert_invalid(
        Raw::new(1, 0).tensor("w", &[big, big, big], F32, 0).data(4),
        &["`w`", "overflows"],
    );
    // Elements fit in i64, bytes (4 per f32) do not.
    assert_invalid(
        Raw::new(1, 0)
            .tensor("w", &[1 << 31, 1 << 31], F32, 0)
            .data(4),
        &["`w`", "overflows"],
    );
}

#[test]
fn row_not_a_multiple_of_block_size() {
    let raw = Raw::new(1, 0)
        .tensor("w", &[33, 2], GgmlType::Q4_0 as u32, 0)
        .data(128);
    assert_invalid(raw, &["`w`", "row length 33", "q4_0", "32"]);
    let raw = Raw::new(1, 0)
        .tensor("k", &[128], GgmlType::Q4K as u32, 0)
        .data(256);
    assert_invalid(raw, &["`k`", "256"]);
}

#[test]
fn misaligned_offset() {
    let raw = Raw::new(1, 0).tensor("w", &[4], F32, 4).data(64);
    assert_invalid(raw, &["`w`", "not aligned to 32"]);
}

#[test]
fn tensor_past_end_of_file() {
    assert_invalid(
        Raw::new(1, 0).tensor("w", &[8], F32, 0).data(31),
        &["`w`", "past the end"],
    );
    assert_invalid(
        Raw::new(1, 0).tensor("w", &[8], F32, 0).data(0),
        &["`w`", "past the end"],
    );
    let far = u64::MAX - 31;
    assert_invalid(
        Raw::new(1, 0).tensor("w", &[8], F32, far).data(32),
        &["`w`", "past the end"],
    );
}

#[test]
fn overlapping_tensors() {
    let raw = Raw::new(2, 0)
        .tensor("a", &[16], F32, 32)
        .tensor("b", &[16], F32, 0)
        .data(128);
    assert_invalid(raw, &["`b`", "`a`", "overlap"]);
    let same = Raw::new(2, 0)
        .tensor("a", &[8], F32, 0)
        .tensor("b", &[8], F32, 0)
        .data(32);
    assert_invalid(same, &["overlap"]);
}

#[test]
fn duplicate_tensor_name() {
    let raw = Raw::new(2, 0)
        .tensor("w", &[8], F32, 0)
        .tensor("w", &[8], F32, 32)
        .data(64);
    assert_invalid(raw, &["duplicate tensor name `w`"]);
}

#[test]
fn duplicate_key() {
    let raw = Raw::new(0, 2).kv_u32("general.x", 1).kv_u32("general.x", 2);
    assert_invalid(raw, &["duplicate metadata key `general.x`"]);
}

#[test]
fn non_power_of_two_alignment() {
    for a in [0u32, 3, 48, 1 << 31] {
        let raw = Raw::new(0, 1).kv_u32("general.alignment", a);
        assert_invalid(raw, &["general.alignment", "power of two"]);
    }
    let raw = Raw::new(0, 1).kv_str("general.alignment", "32");
    assert_invalid(raw, &["general.alignment", "integer"]);
}

#[test]
fn custom_alignment_is_honoured() {
    // With alignment 64, offset 32 is misaligned and data starts on a 64-byte boundary.
    let raw = Raw::new(1, 1)
        .kv_u32("general.alignment", 64)
        .tensor("w", &[8], F32, 32)
        .data(128);
    assert_invalid(raw, &["`w`", "not aligned to 64"]);
    let raw = Raw::new(1, 1)
        .kv_u32("general.alignment", 64)
        .tensor("w", &[8], F32, 0)
        .data(128);
    let f = GgufFile::from_bytes(raw.0).unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.tensor("w").unwrap().offset % 64, 0);
}

#[test]
fn invalid_utf8() {
    assert_invalid(
        Raw::new(0, 1).str(b"k\xff\xfe").u32(4).u32(1),
        &["metadata key #0", "UTF-8"],
    );
    assert_invalid(
        Raw::new(0, 1).str(b"k").u32(8).str(b"\xc3\x28"),
        &["`k`", "UTF-8"],
    );
    assert_invalid(
        Raw::new(0, 1)
            .str(b"toks")
            .u32(9)
            .u32(8)
            .u64(2)
            .str(b"ok")
            .str(b"\x80"),
        &["`toks`", "element 1", "UTF-8"],
    );
    let bad_name = Raw::new(1, 0).str(b"w\xff").u32(1).u64(1).u32(F32).u64(0);
    assert_invalid(bad_name.data(4), &["tensor #0 name", "UTF-8"]);
}
