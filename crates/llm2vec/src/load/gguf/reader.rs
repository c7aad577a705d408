//! GGUF container parsing (versions 2 and 3): header, metadata key/values, tensor infos and data bounds.
//!
//! Every count and length read from the file is checked against the bytes that remain before anything is
//! allocated, so a hostile header fails with an error naming what is wrong instead of exhausting memory.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::dequant;
use super::types::GgmlType;
use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most four dimensions.
const MAX_DIMS: u32 = 4;
/// Arrays nested deeper than this are rejected (GGUF writers nest at most one level).
const MAX_ARRAY_DEPTH: usize = 8;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Array),
}

/// A metadata array, stored by element type.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    String(Vec<String>),
    Array(Vec<Array>),
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(v) => Some(v),
            _ => None,
        }
    }

    /// The GGUF name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "uint8",
            Value::I8(_) => "int8",
            Value::U16(_) => "uint16",
            Value::I16(_) => "int16",
            Value::U32(_) => "uint32",
            Value::I32(_) => "int32",
            Value::U64(_) => "uint64",
            Value::I64(_) => "int64",
            Value::F32(_) => "float32",
            Value::F64(_) => "float64",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(_) => "array",
        }
    }
}

impl Array {
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::F64(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One tensor's entry in the GGUF tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in GGUF order: innermost (contiguous) first, the reverse of PyTorch's shape.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the tensor data section.
    pub offset: u64,
    pub n_elements: usize,
    pub n_bytes: usize,
}

impl TensorInfo {
    /// The shape in row-major (PyTorch / Hugging Face) order: outermost first.
    pub fn shape(&self) -> Vec<usize> {
        // Every dim was checked to fit in usize while parsing.
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

enum Storage {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

/// A parsed GGUF file: metadata and tensor table, with the tensor bytes kept mapped (or owned).
pub struct GgufFile {
    path: PathBuf,
    storage: Storage,
    version: u32,
    metadata: Vec<(String, Value)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: usize,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Maps and parses the file at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; as with any mmap, the file must not be truncated while in use.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::from_storage(path.to_path_buf(), Storage::Mapped(map))
    }

    /// Parses a GGUF image held in memory (copied); errors name the file as `<memory>`.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        Self::from_storage(PathBuf::from("<memory>"), Storage::Owned(bytes.to_vec()))
    }

    fn from_storage(path: PathBuf, storage: Storage) -> Result<Self> {
        let bytes = match &storage {
            Storage::Mapped(m) => &m[..],
            Storage::Owned(v) => &v[..],
        };
        let h = parse_header(bytes).map_err(|msg| Error::format(&path, msg))?;
        Ok(GgufFile {
            path,
            storage,
            version: h.version,
            metadata: h.metadata,
            meta_index: h.meta_index,
            tensors: h.tensors,
            tensor_index: h.tensor_index,
            alignment: h.alignment,
            data_offset: h.data_offset,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Metadata key/values in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Where the tensor data section starts in the file.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    fn bytes(&self) -> &[u8] {
        match &self.storage {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// The tensor info named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of tensor `info` (bounds of this file's own tensors were checked while parsing).
    pub fn tensor_bytes(&self, info: &TensorInfo) -> Result<&[u8]> {
        let start = usize::try_from(info.offset).ok().and_then(|o| o.checked_add(self.data_offset));
        let range = start.and_then(|s| Some(s..s.checked_add(info.n_bytes)?));
        range
            .and_then(|r| self.bytes().get(r))
            .ok_or_else(|| Error::weight(&self.path, &info.name, "data lies outside the file"))
    }

    /// The tensor's values as f32, in row-major order of [`TensorInfo::shape`]. The file's pages that held
    /// them are released afterwards (read again from the file if needed).
    pub fn dequantize(&self, info: &TensorInfo) -> Result<Vec<f32>> {
        let bytes = self.tensor_bytes(info)?;
        let values = dequant::dequantize_raw(info.ggml_type, bytes, info.n_elements)
            .map_err(|msg| Error::weight(&self.path, &info.name, msg))?;
        if let Storage::Mapped(map) = &self.storage {
            let start = bytes.as_ptr() as usize - map.as_ptr() as usize;
            // SAFETY: DontNeed on a read-only file mapping only drops cached pages; later reads fault them back in.
            let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, bytes.len()) };
        }
        Ok(values)
    }
}

struct Header {
    version: u32,
    metadata: Vec<(String, Value)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: usize,
}

fn parse_header(bytes: &[u8]) -> Result<Header, String> {
    let mut cur = Cursor { bytes, pos: 0 };
    if cur.take(4, "magic")? != MAGIC {
        return Err("not a GGUF file (bad magic)".into());
    }
    let version = cur.u32("version")?;
    if version != 2 && version != 3 {
        return Err(format!("unsupported GGUF version {version} (supported: 2, 3)"));
    }
    let n_tensors = cur.u64("tensor count")?;
    let n_kv = cur.u64("metadata count")?;
    // A key/value takes at least 13 bytes (key length, value type, one byte of value).
    let n_kv = cur.bounded_count(n_kv, 13, "metadata count")?;
    let metadata = read_n(n_kv, |i| read_key_value(&mut cur, i))?;
    let meta_index = index(&metadata, |(key, _)| key, "metadata key")?;
    let alignment = alignment(&metadata)?;
    // A tensor info takes at least 24 bytes (name length, dim count, type, offset).
    let n_tensors = cur.bounded_count(n_tensors, 24, "tensor count")?;
    let tensors = read_n(n_tensors, |_| read_tensor_info(&mut cur, alignment))?;
    let tensor_index = index(&tensors, |t| &t.name, "tensor")?;
    let data_offset = align_up(cur.pos as u64, alignment).ok_or("tensor data offset overflows")?;
    for info in &tensors {
        check_data_bounds(info, data_offset, bytes.len())?;
    }
    let data_offset = usize::try_from(data_offset).map_err(|_| "tensor data offset overflows")?;
    Ok(Header { version, metadata, meta_index, tensors, tensor_index, alignment, data_offset })
}

/// Reads `n` items; memory grows with the items actually read, not with the (possibly hostile) count.
fn read_n<T>(n: usize, mut read: impl FnMut(usize) -> Result<T, String>) -> Result<Vec<T>, String> {
    let mut out = Vec::with_capacity(n.min(4096));
    for i in 0..n {
        out.push(read(i)?);
    }
    Ok(out)
}

/// name -> position, rejecting duplicate names.
fn index<T>(items: &[T], name: impl Fn(&T) -> &String, what: &str) -> Result<HashMap<String, usize>, String> {
    let mut map = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if map.insert(name(item).clone(), i).is_some() {
            return Err(format!("duplicate {what} `{}`", name(item)));
        }
    }
    Ok(map)
}

fn read_key_value(cur: &mut Cursor, i: usize) -> Result<(String, Value), String> {
    let key = cur.string(&format!("metadata key #{i}"))?;
    let ty = cur.u32(&format!("type of metadata `{key}`"))?;
    let value = read_value(cur, ty, &key, 0)?;
    Ok((key, value))
}

fn alignment(metadata: &[(String, Value)]) -> Result<u64, String> {
    let Some((_, value)) = metadata.iter().find(|(k, _)| k == "general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    match value.as_u64() {
        Some(a) if a.is_power_of_two() => Ok(a),
        _ => Err(format!("metadata `general.alignment`: {value:?} is not a power of two")),
    }
}

fn read_value(cur: &mut Cursor, ty: u32, key: &str, depth: usize) -> Result<Value, String> {
    Ok(match ty {
        0 => Value::U8(cur.u8(key)?),
        1 => Value::I8(cur.u8(key)? as i8),
        2 => Value::U16(u16::from_le_bytes(cur.array(key)?)),
        3 => Value::I16(i16::from_le_bytes(cur.array(key)?)),
        4 => Value::U32(cur.u32(key)?),
        5 => Value::I32(i32::from_le_bytes(cur.array(key)?)),
        6 => Value::F32(f32::from_le_bytes(cur.array(key)?)),
        7 => Value::Bool(cur.bool(key)?),
        8 => Value::String(cur.string(key)?),
        9 => Value::Array(read_array(cur, key, depth)?),
        10 => Value::U64(cur.u64(key)?),
        11 => Value::I64(i64::from_le_bytes(cur.array(key)?)),
        12 => Value::F64(f64::from_le_bytes(cur.array(key)?)),
        _ => return Err(format!("metadata `{key}`: unknown value type {ty}")),
    })
}

fn read_array(cur: &mut Cursor, key: &str, depth: usize) -> Result<Array, String> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(format!("metadata `{key}`: arrays nested deeper than {MAX_ARRAY_DEPTH}"));
    }
    let ty = cur.u32(key)?;
    let count = cur.u64(key)?;
    let min_size = match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => return Err(format!("metadata `{key}`: unknown array element type {ty}")),
    };
    let n = cur.bounded_count(count, min_size, &format!("metadata `{key}`: array length"))?;
    Ok(match ty {
        0 => Array::U8(cur.take(n, key)?.to_vec()),
        1 => Array::I8(cur.take(n, key)?.iter().map(|&b| b as i8).collect()),
        2 => Array::U16(cur.fixed(n, key, u16::from_le_bytes)?),
        3 => Array::I16(cur.fixed(n, key, i16::from_le_bytes)?),
        4 => Array::U32(cur.fixed(n, key, u32::from_le_bytes)?),
        5 => Array::I32(cur.fixed(n, key, i32::from_le_bytes)?),
        6 => Array::F32(cur.fixed(n, key, f32::from_le_bytes)?),
        7 => Array::Bool(read_n(n, |_| cur.bool(key))?),
        8 => Array::String(read_n(n, |_| cur.string(key))?),
        10 => Array::U64(cur.fixed(n, key, u64::from_le_bytes)?),
        11 => Array::I64(cur.fixed(n, key, i64::from_le_bytes)?),
        12 => Array::F64(cur.fixed(n, key, f64::from_le_bytes)?),
        _ => Array::Array(read_n(n, |_| read_array(cur, key, depth + 1))?),
    })
}

fn read_tensor_info(cur: &mut Cursor, alignment: u64) -> Result<TensorInfo, String> {
    let name = cur.string("tensor name")?;
    let ctx = |msg: String| format!("tensor `{name}`: {msg}");
    let n_dims = cur.u32("dimension count").map_err(ctx)?;
    if n_dims > MAX_DIMS {
        return Err(ctx(format!("{n_dims} dimensions (ggml allows at most {MAX_DIMS})")));
    }
    let dims = (0..n_dims).map(|_| cur.u64("dimension")).collect::<Result<Vec<_>, _>>().map_err(ctx)?;
    let type_id = cur.u32("type").map_err(ctx)?;
    let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| ctx(format!("unknown ggml type {type_id}")))?;
    let offset = cur.u64("offset").map_err(ctx)?;
    if !offset.is_multiple_of(alignment) {
        return Err(ctx(format!("data offset {offset} is not a multiple of the alignment {alignment}")));
    }
    let n_elements = element_count(&dims).ok_or_else(|| ctx(format!("shape {dims:?} overflows")))?;
    let inner = dims.first().copied().unwrap_or(1);
    if !inner.is_multiple_of(ggml_type.block_size() as u64) {
        return Err(ctx(format!(
            "first dimension {inner} is not a multiple of the {} block size {}",
            ggml_type.name(),
            ggml_type.block_size()
        )));
    }
    let n_bytes = ggml_type.bytes_for(n_elements).ok_or_else(|| ctx(format!("shape {dims:?} overflows")))?;
    Ok(TensorInfo { name, dims, ggml_type, offset, n_elements, n_bytes })
}

