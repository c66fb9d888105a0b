//! Writing GGUF v3 files: metadata of every type and tensors with their raw bytes.
//!
//! Tensors are either given with their bytes ([`GgufWriter::add_tensor`]) or only declared
//! ([`GgufWriter::declare_tensor`]) and streamed at write time by a callback, so a multi-GB
//! model never has to sit in memory. The output always passes [`super::GgufFile`]'s checks.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::limits::*;
use super::reader::{ALIGNMENT_KEY, GGUF_MAGIC};
use super::tensor::{TensorInfo, data_size};
use super::value::{MetaArray, MetaValue, ValueType};
use crate::quant::GgmlType;
use orcd_device::EngineError;

/// A tensor to be written: its bytes, or `None` when the write callback supplies them.
struct PlannedTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    size: u64,
    data: Option<Vec<u8>>,
}

/// Builds a GGUF v3 file. Keys and tensors are written in the order they were added.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, MetaValue)>,
    keys: HashSet<String>,
    tensors: Vec<PlannedTensor>,
    names: HashSet<String>,
}

impl std::fmt::Debug for GgufWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufWriter")
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

fn invalid(what: String) -> EngineError {
    EngineError::InvalidInput(format!("GGUF writer: {what}"))
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a metadata pair. `general.alignment` (an integer power of two) sets the data
    /// alignment; otherwise it is 32.
    pub fn add_metadata(
        &mut self,
        key: impl Into<String>,
        value: MetaValue,
    ) -> Result<(), EngineError> {
        let key = key.into();
        if key.len() as u64 > MAX_STRING_LEN {
            return Err(invalid(format!(
                "metadata key of {} bytes is too long",
                key.len()
            )));
        }
        if key == ALIGNMENT_KEY {
            match value.as_i128() {
                Some(a) if a > 0 && a <= MAX_ALIGNMENT as i128 && (a as u64).is_power_of_two() => {}
                _ => {
                    return Err(invalid(format!(
                        "`{ALIGNMENT_KEY}` must be a power of two up to {MAX_ALIGNMENT}, got {value:?}"
                    )));
                }
            }
        }
        check_value(&value, 0).map_err(|e| invalid(format!("metadata `{key}`: {e}")))?;
        if !self.keys.insert(key.clone()) {
            return Err(invalid(format!("duplicate metadata key `{key}`")));
        }
        self.metadata.push((key, value));
        Ok(())
    }

    /// Add a tensor with its bytes (`dims` is `ne[0]` first; `data` must be exactly the
    /// tensor's size).
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> Result<(), EngineError> {
        self.plan(name.into(), dims, ty, Some(data))
    }

    /// Declare a tensor whose bytes the callback of [`GgufWriter::write`] supplies.
    pub fn declare_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
    ) -> Result<(), EngineError> {
        self.plan(name.into(), dims, ty, None)
    }

    fn plan(
        &mut self,
        name: String,
        dims: &[u64],
        ty: GgmlType,
        data: Option<Vec<u8>>,
    ) -> Result<(), EngineError> {
        let err = |e: String| invalid(format!("tensor `{name}`: {e}"));
        if name.len() as u64 > MAX_TENSOR_NAME_LEN {
            return Err(err(format!("name is over {MAX_TENSOR_NAME_LEN} bytes")));
        }
        let size = data_size(dims, ty).map_err(err)?;
        if let Some(d) = &data
            && d.len() as u64 != size
        {
            return Err(err(format!("{} bytes of data, expected {size}", d.len())));
        }
        if self.names.contains(&name) {
            return Err(invalid(format!("duplicate tensor name `{name}`")));
        }
        self.names.insert(name.clone());
        self.tensors.push(PlannedTensor {
            name,
            dims: dims.to_vec(),
            ty,
            size,
            data,
        });
        Ok(())
    }

    fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .find(|(k, _)| k == ALIGNMENT_KEY)
            .and_then(|(_, v)| v.as_i128())
            .map_or(DEFAULT_ALIGNMENT, |a| a as u64)
    }

    /// The header: magic, version, counts, metadata and tensor infos (without the padding).
    fn header(&self) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&GGUF_MAGIC);
        h.extend_from_slice(&3u32.to_le_bytes());
        h.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        h.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_str(&mut h, key);
            h.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
            put_value(&mut h, value);
        }
        let alignment = self.alignment();
        let mut rel = 0u64;
        for t in &self.tensors {
            put_str(&mut h, &t.name);
            h.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                h.extend_from_slice(&d.to_le_bytes());
            }
            h.extend_from_slice(&(t.ty as u32).to_le_bytes());
            h.extend_from_slice(&rel.to_le_bytes());
            rel = (rel + t.size).next_multiple_of(alignment);
        }
        h
    }

    /// The tensors as the written file will list them (absolute offsets).
    pub fn tensor_infos(&self) -> Vec<TensorInfo> {
        let alignment = self.alignment();
        let mut offset = (self.header().len() as u64).next_multiple_of(alignment);
        self.tensors
            .iter()
            .map(|t| {
                let info = TensorInfo {
                    name: t.name.clone(),
                    dims: t.dims.clone(),
                    ty: t.ty,
                    offset,
                    size: t.size,
                };
                offset = (offset + t.size).next_multiple_of(alignment);
                info
            })
            .collect()
    }

    /// Write the file to `out`, tensors in order. `fill(index, info, out)` writes the bytes of
    /// each declared tensor (exactly `info.size` of them); tensors added with bytes are written
    /// directly. Returns the number of bytes written.
    pub fn write<W: Write>(
        &self,
        out: W,
        mut fill: impl FnMut(usize, &TensorInfo, &mut dyn Write) -> Result<(), EngineError>,
    ) -> Result<u64, EngineError> {
        let io = |source| EngineError::Io {
            path: "<gguf output>".to_string(),
            source,
        };
        let mut out = Counting { inner: out, n: 0 };
        out.write_all(&self.header()).map_err(io)?;
        for (i, (t, info)) in self.tensors.iter().zip(self.tensor_infos()).enumerate() {
            pad_to(&mut out, info.offset).map_err(io)?;
            match &t.data {
                Some(d) => out.write_all(d).map_err(io)?,
                None => {
                    let start = out.n;
                    fill(i, &info, &mut out)?;
                    let written = out.n - start;
                    if written != info.size {
                        return Err(invalid(format!(
                            "tensor `{}`: the fill callback wrote {written} bytes, expected {}",
                            t.name, info.size
                        )));
                    }
                }
            }
        }
        let end = out.n.next_multiple_of(self.alignment());
        pad_to(&mut out, end).map_err(io)?;
        out.flush().map_err(io)?;
        Ok(out.n)
    }

    /// The whole file in memory; every tensor must have been added with its bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EngineError> {
        let mut v = Vec::new();
        self.write(&mut v, |_, info, _| {
            Err(invalid(format!(
                "tensor `{}` was declared without data",
                info.name
            )))
        })?;
        Ok(v)
    }

    /// Write the file to `path` (see [`GgufWriter::write`] for `fill`).
    pub fn write_file(
        &self,
        path: &Path,
        fill: impl FnMut(usize, &TensorInfo, &mut dyn Write) -> Result<(), EngineError>,
    ) -> Result<u64, EngineError> {
        let file = File::create(path).map_err(|source| EngineError::Io {
            path: path.display().to_string(),
            source,
        })?;
        self.write(BufWriter::with_capacity(1 << 20, file), fill)
            .map_err(|e| match e {
                EngineError::Io { source, .. } => EngineError::Io {
                    path: path.display().to_string(),
                    source,
                },
                e => e,
            })
    }
}

