//! Writes the seed corpus of the `gguf_reader` fuzz target: small valid GGUF files made with
//! `GgufWriter` that between them use every metadata value type, nested arrays, a custom
//! alignment, every tensor type and 1 to 4 dimensions.
//!
//! Usage: `orcd-fuzz-seeds <corpus dir>` (see fuzz/README.md).

use std::path::PathBuf;
use std::process::ExitCode;

use orcd_model::gguf::{GgufWriter, MetaArray, MetaValue};
use orcd_model::quant::GgmlType;

fn scalars(w: &mut GgufWriter) {
    let values = [
        MetaValue::U8(1),
        MetaValue::I8(-1),
        MetaValue::U16(2),
        MetaValue::I16(-2),
        MetaValue::U32(3),
        MetaValue::I32(-3),
        MetaValue::U64(4),
        MetaValue::I64(-4),
        MetaValue::F32(0.5),
        MetaValue::F64(0.25),
        MetaValue::Bool(true),
        MetaValue::Str("llama".into()),
    ];
    for (i, v) in values.into_iter().enumerate() {
        w.add_metadata(format!("scalar.{i}"), v).unwrap();
    }
}

fn arrays(w: &mut GgufWriter) {
    let values = [
        MetaArray::U8(vec![1, 2]),
        MetaArray::I32(vec![-1, 3]),
        MetaArray::F32(vec![0.5, 1.5]),
        MetaArray::Bool(vec![true, false]),
        MetaArray::Str(vec!["a".into(), "bc".into()]),
        MetaArray::Array(vec![
            MetaArray::U64(vec![7]),
            MetaArray::Str(vec!["x".into()]),
        ]),
    ];
    for (i, v) in values.into_iter().enumerate() {
        w.add_metadata(format!("array.{i}"), MetaValue::Array(v))
            .unwrap();
    }
}

fn tensors(w: &mut GgufWriter, shapes: &[(&str, &[u64], GgmlType)]) {
    for (name, dims, ty) in shapes {
        let n: u64 = dims.iter().product();
        let size = (n as usize / ty.block_size()) * ty.block_bytes();
        let data = (0..size).map(|i| (i * 7) as u8).collect();
        w.add_tensor(*name, dims, *ty, data).unwrap();
    }
}

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: orcd-fuzz-seeds <corpus dir>");
        return ExitCode::FAILURE;
    };
    std::fs::create_dir_all(&dir).unwrap();
    let mut seeds: Vec<(String, GgufWriter)> = Vec::new();

    seeds.push(("empty".into(), GgufWriter::new()));

    let mut w = GgufWriter::new();
    scalars(&mut w);
    seeds.push(("scalars".into(), w));

    let mut w = GgufWriter::new();
    arrays(&mut w);
    seeds.push(("arrays".into(), w));

    for ty in GgmlType::ALL {
        let mut w = GgufWriter::new();
        w.add_metadata("general.architecture", MetaValue::Str("llama".into()))
            .unwrap();
        let row = ty.block_size() as u64;
        tensors(&mut w, &[("w", &[row, 2], ty), ("n", &[4], GgmlType::F32)]);
        seeds.push((format!("tensor-{}", ty.name()), w));
    }

    let mut w = GgufWriter::new();
    w.add_metadata("general.alignment", MetaValue::U32(64))
        .unwrap();
    tensors(
        &mut w,
        &[
            ("a", &[2, 3, 1, 2], GgmlType::F16),
            ("b", &[3, 1, 2], GgmlType::F32),
            ("c", &[32], GgmlType::Q8_0),
        ],
    );
    seeds.push(("aligned-64".into(), w));

    let mut w = GgufWriter::new();
    scalars(&mut w);
    arrays(&mut w);
    tensors(
        &mut w,
        &[
            ("token_embd.weight", &[32, 4], GgmlType::Q4_0),
            ("blk.0.attn_norm.weight", &[32], GgmlType::F32),
        ],
    );
    seeds.push(("model-like".into(), w));

    for (name, w) in &seeds {
        let path = dir.join(format!("seed-{name}.gguf"));
        std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    }
    println!("wrote {} seeds to {}", seeds.len(), dir.display());
    ExitCode::SUCCESS
}
