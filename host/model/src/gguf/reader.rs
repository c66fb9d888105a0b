//! Parsing and validating a GGUF file (v2 or v3, little-endian).
//!
//! Layout: `"GGUF"`, u32 version, u64 tensor count, u64 metadata count, the metadata
//! key/value pairs, the tensor infos (name, u32 n_dims, u64 dims `ne[0]` first, u32 ggml type,
//! u64 offset relative to the data section), padding to `general.alignment`, then the data
//! section. Every count, length, shape and offset is checked before use; see [`super::limits`].

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use super::cursor::Cursor;
use super::limits::*;
use super::tensor::{TensorInfo, data_size};
use super::value::{MetaArray, MetaValue, ValueType};
use crate::quant::GgmlType;
use orcd_device::EngineError;

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";

/// The metadata key that sets the data alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// The bytes of a GGUF file: a read-only memory map, or an owned buffer.
enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A validated GGUF file: its metadata, its tensor table, and the bytes the tensors live in.
pub struct GgufFile {
    storage: Storage,
    version: u32,
    alignment: u64,
    data_start: u64,
    metadata: Vec<(String, MetaValue)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("len", &self.bytes().len())
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Map and validate the file at `path`.
    pub fn open(path: &Path) -> Result<GgufFile, EngineError> {
        let io = |source| EngineError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and private to this process. Another process truncating
        // or rewriting the model file while it is loaded is outside what we guard against
        // (as for every mmap-based model loader).
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        GgufFile::parse(Storage::Mapped(map))
    }

