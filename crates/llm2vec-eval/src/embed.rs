//! Encoding for evaluation: the [`TextEncoder`] seam (an llm2vec [`Encoder`], or a stand-in in tests),
//! its fingerprint, and the [`Embedder`] that deduplicates inputs, serves them from the cache and
//! counts what it really encoded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use llm2vec::{Encoder, Input, Options, Pooling};
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
    /// Encoders whose embeddings come out of the same passes (the same model pooled otherwise), as
    /// (fingerprint, description).
    fn companions(&self) -> Vec<(String, Value)> {
        Vec::new()
    }
    /// This encoder's rows, then each companion's.
    fn encode_all(&self, inputs: &[Input]) -> Result<Vec<Vec<f32>>> {
        Ok(vec![self.encode(inputs)?])
    }
}

/// An llm2vec encoder with its fingerprint, and the poolings it also computes from the same passes.
pub struct LlmEncoder {
    encoder: Encoder,
    fingerprint: String,
    description: Value,
    also: Vec<(Pooling, String, Value)>,
}

impl LlmEncoder {
    /// Loads `model` with `options` (see [`Encoder::from_pretrained`]); `also` names further pooling modes
    /// pooled from the same forward passes (see [`Encoder::encode_poolings`]).
    pub fn load(model: &str, options: Options, also: &[Pooling]) -> Result<Self> {
        let path = llm2vec::load::resolve(model)?;
        let encoder = Encoder::from_pretrained(model, options.clone())?;
        let files: Vec<Value> = std::iter::once(path.as_path())
            .chain(options.adapters.iter().map(PathBuf::as_path))
            .map(file_stats)
            .collect();
        let identify = |pooling: Pooling| {
            let description = describe(model, &path, &encoder, &options, pooling);
            (json!({ "description": description, "files": files }).to_string(), description)
        };
        let (fingerprint, description) = identify(encoder.settings().pooling);
        let also = also.iter().filter(|&&p| p != encoder.settings().pooling).map(|&p| {
            let (fingerprint, description) = identify(p);
            (p, fingerprint, description)
        });
        Ok(Self { fingerprint, description, also: also.collect(), encoder })
    }
}

/// What the result files (and the fingerprint) say about the model and its settings.
fn describe(model: &str, path: &Path, encoder: &Encoder, options: &Options, pooling: Pooling) -> Value {
    let s = encoder.settings();
    json!({
        "name": model,
        "path": path,
        "model_type": encoder.model_type(),
        "adapters": options.adapters,
        "settings": {
            "attention": format!("{:?}", s.attention).to_lowercase(),
            "pooling": pooling.name(),
            "max_length": s.max_length,
            "doc_max_length": s.doc_max_length,
            "skip_instruction": s.skip_instruction,
            "normalize": s.normalize,
            "dtype": encoder.precision(),
            "device": format!("{:?}", options.device.location()),
            "cpu_kernels": encoder.cpu_kernels(),
        },
    })
}

/// Canonical path, size and modification time of a file, or of each file directly in a folder but its
/// logs and notes (a training run's `metrics.jsonl` and `loss.svg`, a `README.md`), which change no weight.
fn file_stats(path: &Path) -> Value {
    let stat = |p: &Path| {
        let meta = std::fs::metadata(p).ok();
        let modified = meta.as_ref().and_then(|m| m.modified().ok()).and_then(|t| t.duration_since(UNIX_EPOCH).ok());
        json!({
            "path": std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()),
            "size": meta.as_ref().map(std::fs::Metadata::len),
            "modified_ns": modified.map(|d| d.as_nanos().to_string()),
        })
    };
    if !path.is_dir() {
        return stat(path);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file() && !is_log(p)).collect())
        .unwrap_or_default();
    files.sort();
    Value::Array(files.iter().map(|p| stat(p)).collect())
}

