//! The on-disk embedding cache. One folder per encoder fingerprint (model file sizes and times,
//! adapters, settings) under the cache root, holding `model.json` (what the fingerprint stands for) and
//! shard files, each written whole by `llm2vec::fs::write_atomic` (a temporary file renamed into place),
//! so a reader never sees half a shard. An entry is keyed by SHA-256 of fingerprint, instruction and text.
//!
//! Shard layout (little endian): `L2VEMB1\n`, dim (u32), count (u32), count 32-byte keys, count x dim f32.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub type Key = [u8; 32];

const MAGIC: &[u8; 8] = b"L2VEMB1\n";
const HEADER: usize = 16;

/// The key of one (instruction, text) under an encoder fingerprint.
pub fn key(fingerprint: &str, instruction: &str, text: &str) -> Key {
    let mut h = Sha256::new();
    for part in [fingerprint, instruction, text] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The default cache root: `$XDG_CACHE_HOME/llm2vec/embeddings`, else `~/.cache/llm2vec/embeddings`.
pub fn default_root() -> PathBuf {
    llm2vec::fs::cache_home().join("llm2vec").join("embeddings")
}

/// Embeddings of one encoder fingerprint, all shards loaded.
pub struct Cache {
    dir: PathBuf,
    dim: Option<usize>,
    rows: Vec<f32>,
    index: HashMap<Key, usize>,
}

impl Cache {
    /// Opens (creating) the folder of `fingerprint` under `root`; `description` goes to `model.json`.
    pub fn open(root: &Path, fingerprint: &str, description: &serde_json::Value) -> Result<Self> {
        let dir = root.join(&hex(&Sha256::digest(fingerprint.as_bytes()))[..16]);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let model_json = dir.join("model.json");
        if !model_json.exists() {
            let text =
                serde_json::to_vec_pretty(&serde_json::json!({ "fingerprint": fingerprint, "model": description }))
                    .map_err(|source| Error::json(&model_json, source))?;
            llm2vec::fs::write_atomic(&model_json, &text)?;
        }
        let mut cache = Self { dir, dim: None, rows: Vec::new(), index: HashMap::new() };
        cache.load_shards()?;
        Ok(cache)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn load_shards(&mut self) -> Result<()> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut shards: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "bin"))
            .collect();
        shards.sort();
        for path in shards {
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            self.add_shard(&path, &bytes)?;
        }
        Ok(())
    }

    fn add_shard(&mut self, path: &Path, bytes: &[u8]) -> Result<()> {
        let corrupt = |msg: String| Error::Cache {
            path: path.to_path_buf(),
            msg: format!("{msg}; delete the file to rebuild it"),
        };
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(corrupt("not an embedding shard".into()));
        }
        let dim = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default()) as usize;
        let count = u32::from_le_bytes(bytes[12..16].try_into().unwrap_or_default()) as usize;
        // In u128: the sizes a corrupt header claims must not overflow.
        let expected = HEADER as u128 + count as u128 * (32 + 4 * dim as u128);
        if bytes.len() as u128 != expected {
            return Err(corrupt(format!("{} bytes, expected {expected} for {count} rows of {dim}", bytes.len())));
        }
        match self.dim {
            Some(d) if d != dim => return Err(corrupt(format!("rows of {dim}, other shards have {d}"))),
            _ => self.dim = Some(dim),
        }
        let (keys, values) = bytes[HEADER..].split_at(count * 32);
        for (i, k) in keys.chunks_exact(32).enumerate() {
            let key: Key = k.try_into().unwrap_or_default();
            let row = &values[i * dim * 4..(i + 1) * dim * 4];
            self.push(key, row.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap_or_default())));
        }
        Ok(())
    }

    fn push(&mut self, key: Key, row: impl Iterator<Item = f32>) {
        let at = self.rows.len() / self.dim.unwrap_or(1).max(1);
        self.rows.extend(row);
        self.index.insert(key, at);
    }

    /// The cached row of `key`.
    pub fn get(&self, key: &Key) -> Option<&[f32]> {
        let dim = self.dim?;
        self.index.get(key).map(|&i| &self.rows[i * dim..(i + 1) * dim])
    }

    /// Stores `rows` (flat, `dim` wide) under `keys`, as one new shard.
    pub fn insert(&mut self, keys: &[Key], rows: &[f32], dim: usize) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        if let Some(d) = self.dim.filter(|&d| d != dim) {
            return Err(Error::Cache {
                path: self.dir.clone(),
                msg: format!("rows of {dim} do not fit a cache of rows of {d}"),
            });
        }
        self.dim = Some(dim);
        let mut bytes = Vec::with_capacity(HEADER + keys.len() * (32 + dim * 4));
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(dim as u32).to_le_bytes());
        bytes.extend_from_slice(&(keys.len() as u32).to_le_bytes());
        keys.iter().for_each(|k| bytes.extend_from_slice(k));
        rows.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
        let name = hex(&Sha256::digest(&bytes)[..12]);
        llm2vec::fs::write_atomic(&self.dir.join(format!("{name}.bin")), &bytes)?;
        for (key, row) in keys.iter().zip(rows.chunks_exact(dim)) {
            self.push(*key, row.iter().copied());
        }
        Ok(())
    }
}