    /// Validate a GGUF file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, EngineError> {
        GgufFile::parse(Storage::Owned(bytes))
    }

    fn parse(storage: Storage) -> Result<GgufFile, EngineError> {
        let header = parse_header(storage.bytes())?;
        Ok(GgufFile {
            storage,
            version: header.version,
            alignment: header.alignment,
            data_start: header.data_start,
            metadata: header.metadata,
            meta_index: header.meta_index,
            tensors: header.tensors,
            tensor_index: header.tensor_index,
        })
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The alignment of tensor data (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset of the data section (tensor offsets in the file are relative to it).
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// All metadata in file order.
    pub fn metadata(&self) -> &[(String, MetaValue)] {
        &self.metadata
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn require(&self, key: &str) -> Result<&MetaValue, EngineError> {
        self.get(key).ok_or_else(|| bad_meta(key, "missing"))
    }

    fn integer<T: TryFrom<i128>>(&self, key: &str, want: &str) -> Result<T, EngineError> {
        let v = self.require(key)?;
        let Some(i) = v.as_i128() else {
            return Err(wrong_type(key, want, v));
        };
        T::try_from(i).map_err(|_| bad_meta(key, format!("value {i} does not fit {want}")))
    }

    /// `key` as a u32; any integer type whose value fits is accepted.
    pub fn get_u32(&self, key: &str) -> Result<u32, EngineError> {
        self.integer(key, "u32")
    }

    /// `key` as a u64; any integer type whose value fits is accepted.
    pub fn get_u64(&self, key: &str) -> Result<u64, EngineError> {
        self.integer(key, "u64")
    }

    /// `key` as an f32 (stored as f32 or f64).
    pub fn get_f32(&self, key: &str) -> Result<f32, EngineError> {
        match self.require(key)? {
            MetaValue::F32(v) => Ok(*v),
            MetaValue::F64(v) => Ok(*v as f32),
            v => Err(wrong_type(key, "f32", v)),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, EngineError> {
        match self.require(key)? {
            MetaValue::Bool(v) => Ok(*v),
            v => Err(wrong_type(key, "bool", v)),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<&str, EngineError> {
        match self.require(key)? {
            MetaValue::Str(v) => Ok(v),
            v => Err(wrong_type(key, "string", v)),
        }
    }

    pub fn get_str_array(&self, key: &str) -> Result<&[String], EngineError> {
        match self.require(key)? {
            MetaValue::Array(MetaArray::Str(v)) => Ok(v),
            v => Err(wrong_type(key, "array of string", v)),
        }
    }

    pub fn get_f32_array(&self, key: &str) -> Result<&[f32], EngineError> {
        match self.require(key)? {
            MetaValue::Array(MetaArray::F32(v)) => Ok(v),
            v => Err(wrong_type(key, "array of f32", v)),
        }
    }

    pub fn get_i32_array(&self, key: &str) -> Result<&[i32], EngineError> {
        match self.require(key)? {
            MetaValue::Array(MetaArray::I32(v)) => Ok(v),
            v => Err(wrong_type(key, "array of i32", v)),
        }
    }

    /// [`GgufFile::get_u32`], with `Ok(None)` when the key is absent.
    pub fn get_u32_opt(&self, key: &str) -> Result<Option<u32>, EngineError> {
        self.optional(key, Self::get_u32)
    }

    /// [`GgufFile::get_f32`], with `Ok(None)` when the key is absent.
    pub fn get_f32_opt(&self, key: &str) -> Result<Option<f32>, EngineError> {
        self.optional(key, Self::get_f32)
    }

    /// [`GgufFile::get_bool`], with `Ok(None)` when the key is absent.
    pub fn get_bool_opt(&self, key: &str) -> Result<Option<bool>, EngineError> {
        self.optional(key, Self::get_bool)
    }

    /// [`GgufFile::get_str`], with `Ok(None)` when the key is absent.
    pub fn get_str_opt(&self, key: &str) -> Result<Option<&str>, EngineError> {
        self.optional(key, Self::get_str)
    }

    fn optional<'s, T>(
        &'s self,
        key: &str,
        get: impl FnOnce(&'s Self, &str) -> Result<T, EngineError>,
    ) -> Result<Option<T>, EngineError> {
        if self.get(key).is_none() {
            return Ok(None);
        }
        get(self, key).map(Some)
    }

    /// `general.architecture`, e.g. "llama" or "gemma3".
    pub fn architecture(&self) -> Result<&str, EngineError> {
        self.get_str("general.architecture")
    }

    /// All tensors in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`, if present.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The `t.size` bytes of tensor `t` (a tensor of this file; its bounds were checked on
    /// open). A [`TensorInfo`] from another file that does not fit this one gives an empty slice.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let start = t.offset as usize;
        let end = start.saturating_add(t.size as usize);
        self.bytes().get(start..end).unwrap_or(&[])
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }
}

fn bad_meta(key: &str, problem: impl Into<String>) -> EngineError {
    EngineError::BadMetadata {
        key: key.to_string(),
        problem: problem.into(),
    }
}

fn wrong_type(key: &str, want: &str, found: &MetaValue) -> EngineError {
    bad_meta(
        key,
        format!("expected {want}, found {}", found.type_description()),
    )
}

/// Everything [`GgufFile`] holds besides the bytes.
struct Header {
    version: u32,
    alignment: u64,
    data_start: u64,
    metadata: Vec<(String, MetaValue)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

/// A tensor info as declared, before its offset is checked against the data section.
struct RawTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    rel_offset: u64,
    size: u64,
}

fn parse_header(bytes: &[u8]) -> Result<Header, EngineError> {
    let mut cur = Cursor::new(bytes);
    let field = |name: &str| {
        let name = name.to_string();
        move |e: String| EngineError::gguf(format!("header field `{name}`: {e}"))
    };

    let magic = cur.take(4).map_err(field("magic"))?;
    if magic != GGUF_MAGIC {
        return Err(EngineError::gguf(format!(
            "bad magic {magic:02x?}, expected \"GGUF\""
        )));
    }
    let version = cur.u32().map_err(field("version"))?;
    if !(2..=3).contains(&version) {
        return Err(EngineError::gguf(format!(
            "unsupported version {version} (2 and 3 are supported)"
        )));
    }
    let n_tensors = cur.u64().map_err(field("tensor_count"))?;
    if n_tensors > MAX_TENSORS {
        return Err(EngineError::gguf(format!(
            "tensor_count {n_tensors} is over the cap of {MAX_TENSORS}"
        )));
    }
    let n_kv = cur.u64().map_err(field("metadata_kv_count"))?;
    if n_kv > MAX_METADATA {
        return Err(EngineError::gguf(format!(
            "metadata_kv_count {n_kv} is over the cap of {MAX_METADATA}"
        )));
    }

    // Metadata. Each pair takes at least 8 (key length) + 4 (type) + 1 bytes.
    cur.ensure(n_kv, 13).map_err(field("metadata"))?;
    let mut metadata = Vec::with_capacity(n_kv as usize);
    let mut meta_index = HashMap::with_capacity(n_kv as usize);
    for i in 0..n_kv {
        let key = cur
            .string(MAX_STRING_LEN)
            .map_err(|e| EngineError::gguf(format!("metadata key #{i}: {e}")))?;
        let value = read_value(&mut cur)
            .map_err(|e| EngineError::gguf(format!("metadata `{key}`: {e}")))?;
        if meta_index.insert(key.clone(), metadata.len()).is_some() {
            return Err(EngineError::gguf(format!("duplicate metadata key `{key}`")));
        }
        metadata.push((key, value));
    }

    let alignment = match meta_index.get(ALIGNMENT_KEY) {
        None => DEFAULT_ALIGNMENT,
        Some(&i) => {
            let v = &metadata[i].1;
            let a = v.as_i128().ok_or_else(|| {
                EngineError::gguf(format!(
                    "`{ALIGNMENT_KEY}` must be an integer, found {}",
                    v.type_description()
                ))
            })?;
            if a <= 0 || a > MAX_ALIGNMENT as i128 || (a as u64) & (a as u64 - 1) != 0 {
                return Err(EngineError::gguf(format!(
                    "`{ALIGNMENT_KEY}` is {a}; it must be a power of two no larger than {MAX_ALIGNMENT}"
                )));
            }
            a as u64
        }
    };

    // Tensor infos. Each takes at least 8 (name) + 4 (n_dims) + 8 (one dim) + 4 + 8 bytes.
    cur.ensure(n_tensors, 32).map_err(field("tensor_infos"))?;
    let mut raw = Vec::with_capacity(n_tensors as usize);
    let mut tensor_index = HashMap::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let t = read_tensor_info(&mut cur, i)?;
        if tensor_index.insert(t.name.clone(), raw.len()).is_some() {
            return Err(EngineError::gguf(format!(
                "duplicate tensor name `{}`",
                t.name
            )));
        }
        raw.push(t);
    }

    let data_start = (cur.pos() as u64)
        .checked_next_multiple_of(alignment)
        .ok_or_else(|| EngineError::gguf("data section offset overflows"))?;
    let tensors = place_tensors(raw, data_start, alignment, bytes.len() as u64)?;

    Ok(Header {
        version,
        alignment,
        data_start,
        metadata,
        meta_index,
        tensors,
        tensor_index,
    })
}

/// One metadata value: u32 type id, then the value.
fn read_value(cur: &mut Cursor) -> Result<MetaValue, String> {
    let id = cur.u32()?;
    let ty = ValueType::from_u32(id).ok_or_else(|| format!("unknown value type {id}"))?;
    read_typed(cur, ty)
}

fn read_typed(cur: &mut Cursor, ty: ValueType) -> Result<MetaValue, String> {
    Ok(match ty {
        ValueType::U8 => MetaValue::U8(cur.u8()?),
        ValueType::I8 => MetaValue::I8(cur.u8()? as i8),
        ValueType::U16 => MetaValue::U16(cur.u16()?),
        ValueType::I16 => MetaValue::I16(cur.u16()? as i16),
        ValueType::U32 => MetaValue::U32(cur.u32()?),
        ValueType::I32 => MetaValue::I32(cur.u32()? as i32),
        ValueType::U64 => MetaValue::U64(cur.u64()?),
        ValueType::I64 => MetaValue::I64(cur.u64()? as i64),
        ValueType::F32 => MetaValue::F32(f32::from_bits(cur.u32()?)),
        ValueType::F64 => MetaValue::F64(f64::from_bits(cur.u64()?)),
        ValueType::Bool => MetaValue::Bool(read_bool(cur)?),
        ValueType::Str => MetaValue::Str(cur.string(MAX_STRING_LEN)?),
        ValueType::Array => MetaValue::Array(read_array(cur, 1)?),
    })
}

fn read_bool(cur: &mut Cursor) -> Result<bool, String> {
    match cur.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(format!("bool byte {b} is neither 0 nor 1")),
    }
}

/// An array header (u32 element type, u64 count) and its elements; `depth` counts nesting,
/// 1 for a top-level array.
fn read_array(cur: &mut Cursor, depth: usize) -> Result<MetaArray, String> {
    if depth > MAX_ARRAY_DEPTH {
        return Err(format!(
            "arrays nested {depth} deep, over the cap of {MAX_ARRAY_DEPTH}"
        ));
    }
    let id = cur.u32()?;
    let ty = ValueType::from_u32(id).ok_or_else(|| format!("unknown array element type {id}"))?;
    let n = cur.u64()?;
    if n > MAX_ARRAY_LEN {
        return Err(format!(
            "array length {n} is over the cap of {MAX_ARRAY_LEN}"
        ));
    }
    cur.ensure(n, ty.min_encoded_len())
        .map_err(|e| format!("array of {n} {} runs past the end: {e}", ty.name()))?;
    let n = n as usize;

    /// Fixed-size elements: one bounds check, then decode the slice in place.
    fn fixed<T, const N: usize>(
        cur: &mut Cursor,
        n: usize,
        decode: fn([u8; N]) -> T,
    ) -> Result<Vec<T>, String> {
        let bytes = cur.take((n * N) as u64)?;
        Ok(bytes
            .chunks_exact(N)
            .map(|c| decode(c.try_into().expect("chunks_exact yields N bytes")))
            .collect())
    }

    Ok(match ty {
        ValueType::U8 => MetaArray::U8(cur.take(n as u64)?.to_vec()),
        ValueType::I8 => MetaArray::I8(fixed(cur, n, |b: [u8; 1]| b[0] as i8)?),
        ValueType::U16 => MetaArray::U16(fixed(cur, n, u16::from_le_bytes)?),
        ValueType::I16 => MetaArray::I16(fixed(cur, n, i16::from_le_bytes)?),
        ValueType::U32 => MetaArray::U32(fixed(cur, n, u32::from_le_bytes)?),
        ValueType::I32 => MetaArray::I32(fixed(cur, n, i32::from_le_bytes)?),
        ValueType::U64 => MetaArray::U64(fixed(cur, n, u64::from_le_bytes)?),
        ValueType::I64 => MetaArray::I64(fixed(cur, n, i64::from_le_bytes)?),
        ValueType::F32 => MetaArray::F32(fixed(cur, n, f32::from_le_bytes)?),
        ValueType::F64 => MetaArray::F64(fixed(cur, n, f64::from_le_bytes)?),
        ValueType::Bool => {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                v.push(read_bool(cur).map_err(|e| format!("element {i}: {e}"))?);
            }
            MetaArray::Bool(v)
        }
        ValueType::Str => {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                v.push(
                    cur.string(MAX_STRING_LEN)
                        .map_err(|e| format!("element {i}: {e}"))?,
                );
            }
            MetaArray::Str(v)
        }
        ValueType::Array => {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                v.push(read_array(cur, depth + 1).map_err(|e| format!("element {i}: {e}"))?);
            }
            MetaArray::Array(v)
        }
    })
}