/// The product of the dims, if it fits in both usize and i64 (ggml's element count type).
fn element_count(dims: &[u64]) -> Option<usize> {
    let n = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))?;
    if n > i64::MAX as u64 {
        return None;
    }
    usize::try_from(n).ok()
}

fn check_data_bounds(info: &TensorInfo, data_offset: u64, file_len: usize) -> Result<(), String> {
    let end = data_offset.checked_add(info.offset).and_then(|s| s.checked_add(info.n_bytes as u64));
    match end {
        Some(end) if end <= file_len as u64 => Ok(()),
        _ => Err(format!(
            "tensor `{}`: data ({} bytes at offset {} of the data section starting at {data_offset}) \
             lies outside the file ({file_len} bytes)",
            info.name, info.n_bytes, info.offset
        )),
    }
}

fn align_up(pos: u64, alignment: u64) -> Option<u64> {
    Some(pos.checked_add(alignment - 1)? / alignment * alignment)
}

/// A bounds-checked little-endian reader over the file bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "truncated at byte {} reading {what}: need {n} bytes, {} left",
                self.pos,
                self.remaining()
            ));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn bool(&mut self, what: &str) -> Result<bool, String> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!("{what}: invalid bool byte {b}")),
        }
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let len = self.u64(what)?;
        let len = self.bounded_count(len, 1, &format!("{what}: string length"))?;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| format!("{what}: string is not valid UTF-8"))
    }

    /// `n` fixed-size little-endian values; the caller has bounded `n` by the remaining bytes.
    fn fixed<T, const N: usize>(&mut self, n: usize, what: &str, conv: fn([u8; N]) -> T) -> Result<Vec<T>, String> {
        let raw = self.take(n * N, what)?;
        Ok(raw
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                conv(a)
            })
            .collect())
    }

    /// `count` as usize, if `count` items of at least `min_size` bytes each can fit in what is left.
    fn bounded_count(&self, count: u64, min_size: usize, what: &str) -> Result<usize, String> {
        let fits =
            usize::try_from(count).ok().filter(|&c| c.checked_mul(min_size).is_some_and(|b| b <= self.remaining()));
        fits.ok_or_else(|| {
            format!(
                "{what} {count} at byte {} is impossible: only {} bytes are left in the file",
                self.pos,
                self.remaining()
            )
        })
    }
}
