//! Named weight tensors: read from safetensors files (single or sharded) and checked on lookup. `load` fills
//! them (from safetensors, GGUF or an adapter merge) and `model` builds its layers from them; they live outside
//! both so that `model` needs nothing from `load`. A tensor of a file is read (converted, dequantized, merged
//! with an adapter) only when the model takes it, and building takes each tensor out, so a tensor that the
//! model copies (fused projections, another dtype, 8-bit weights) is freed as soon as it is used: loading
//! needs little more than the model's own size.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Shape, Tensor};

use crate::error::{Error, Result};

/// Reads one tensor when it is first used.
pub type Read = Box<dyn FnOnce() -> Result<Tensor> + Send>;

/// A tensor of a set: read, or to be read when first used (its shape known beforehand).
enum Entry {
    Ready(Tensor),
    Deferred(Shape, Read),
}

impl Entry {
    fn shape(&self) -> &Shape {
        match self {
            Entry::Ready(t) => t.shape(),
            Entry::Deferred(shape, _) => shape,
        }
    }

    fn read(self) -> Result<Tensor> {
        match self {
            Entry::Ready(t) => Ok(t),
            Entry::Deferred(_, read) => read(),
        }
    }
}

/// A set of named tensors and the file they came from (for error messages).
pub struct Weights {
    tensors: RefCell<HashMap<String, Entry>>,
    source: PathBuf,
}

impl Weights {
    pub fn new(tensors: HashMap<String, Tensor>, source: impl Into<PathBuf>) -> Self {
        let tensors = tensors.into_iter().map(|(name, t)| (name, Entry::Ready(t))).collect();
        Self { tensors: RefCell::new(tensors), source: source.into() }
    }

    /// A set of tensors, each of `shape`, that `read` reads when the model takes it.
    pub fn deferred(tensors: impl IntoIterator<Item = (String, Shape, Read)>, source: impl Into<PathBuf>) -> Self {
        let tensors = tensors.into_iter().map(|(name, shape, read)| (name, Entry::Deferred(shape, read))).collect();
        Self { tensors: RefCell::new(tensors), source: source.into() }
    }