fn read_tensor_info(cur: &mut Cursor, index: u64) -> Result<RawTensor, EngineError> {
    let name = cur
        .string(MAX_TENSOR_NAME_LEN)
        .map_err(|e| EngineError::gguf(format!("tensor #{index} name: {e}")))?;
    let err = |e: String| EngineError::gguf(format!("tensor `{name}`: {e}"));

    let n_dims = cur.u32().map_err(err)?;
    if !(1..=MAX_DIMS).contains(&n_dims) {
        return Err(err(format!(
            "{n_dims} dimensions; 1 to {MAX_DIMS} are supported"
        )));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(cur.u64().map_err(err)?);
    }
    let ty_id = cur.u32().map_err(err)?;
    let rel_offset = cur.u64().map_err(err)?;

    let ty = GgmlType::from_u32(ty_id).ok_or_else(|| EngineError::UnsupportedTensorType {
        tensor: name.clone(),
        ty: ty_id,
    })?;
    let size = data_size(&dims, ty).map_err(err)?;
    Ok(RawTensor {
        name,
        dims,
        ty,
        rel_offset,
        size,
    })
}

/// Check each tensor's offset (aligned, inside the file) and that no two tensors overlap.
fn place_tensors(
    raw: Vec<RawTensor>,
    data_start: u64,
    alignment: u64,
    file_len: u64,
) -> Result<Vec<TensorInfo>, EngineError> {
    let mut tensors = Vec::with_capacity(raw.len());
    for t in raw {
        let err = |e: String| EngineError::gguf(format!("tensor `{}`: {e}", t.name));
        if !t.rel_offset.is_multiple_of(alignment) {
            return Err(err(format!(
                "data offset {} is not aligned to {alignment}",
                t.rel_offset
            )));
        }
        let offset = data_start.checked_add(t.rel_offset);
        let end = offset.and_then(|o| o.checked_add(t.size));
        match (offset, end) {
            (Some(offset), Some(end)) if end <= file_len => tensors.push(TensorInfo {
                name: t.name,
                dims: t.dims,
                ty: t.ty,
                offset,
                size: t.size,
            }),
            _ => {
                return Err(err(format!(
                    "data ({} bytes at data offset {}) extends past the end of the file ({file_len} bytes, data section at {data_start})",
                    t.size, t.rel_offset
                )));
            }
        }
    }
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by_key(|&i| tensors[i].offset);
    for pair in order.windows(2) {
        let (a, b) = (&tensors[pair[0]], &tensors[pair[1]]);
        if a.offset + a.size > b.offset {
            return Err(EngineError::gguf(format!(
                "tensors `{}` and `{}` overlap (bytes {}..{} and {}..{})",
                a.name,
                b.name,
                a.offset,
                a.offset + a.size,
                b.offset,
                b.offset + b.size
            )));
        }
    }
    Ok(tensors)
}