fn is_log(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("jsonl" | "svg" | "md"))
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

    fn companions(&self) -> Vec<(String, Value)> {
        self.also.iter().map(|(_, fingerprint, description)| (fingerprint.clone(), description.clone())).collect()
    }

    fn encode_all(&self, inputs: &[Input]) -> Result<Vec<Vec<f32>>> {
        let modes: Vec<Pooling> =
            std::iter::once(self.encoder.settings().pooling).chain(self.also.iter().map(|a| a.0)).collect();
        Ok(self.encoder.encode_poolings(inputs, &modes)?.into_iter().map(|e| e.data).collect())
    }
}

/// Names the text an encoder error is about (the encoder counts inputs of the failing call from 1).
fn locate(e: Error, label: &str, batch: &[Input]) -> Error {
    let Error::Llm2vec(llm2vec::Error::Input(msg)) = &e else { return e };
    let index =
        msg.strip_prefix("input ").and_then(|rest| rest.split(':').next()).and_then(|n| n.parse::<usize>().ok());
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
    /// The companions' caches, filled with what this run encodes (disk cache only).
    companions: Vec<(String, Cache)>,
    /// Rows of this run when there is no disk cache.
    memory: HashMap<Key, Vec<f32>>,
    pub encoded: usize,
    pub cached: usize,
    verbose: bool,
}

impl<'a> Embedder<'a> {
    /// `cache_root`: where the disk cache lives (`None`: keep embeddings for this run only).
    pub fn new(encoder: &'a dyn TextEncoder, cache_root: Option<&Path>, verbose: bool) -> Result<Self> {
        let cache =
            cache_root.map(|root| Cache::open(root, encoder.fingerprint(), encoder.description())).transpose()?;
        if let (Some(c), true) = (&cache, verbose) {
            eprintln!("embedding cache {} ({} entries)", c.dir().display(), c.len());
        }
        let companions = match cache_root {
            Some(root) => encoder
                .companions()
                .into_iter()
                .map(|(fingerprint, description)| {
                    let cache = Cache::open(root, &fingerprint, &description)?;
                    Ok((fingerprint, cache))
                })
                .collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        Ok(Self { encoder, cache, companions, memory: HashMap::new(), encoded: 0, cached: 0, verbose })
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
        let mut missing: Vec<usize> =
            first_of.iter().filter(|(k, _)| self.lookup(k).is_none()).map(|(_, &i)| i).collect();
        missing.sort_unstable();
        // Longest first, so that each chunk holds texts of similar length (less padding in its batches).
        let bytes: Vec<usize> = missing.iter().map(|&i| inputs[i].instruction.len() + inputs[i].text.len()).collect();
        let missing: Vec<usize> = llm2vec::batch::longest_first(&bytes).into_iter().map(|k| missing[k]).collect();
        self.cached += first_of.len() - missing.len();
        if self.verbose {
            eprintln!(
                "[{label}] {} distinct texts: {} cached, {} to encode",
                first_of.len(),
                first_of.len() - missing.len(),
                missing.len()
            );
        }
        for (n, chunk) in missing.chunks(CHUNK).enumerate() {
            let batch: Vec<Input> = chunk.iter().map(|&i| inputs[i].clone()).collect();
            let mut all = self.encoder.encode_all(&batch).map_err(|e| locate(e, label, &batch))?.into_iter();
            let rows = all.next().unwrap_or_default();
            if rows.len() != batch.len() * self.encoder.dim() {
                let msg = format!(
                    "the encoder returned {} values for {} inputs of dimension {}",
                    rows.len(),
                    batch.len(),
                    self.encoder.dim()
                );
                return Err(Error::task(label, msg));
            }
            let chunk_keys: Vec<Key> = chunk.iter().map(|&i| keys[i]).collect();
            self.store(&chunk_keys, &rows)?;
            for ((fingerprint, cache), rows) in self.companions.iter_mut().zip(all) {
                let keys: Vec<Key> = batch.iter().map(|i| cache::key(fingerprint, &i.instruction, &i.text)).collect();
                cache.insert(&keys, &rows, self.encoder.dim())?;
            }
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
