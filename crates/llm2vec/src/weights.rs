//! Named weight tensors: read from safetensors files (single or sharded) and checked on lookup. `load` fills
//! them (from safetensors, GGUF or an adapter merge) and `model` builds its layers from them; they live outside
//! both so that `model` needs nothing from `load`. Building a model takes each tensor out, so a tensor that the model copies (fused projections,
//! another dtype) is freed as soon as it is used and loading needs little more than the model's size.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Shape, Tensor};

use crate::error::{Error, Result};

/// A set of named tensors and the file they came from (for error messages).
pub struct Weights {
    tensors: RefCell<HashMap<String, Tensor>>,
    source: PathBuf,
}

impl Weights {
    pub fn new(tensors: HashMap<String, Tensor>, source: impl Into<PathBuf>) -> Self {
        Self { tensors: RefCell::new(tensors), source: source.into() }
    }

    /// Reads `model.safetensors` or the shards named by `model.safetensors.index.json` in `dir`.
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files = if single.exists() {
            vec![single]
        } else if index.exists() {
            shard_files(&index)?
        } else {
            return Err(Error::format(dir, "no model.safetensors or model.safetensors.index.json"));
        };
        let mut tensors = HashMap::new();
        for file in &files {
            tensors.extend(read_safetensors(file, device)?);
        }
        Ok(Self::new(tensors, if files.len() == 1 { files[0].clone() } else { index }))
    }

    pub fn source(&self) -> &Path {
        &self.source
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.borrow().contains_key(name)
    }

    /// Removes the tensor `name`, checked against `shape` and converted to `dtype`.
    pub fn take(&self, name: &str, shape: impl Into<Shape>, dtype: DType) -> Result<Tensor> {
        let shape = shape.into();
        let t = self.tensors.borrow_mut().remove(name).ok_or_else(|| Error::weight(&self.source, name, "missing"))?;
        if t.shape() != &shape {
            return Err(Error::weight(
                &self.source,
                name,
                format!("shape {:?} in the file, the config implies {:?}", t.dims(), shape.dims()),
            ));
        }
        Ok(t.to_dtype(dtype)?)
    }

    /// The tensor `name` as stored, left in place.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        self.tensors.borrow().get(name).cloned().ok_or_else(|| Error::weight(&self.source, name, "missing"))
    }

    pub fn insert(&mut self, name: String, tensor: Tensor) {
        self.tensors.get_mut().insert(name, tensor);
    }

    /// Every tensor left, by name.
    pub fn into_tensors(self) -> HashMap<String, Tensor> {
        self.tensors.into_inner()
    }
}

fn shard_files(index: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|source| Error::json(index, source))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::format(index, "missing object `weight_map`"))?;
    let mut names: Vec<&str> = map.values().filter_map(|v| v.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let dir = index.parent().unwrap_or(Path::new("."));
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// Reads every tensor of one safetensors file; truncated or malformed files give an error naming the file.
/// The file is mapped, and the pages of each tensor are released once it is copied, so reading needs little
/// more memory than the tensors themselves.
pub fn read_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only and dropped before returning; the file is not expected to change meanwhile.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&mmap)
        .map_err(|e| Error::format(path, format!("invalid safetensors: {e}")))?;
    let data_start = 8 + header_len;
    let mut out = HashMap::new();
    for (name, info) in metadata.tensors() {
        let (begin, end) = (data_start + info.data_offsets.0, data_start + info.data_offsets.1);
        let tensor = to_tensor(&name, info.dtype, &info.shape, &mmap[begin..end], device)
            .map_err(|msg| Error::format(path, msg))?;
        // SAFETY: DontNeed on a read-only file mapping only drops cached pages; later reads fault them back in.
        let _ = unsafe { mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, begin, end - begin) };
        out.insert(name, tensor);
    }
    Ok(out)
}

fn to_tensor(
    name: &str,
    dtype: safetensors::Dtype,
    shape: &[usize],
    bytes: &[u8],
    device: &Device,
) -> std::result::Result<Tensor, String> {
    let dtype = match dtype {
        safetensors::Dtype::F32 => DType::F32,
        safetensors::Dtype::F16 => DType::F16,
        safetensors::Dtype::BF16 => DType::BF16,
        safetensors::Dtype::F64 => DType::F64,
        // Integer buffers (BERT's `position_ids`) are read so that the file loads; no model uses them.
        safetensors::Dtype::I64 => DType::I64,
        safetensors::Dtype::U32 => DType::U32,
        safetensors::Dtype::U8 => DType::U8,
        other => return Err(format!("tensor `{name}`: unsupported dtype {other:?}")),
    };
    if let Some(i) = first_non_finite(dtype, bytes) {
        return Err(format!("tensor `{name}`: {}", non_finite(i)));
    }
    Tensor::from_raw_buffer(bytes, dtype, shape, device).map_err(|e| format!("tensor `{name}`: {e}"))
}

/// Parses safetensors bytes into tensors; errors are plain messages for the caller to place.
pub fn parse_safetensors(bytes: &[u8], device: &Device) -> std::result::Result<HashMap<String, Tensor>, String> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| format!("invalid safetensors: {e}"))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let t = to_tensor(&name, view.dtype(), view.shape(), view.data(), device)?;
        out.insert(name, t);
    }
    Ok(out)
}

/// What is wrong with a tensor whose element `i` is NaN or infinite.
pub(crate) fn non_finite(i: usize) -> String {
    format!("element {i} is NaN or infinite; the weights are corrupt")
}

/// The index of the first NaN or infinite value of little-endian float `bytes`, if any (integer dtypes have none).
pub(crate) fn first_non_finite(dtype: DType, bytes: &[u8]) -> Option<usize> {
    match dtype {
        DType::F32 => first_match(bytes.as_chunks::<4>().0, |w| u32::from_le_bytes(*w) & 0x7f80_0000 == 0x7f80_0000),
        DType::F16 => first_match(bytes.as_chunks::<2>().0, |w| u16::from_le_bytes(*w) & 0x7c00 == 0x7c00),
        DType::BF16 => first_match(bytes.as_chunks::<2>().0, |w| u16::from_le_bytes(*w) & 0x7f80 == 0x7f80),
        DType::F64 => first_match(bytes.as_chunks::<8>().0, |w| !f64::from_le_bytes(*w).is_finite()),
        _ => None,
    }
}

/// The index of the first item that `hit` picks. Blocks are first checked without branching (so the check
/// runs at memory speed), and only a block with a hit is searched.
pub(crate) fn first_match<T>(items: &[T], hit: impl Fn(&T) -> bool) -> Option<usize> {
    const BLOCK: usize = 4096;
    items.chunks(BLOCK).enumerate().find_map(|(n, block)| {
        let any = block.iter().fold(false, |acc, item| acc | hit(item));
        any.then(|| n * BLOCK + block.iter().position(&hit).unwrap_or(0))
    })
}