    /// The tensors of `model.safetensors` or of the shards named by `model.safetensors.index.json` in `dir`,
    /// each read when the model takes it.
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
        let mut tensors = Vec::new();
        for file in &files {
            tensors.extend(safetensors_file(file, device)?);
        }
        Ok(Self::deferred(tensors, if files.len() == 1 { files[0].clone() } else { index }))
    }

    pub fn source(&self) -> &Path {
        &self.source
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.borrow().contains_key(name)
    }

    /// The shape of the tensor `name`, without reading it.
    pub fn shape(&self, name: &str) -> Result<Shape> {
        let tensors = self.tensors.borrow();
        let entry = tensors.get(name).ok_or_else(|| Error::weight(&self.source, name, "missing"))?;
        Ok(entry.shape().clone())
    }

    /// Removes the tensor `name`, checked against `shape` and converted to `dtype`.
    pub fn take(&self, name: &str, shape: impl Into<Shape>, dtype: DType) -> Result<Tensor> {
        let shape = shape.into();
        let entry = self.remove(name)?;
        if entry.shape() != &shape {
            return Err(Error::weight(
                &self.source,
                name,
                format!("shape {:?} in the file, the config implies {:?}", entry.shape().dims(), shape.dims()),
            ));
        }
        Ok(entry.read()?.to_dtype(dtype)?)
    }

    /// The tensor `name` as stored, left in place (read now if it was not).
    pub fn get(&self, name: &str) -> Result<Tensor> {
        let t = self.remove(name)?.read()?;
        self.tensors.borrow_mut().insert(name.to_string(), Entry::Ready(t.clone()));
        Ok(t)
    }

    pub fn insert(&mut self, name: String, tensor: Tensor) {
        self.tensors.get_mut().insert(name, Entry::Ready(tensor));
    }

    /// Replaces the tensor `name` by `change` of it, applied when the tensor is read (its shape unchanged).
    pub fn change(&mut self, name: &str, change: impl FnOnce(Tensor) -> Result<Tensor> + Send + 'static) -> Result<()> {
        let entry = self.remove(name)?;
        let shape = entry.shape().clone();
        self.tensors
            .get_mut()
            .insert(name.to_string(), Entry::Deferred(shape, Box::new(move || change(entry.read()?))));
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<Entry> {
        self.tensors.borrow_mut().remove(name).ok_or_else(|| Error::weight(&self.source, name, "missing"))
    }

    /// The same tensors, each name with `prefix` before it.
    pub fn prefixed(self, prefix: &str) -> Self {
        let tensors = self.tensors.into_inner().into_iter().map(|(name, entry)| (format!("{prefix}{name}"), entry));
        Self { tensors: RefCell::new(tensors.collect()), source: self.source }
    }

    /// Every tensor left, by name, read.
    pub fn into_tensors(self) -> Result<HashMap<String, Tensor>> {
        self.tensors.into_inner().into_iter().map(|(name, entry)| Ok((name, entry.read()?))).collect()
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

/// The tensors of one safetensors file, each with its shape and how to read it. The header is checked
/// now; a tensor's dtype and values when it is read, with errors naming the file and the tensor. The file is
/// mapped, and the pages of each tensor are released once it is copied.
fn safetensors_file(path: &Path, device: &Device) -> Result<Vec<(String, Shape, Read)>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only; as with any mmap, the file must not be truncated while in use.
    let mmap = Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?);
    let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&mmap)
        .map_err(|e| Error::format(path, format!("invalid safetensors: {e}")))?;
    let data_start = 8 + header_len;
    let tensors = metadata.tensors().into_iter().map(|(name, info)| {
        let (begin, end) = (data_start + info.data_offsets.0, data_start + info.data_offsets.1);
        let (mmap, path, device) = (Arc::clone(&mmap), path.to_path_buf(), device.clone());
        let (dtype, shape) = (info.dtype, info.shape.clone());
        let read_name = name.clone();
        let read: Read = Box::new(move || {
            let tensor = to_tensor(&read_name, dtype, &shape, &mmap[begin..end], &device)
                .map_err(|msg| Error::format(&path, msg))?;
            // SAFETY: DontNeed on a read-only file mapping only drops cached pages; later reads fault them back in.
            let _ = unsafe { mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, begin, end - begin) };
            Ok(tensor)
        });
        (name, Shape::from(info.shape.clone()), read)
    });
    Ok(tensors.collect())
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A set with one deferred `[2, 3]` tensor of ones under `w`, and the count of its reads.
    fn one_deferred() -> (Weights, Arc<AtomicUsize>) {
        let reads = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&reads);
        let read: Read = Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(Tensor::ones((2, 3), DType::F32, &Device::Cpu)?)
        });
        (Weights::deferred([("w".to_string(), Shape::from((2, 3)), read)], "model.gguf"), reads)
    }

    #[test]
    fn a_deferred_tensor_is_read_once_when_taken() {
        let (weights, reads) = one_deferred();
        assert_eq!(weights.shape("w").unwrap().dims(), [2, 3]);
        assert_eq!(reads.load(Ordering::SeqCst), 0, "the shape needs no read");
        let err = weights.take("w", (3, 2), DType::F32).unwrap_err().to_string();
        assert!(err.contains("model.gguf") && err.contains("[2, 3]") && err.contains("[3, 2]"), "{err}");
        assert_eq!(reads.load(Ordering::SeqCst), 0, "a wrong shape is refused unread");

        let (weights, reads) = one_deferred();
        assert_eq!(weights.get("w").unwrap().dims(), [2, 3]);
        let t = weights.take("w", (2, 3), DType::F64).unwrap();
        assert_eq!((t.dtype(), reads.load(Ordering::SeqCst)), (DType::F64, 1));
        assert!(!weights.contains("w"));
    }

    #[test]
    fn changes_apply_in_order_when_read() {
        let (mut weights, reads) = one_deferred();
        weights.change("w", |t| Ok((t * 3.0)?)).unwrap();
        weights.change("w", |t| Ok((t + 1.0)?)).unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 0);
        let t = weights.prefixed("model.").take("model.w", (2, 3), DType::F32).unwrap();
        assert_eq!(t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [4.0; 6]);
        assert!(Weights::new(HashMap::new(), "x").change("w", Ok).unwrap_err().to_string().contains("missing"));
    }
}
