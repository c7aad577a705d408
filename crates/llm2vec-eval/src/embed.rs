//! Encoding for evaluation: the [`TextEncoder`] seam (an llm2vec [`Encoder`], or a stand-in in tests),
//! its fingerprint, and the [`Embedder`] that deduplicates inputs, serves them from the cache and
//! counts what it really encoded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use llm2vec::{Encoder, Input, Options};
use serde_json::{json, Value};

use crate::cache::{self, Cache, Key};
use crate::error::{Error, Result};

/// Something that turns (instruction, text) inputs into rows of `dim` floats, in input order.
pub trait TextEncoder {
    /// Changes whenever the embeddings could: model files, adapters, settings.
    fn fingerprint(&self) -> &str;
    /// What the result files say about the model and settings.
    fn description(&self) -> &Value;
    fn dim(&self) -> usize;
    /// Flat rows, `inputs.len() * dim()` values.
    fn encode(&self, inputs: &[Input]) -> Result<Vec<f32>>;
}

/// An llm2vec encoder with its fingerprint.
pub struct LlmEncoder {
    encoder: Encoder,
    fingerprint: String,
    description: Value,
}

impl LlmEncoder {
    /// Loads `model` with `options` (see [`Encoder::from_pretrained`]).
    pub fn load(model: &str, options: Options) -> Result<Self> {
        let path = llm2vec::load::resolve(model)?;
        let (adapters, dtype, device) = (options.adapters.clone(), options.dtype, options.device.clone());
        let encoder = Encoder::from_pretrained(model, options)?;
        let s = encoder.settings();
        let description = json!({
            "name": model,
            "path": path,
            "model_type": encoder.model_type(),
            "adapters": adapters,
            "settings": {
                "attention": format!("{:?}", s.attention).to_lowercase(),
                "pooling": s.pooling.name(),
                "max_length": s.max_length,
                "doc_max_length": s.doc_max_length,
                "skip_instruction": s.skip_instruction,
                "normalize": s.normalize,
                "dtype": dtype.as_str(),
                "device": format!("{:?}", device.location()),
            },
        });
        let files: Vec<Value> = std::iter::once(path.as_path()).chain(adapters.iter().map(PathBuf::as_path)).map(file_stats).collect();
        let fingerprint = json!({ "description": description, "files": files }).to_string();
        Ok(Self { encoder, fingerprint, description })
    }
}

/// Canonical path, size and modification time of a file, or of each file directly in a folder.
fn file_stats(path: &Path) -> Value {
    let stat = |p: &Path| {
        let meta = std::fs::metadata(p).ok();
        let modified = meta.as_ref().and_then(|m| m.modified().ok()).and_then(|t| t.duration_since(UNIX_EPOCH).ok());
        json!({
            "path": std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()),
            "size": meta.as_ref().map(|m| m.len()),
            "modified_ns": modified.map(|d| d.as_nanos().to_string()),
        })
    };
    if !path.is_dir() {
        return stat(path);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    files.sort();
    Value::Array(files.iter().map(|p| stat(p)).collect())
}

impl TextEncoder for LlmEncoder {
    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn description(&self) -> &Value {
        &self.description
    }

    fn dim(&self) -> usize {
        self.encoder.dim()
    }

    fn encode(&self, inputs: &[Input]) -> Result<Vec<f32>> {
        Ok(self.encoder.encode(inputs)?.data)
    }
}

/// Names the text an encoder error is about (the encoder counts inputs of the failing call from 1).
fn locate(e: Error, label: &str, batch: &[Input]) -> Error {
    let Error::Encoder(llm2vec::Error::Input(msg)) = &e else { return e };
    let index = msg.strip_prefix("input ").and_then(|rest| rest.split(':').next()).and_then(|n| n.parse::<usize>().ok());
    match index.and_then(|n| batch.get(n.wrapping_sub(1))) {
        Some(input) => {
            let text: String = input.text.chars().take(80).collect();
            let detail = msg.split_once(": ").map_or(msg.as_str(), |(_, d)| d);
            Error::task(label, format!("cannot encode text {text:?} (instruction {:?}): {detail}", input.instruction))
        }
        None => e,
    }
}

/// Rows of embeddings, `dim` wide.
#[derive(Debug, Clone)]
pub struct Vectors {
    pub data: Vec<f32>,
    pub dim: usize,
}