/// Counts the bytes written through it.
struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn pad_to<W: Write>(out: &mut Counting<W>, offset: u64) -> std::io::Result<()> {
    const ZEROS: [u8; 64] = [0; 64];
    while out.n < offset {
        let n = (offset - out.n).min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..n])?;
    }
    Ok(())
}

/// Check that the reader will accept `value` (string lengths, array lengths and depth).
fn check_value(value: &MetaValue, depth: usize) -> Result<(), String> {
    match value {
        MetaValue::Str(s) if s.len() as u64 > MAX_STRING_LEN => {
            Err(format!("string of {} bytes is too long", s.len()))
        }
        MetaValue::Array(a) => check_array(a, depth + 1),
        _ => Ok(()),
    }
}

fn check_array(a: &MetaArray, depth: usize) -> Result<(), String> {
    if depth > MAX_ARRAY_DEPTH {
        return Err(format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"));
    }
    if a.len() as u64 > MAX_ARRAY_LEN {
        return Err(format!("array of {} elements is too long", a.len()));
    }
    match a {
        MetaArray::Str(v) => match v.iter().find(|s| s.len() as u64 > MAX_STRING_LEN) {
            Some(s) => Err(format!("string of {} bytes is too long", s.len())),
            None => Ok(()),
        },
        MetaArray::Array(v) => v.iter().try_for_each(|inner| check_array(inner, depth + 1)),
        _ => Ok(()),
    }
}

fn put_str(h: &mut Vec<u8>, s: &str) {
    h.extend_from_slice(&(s.len() as u64).to_le_bytes());
    h.extend_from_slice(s.as_bytes());
}

fn put_value(h: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => h.push(*x),
        MetaValue::I8(x) => h.push(*x as u8),
        MetaValue::U16(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U64(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => h.push(*x as u8),
        MetaValue::Str(s) => put_str(h, s),
        MetaValue::Array(a) => put_array(h, a),
    }
}

/// An array: u32 element type, u64 count, elements.
fn put_array(h: &mut Vec<u8>, a: &MetaArray) {
    fn each<T>(h: &mut Vec<u8>, v: &[T], put: impl Fn(&mut Vec<u8>, &T)) {
        for x in v {
            put(h, x);
        }
    }
    let ty: ValueType = a.element_type();
    h.extend_from_slice(&(ty as u32).to_le_bytes());
    h.extend_from_slice(&(a.len() as u64).to_le_bytes());
    match a {
        MetaArray::U8(v) => h.extend_from_slice(v),
        MetaArray::I8(v) => each(h, v, |h, x| h.push(*x as u8)),
        MetaArray::U16(v) => each(h, v, |h, x| h.extend_from_slice(&x.to_le_bytes())),
        MetaArray::I16(v) => each(h, v, |h, x| h.extend_from_slice(&x.to_le_bytes())),
        MetaArray::U32(v) => each(h, v, |h, x| h.extend_from_slice(&x.to_le_bytes())),
        MetaArray::I32(v) => each(h, v, |h, x| h.extend_from_slice(&x.to_le_bytes())),
        MetaArray::U64(v) => each(h, v, |h, x| h.extend_from_slice(&x.to_le_bytes())),
        MetaArray::I64(v) => each(h, v, |h, x| h.extend_from_slice(&x.to_le_bytes())),
        MetaArray::F32(v) => each(h, v, |h, x| h.extend_from_slice(&x.to_le_bytes())),
        MetaArray::F64(v) => each(h, v, |h, x| h.extend_from_slice(&x.to_le_bytes())),
        MetaArray::Bool(v) => each(h, v, |h, x| h.push(*x as u8)),
        MetaArray::Str(v) => each(h, v, |h, s| put_str(h, s)),
        MetaArray::Array(v) => each(h, v, put_array),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;

    fn every_kind_of_value() -> Vec<(String, MetaValue)> {
        vec![
            (
                "general.architecture".into(),
                MetaValue::Str("llama".into()),
            ),
            ("u8".into(), MetaValue::U8(200)),
            ("i8".into(), MetaValue::I8(-100)),
            ("u16".into(), MetaValue::U16(60000)),
            ("i16".into(), MetaValue::I16(-30000)),
            ("u32".into(), MetaValue::U32(4_000_000_000)),
            ("i32".into(), MetaValue::I32(-2_000_000_000)),
            ("u64".into(), MetaValue::U64(u64::MAX)),
            ("i64".into(), MetaValue::I64(i64::MIN)),
            ("f32".into(), MetaValue::F32(1e-6)),
            ("f64".into(), MetaValue::F64(-2.5e300)),
            ("bool".into(), MetaValue::Bool(true)),
            ("str".into(), MetaValue::Str("héllo ▁world".into())),
            (
                "a.u8".into(),
                MetaValue::Array(MetaArray::U8(vec![1, 2, 3])),
            ),
            ("a.i8".into(), MetaValue::Array(MetaArray::I8(vec![-1, 2]))),
            ("a.u16".into(), MetaValue::Array(MetaArray::U16(vec![7]))),
            (
                "a.i16".into(),
                MetaValue::Array(MetaArray::I16(vec![-7, 8])),
            ),
            (
                "a.u32".into(),
                MetaValue::Array(MetaArray::U32(vec![1, u32::MAX])),
            ),
            (
                "a.i32".into(),
                MetaValue::Array(MetaArray::I32(vec![-1, 1, 3])),
            ),
            (
                "a.u64".into(),
                MetaValue::Array(MetaArray::U64(vec![u64::MAX])),
            ),
            (
                "a.i64".into(),
                MetaValue::Array(MetaArray::I64(vec![i64::MIN, 0])),
            ),
            (
                "a.f32".into(),
                MetaValue::Array(MetaArray::F32(vec![0.5, -1.0])),
            ),
            ("a.f64".into(), MetaValue::Array(MetaArray::F64(vec![0.25]))),
            (
                "a.bool".into(),
                MetaValue::Array(MetaArray::Bool(vec![true, false])),
            ),
            (
                "a.str".into(),
                MetaValue::Array(MetaArray::Str(vec!["a".into(), String::new()])),
            ),
            ("a.empty".into(), MetaValue::Array(MetaArray::F32(vec![]))),
            (
                "a.nested".into(),
                MetaValue::Array(MetaArray::Array(vec![
                    MetaArray::U32(vec![1, 2]),
                    MetaArray::Str(vec!["x".into()]),
                    MetaArray::Array(vec![MetaArray::Bool(vec![false])]),
                ])),
            ),
        ]
    }

    #[test]
    fn write_then_read_gives_back_metadata_and_tensors() {
        let mut w = GgufWriter::new();
        for (k, v) in every_kind_of_value() {
            w.add_metadata(k, v).unwrap();
        }
        let norm: Vec<u8> = (0..64u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let q: Vec<u8> = (0..(64 / 32 * 18 * 3)).map(|i| i as u8).collect();
        w.add_tensor("norm", &[64], GgmlType::F32, norm.clone())
            .unwrap();
        w.add_tensor("q", &[64, 3], GgmlType::Q4_0, q.clone())
            .unwrap();
        let planned = w.tensor_infos();
        let bytes = w.to_bytes().unwrap();

        let f = GgufFile::from_bytes(bytes).unwrap();
        assert_eq!(f.version(), 3);
        assert_eq!(f.alignment(), 32);
        assert_eq!(f.metadata(), &every_kind_of_value()[..]);
        assert_eq!(f.tensors(), &planned[..]);
        assert_eq!(f.tensor_data(f.tensor("norm").unwrap()), &norm[..]);
        assert_eq!(f.tensor_data(f.tensor("q").unwrap()), &q[..]);
        assert_eq!(f.tensor("q").unwrap().n_rows(), 3);
        assert_eq!(f.tensor("q").unwrap().row_len(), 64);
        assert_eq!(f.architecture().unwrap(), "llama");
    }

    #[test]
    fn typed_getters_convert_integers_and_reject_other_types() {
        let mut w = GgufWriter::new();
        for (k, v) in every_kind_of_value() {
            w.add_metadata(k, v).unwrap();
        }
        let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
        assert_eq!(f.get_u32("u8").unwrap(), 200);
        assert_eq!(f.get_u64("u32").unwrap(), 4_000_000_000);
        assert_eq!(f.get_u32("u16").unwrap(), 60000);
        assert!(
            matches!(f.get_u32("i8"), Err(EngineError::BadMetadata { key, .. }) if key == "i8")
        );
        assert!(f.get_u32("u64").is_err());
        assert!(f.get_u32("f32").is_err());
        assert_eq!(f.get_f32("f32").unwrap(), 1e-6);
        assert_eq!(f.get_f32("f64").unwrap(), -2.5e300f64 as f32);
        assert!(f.get_bool("bool").unwrap());
        assert_eq!(f.get_str("str").unwrap(), "héllo ▁world");
        assert_eq!(f.get_str_array("a.str").unwrap(), ["a", ""]);
        assert_eq!(f.get_f32_array("a.f32").unwrap(), [0.5, -1.0]);
        assert_eq!(f.get_i32_array("a.i32").unwrap(), [-1, 1, 3]);
        assert!(f.get_i32_array("a.u32").is_err());
        assert!(f.get_str("missing").is_err());
        assert_eq!(f.get_u32_opt("missing").unwrap(), None);
        assert_eq!(f.get_str_opt("str").unwrap(), Some("héllo ▁world"));
        assert!(f.get_bool_opt("str").is_err());
        assert_eq!(f.get_f32_opt("f32").unwrap(), Some(1e-6));
        let err = f.get_str("u32").unwrap_err().to_string();
        assert!(
            err.contains("`u32`") && err.contains("expected string, found u32"),
            "{err}"
        );
    }

    #[test]
    fn alignment_key_moves_tensor_data_and_declared_tensors_are_streamed() {
        let mut w = GgufWriter::new();
        w.add_metadata(ALIGNMENT_KEY, MetaValue::U32(256)).unwrap();
        w.add_tensor("a", &[3], GgmlType::F32, vec![0; 12]).unwrap();
        w.declare_tensor("b", &[32, 2], GgmlType::Q8_0).unwrap();
        let mut out = Vec::new();
        w.write(&mut out, |i, info, o| {
            assert_eq!((i, info.size), (1, 68));
            o.write_all(&[7u8; 68]).map_err(|e| invalid(e.to_string()))
        })
        .unwrap();
        let f = GgufFile::from_bytes(out).unwrap();
        assert_eq!(f.alignment(), 256);
        for t in f.tensors() {
            assert_eq!(t.offset % 256, 0, "{}", t.name);
        }
        assert_eq!(f.tensor_data(f.tensor("b").unwrap()), &[7u8; 68][..]);
    }

    #[test]
    fn writer_refuses_what_the_reader_would_reject() {
        let mut w = GgufWriter::new();
        assert!(w.add_metadata(ALIGNMENT_KEY, MetaValue::U32(48)).is_err());
        w.add_metadata("k", MetaValue::U8(1)).unwrap();
        assert!(w.add_metadata("k", MetaValue::U8(2)).is_err());
        assert!(
            w.add_tensor("t", &[33], GgmlType::Q4_0, vec![0; 18])
                .is_err()
        );
        assert!(
            w.add_tensor("t", &[32], GgmlType::Q4_0, vec![0; 17])
                .is_err()
        );
        assert!(w.add_tensor("t", &[], GgmlType::F32, vec![]).is_err());
        assert!(w.add_tensor("t", &[1, 0], GgmlType::F32, vec![]).is_err());
        w.add_tensor("t", &[32], GgmlType::Q4_0, vec![0; 18])
            .unwrap();
        assert!(w.add_tensor("t", &[1], GgmlType::F32, vec![0; 4]).is_err());
        w.declare_tensor("d", &[1], GgmlType::F32).unwrap();
        assert!(w.to_bytes().is_err());
        let short = w.write(Vec::new(), |_, _, o| {
            o.write_all(&[0; 3]).map_err(|e| invalid(e.to_string()))
        });
        assert!(short.is_err());
    }
}
