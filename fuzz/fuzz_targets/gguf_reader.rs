//! Arbitrary bytes into the GGUF reader. It must never panic, and whatever it accepts must be
//! self-consistent: every tensor's data is in bounds and of its stated size, every key and
//! tensor is found by name, and writing the file back with `GgufWriter` and reading it again
//! gives the same file.

#![no_main]

use libfuzzer_sys::fuzz_target;
use orcd_model::gguf::{GgufFile, GgufWriter};

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    let mut checksum = 0u64;
    for (key, value) in file.metadata() {
        assert!(file.get(key).is_some());
        let _ = (
            file.get_u32(key),
            file.get_u64(key),
            file.get_f32(key),
            file.get_bool(key),
        );
        let _ = (
            file.get_str(key),
            file.get_str_array(key),
            file.get_f32_array(key),
        );
        let _ = (
            file.get_i32_array(key),
            file.get_u32_opt(key),
            file.get_str_opt(key),
        );
        checksum += value.type_description().len() as u64;
    }
    for t in file.tensors() {
        let bytes = file.tensor_data(t);
        assert_eq!(bytes.len() as u64, t.size);
        assert_eq!(t.offset % file.alignment(), 0);
        assert_eq!(file.tensor(&t.name), Some(t));
        assert!(t.n_elements() > 0 && t.row_len() > 0 && t.n_rows() > 0);
        checksum += bytes.iter().map(|&b| b as u64).sum::<u64>();
    }
    std::hint::black_box(checksum);

    // Round trip: the writer accepts what the reader accepted, and its output reads back the same.
    let mut w = GgufWriter::new();
    for (key, value) in file.metadata() {
        w.add_metadata(key.clone(), value.clone())
            .expect("writer accepts read metadata");
    }
    for t in file.tensors() {
        w.add_tensor(t.name.clone(), &t.dims, t.ty, file.tensor_data(t).to_vec())
            .expect("writer accepts read tensor");
    }
    let written = w.to_bytes().expect("writer writes");
    let again = GgufFile::from_bytes(written.clone()).expect("reader accepts written file");
    assert_eq!(again.metadata().len(), file.metadata().len());
    for (a, b) in again.tensors().iter().zip(file.tensors()) {
        assert_eq!((&a.name, &a.dims, a.ty), (&b.name, &b.dims, b.ty));
        assert_eq!(again.tensor_data(a), file.tensor_data(b));
    }
    let mut w2 = GgufWriter::new();
    for (key, value) in again.metadata() {
        w2.add_metadata(key.clone(), value.clone()).unwrap();
    }
    for t in again.tensors() {
        w2.add_tensor(t.name.clone(), &t.dims, t.ty, again.tensor_data(t).to_vec())
            .unwrap();
    }
    assert_eq!(
        w2.to_bytes().unwrap(),
        written,
        "write -> read -> write is stable"
    );
});