impl Vectors {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    pub fn len(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Inputs encoded per call to the encoder, and per cache shard.
const CHUNK: usize = 256;

/// Encodes through the cache; counts unique inputs encoded and served from the cache.
pub struct Embedder<'a> {
    encoder: &'a dyn TextEncoder,
    cache: Option<Cache>,
    /// Rows of this run when there is no disk cache.
    memory: HashMap<Key, Vec<f32>>,
    pub encoded: usize,
    pub cached: usize,
    verbose: bool,
}

impl<'a> Embedder<'a> {
    /// `cache_root`: where the disk cache lives (`None`: keep embeddings for this run only).
    pub fn new(encoder: &'a dyn TextEncoder, cache_root: Option<&Path>, verbose: bool) -> Result<Self> {
        let cache = cache_root.map(|root| Cache::open(root, encoder.fingerprint(), encoder.description())).transpose()?;
        if let (Some(c), true) = (&cache, verbose) {
            eprintln!("embedding cache {} ({} entries)", c.dir().display(), c.len());
        }
        Ok(Self { encoder, cache, memory: HashMap::new(), encoded: 0, cached: 0, verbose })
    }

    /// The encoder's description (model, settings) for result files.
    pub fn description(&self) -> &Value {
        self.encoder.description()
    }

    fn lookup(&self, key: &Key) -> Option<&[f32]> {
        match &self.cache {
            Some(c) => c.get(key),
            None => self.memory.get(key).map(Vec::as_slice),
        }
    }

    /// Embeddings of `inputs`, one row each in input order. Each distinct input is encoded at most once.
    pub fn embed(&mut self, label: &str, inputs: &[Input]) -> Result<Vectors> {
        let fingerprint = self.encoder.fingerprint();
        let keys: Vec<Key> = inputs.iter().map(|i| cache::key(fingerprint, &i.instruction, &i.text)).collect();
        let mut first_of: HashMap<Key, usize> = HashMap::new();
        keys.iter().enumerate().for_each(|(i, k)| {
            first_of.entry(*k).or_insert(i);
        });
        let mut missing: Vec<usize> = first_of.iter().filter(|(k, _)| self.lookup(k).is_none()).map(|(_, &i)| i).collect();
        // Longest first, so that each chunk holds texts of similar length (less padding in its batches).
        missing.sort_unstable_by_key(|&i| (std::cmp::Reverse(inputs[i].instruction.len() + inputs[i].text.len()), i));
        self.cached += first_of.len() - missing.len();
        if self.verbose {
            eprintln!("[{label}] {} distinct texts: {} cached, {} to encode", first_of.len(), first_of.len() - missing.len(), missing.len());
        }
        for (n, chunk) in missing.chunks(CHUNK).enumerate() {
            let batch: Vec<Input> = chunk.iter().map(|&i| inputs[i].clone()).collect();
            let rows = self.encoder.encode(&batch).map_err(|e| locate(e, label, &batch))?;
            if rows.len() != batch.len() * self.encoder.dim() {
                let msg = format!("the encoder returned {} values for {} inputs of dimension {}", rows.len(), batch.len(), self.encoder.dim());
                return Err(Error::task(label, msg));
            }
            let chunk_keys: Vec<Key> = chunk.iter().map(|&i| keys[i]).collect();
            self.store(&chunk_keys, &rows)?;
            self.encoded += chunk.len();
            if self.verbose {
                eprintln!("[{label}] encoded {}/{}", (n * CHUNK + chunk.len()), missing.len());
            }
        }
        let dim = self.encoder.dim();
        let mut data = Vec::with_capacity(inputs.len() * dim);
        for k in &keys {
            data.extend_from_slice(self.lookup(k).unwrap_or(&[]));
        }
        Ok(Vectors { data, dim })
    }

    fn store(&mut self, keys: &[Key], rows: &[f32]) -> Result<()> {
        let dim = self.encoder.dim();
        match &mut self.cache {
            Some(c) => c.insert(keys, rows, dim),
            None => {
                for (k, row) in keys.iter().zip(rows.chunks_exact(dim)) {
                    self.memory.insert(*k, row.to_vec());
                }
                Ok(())
            }
        }
    }
}
