//! What makes a checkpoint part of this run: the config fields that shape the trained weights and the
//! training data's bytes. Checkpoints carry it; resuming with other settings or other data is refused,
//! naming what changed, so an adapter never mixes two runs. Left free: the step budget (`max_steps`,
//! `num_train_epochs`, `stop_after_n_steps`: a run may be extended) and the fields that change how a run is
//! watched, saved or fitted in memory but not what it learns.

use crate::config::TrainConfig;
use crate::{Result, TrainError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// Config fields that may differ between a checkpoint and the run resuming it.
pub const FREE: &[&str] = &[
    "max_steps",
    "num_train_epochs",
    "stop_after_n_steps",
    "output_dir",
    "logging_steps",
    "save_steps",
    "eval_steps",
    "per_device_eval_batch_size",
    "gradient_checkpointing",
];

/// The identity of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Every config field but [`FREE`], as compact JSON text (text compares exactly, floats included).
    pub settings: BTreeMap<String, String>,
    /// SHA-256 of the training data: a file's bytes, or a folder's files (relative path, length, bytes) in
    /// name order.
    pub data_sha256: String,
}

impl Fingerprint {
    /// The fingerprint of `config` training on `data`.
    pub fn of(config: &TrainConfig, data: &Path) -> Result<Self> {
        let value = serde_json::to_value(config).map_err(|e| TrainError::Invalid(e.to_string()))?;
        let settings = value
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| !FREE.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        let mut hash = Sha256::new();
        hash_data(data, data, &mut hash)?;
        Ok(Self { settings, data_sha256: hex(&hash.finalize()) })
    }

    /// What differs in `self` from `earlier`, one line per field (empty when nothing does).
    pub fn changes_since(&self, earlier: &Self) -> Vec<String> {
        let absent = "(unset)".to_string();
        let mut fields: Vec<&String> = self.settings.keys().chain(earlier.settings.keys()).collect();
        fields.sort_unstable();
        fields.dedup();
        let mut changes: Vec<String> = fields
            .into_iter()
            .filter_map(|k| {
                let (old, new) = (earlier.settings.get(k).unwrap_or(&absent), self.settings.get(k).unwrap_or(&absent));
                (old != new).then(|| format!("`{k}` was {old}, is now {new}"))
            })
            .collect();
        if self.data_sha256 != earlier.data_sha256 {
            changes.push(format!(
                "the training data's contents differ (SHA-256 {} then, {} now)",
                &earlier.data_sha256[..earlier.data_sha256.len().min(12)],
                &self.data_sha256[..12]
            ));
        }
        changes
    }
}

fn hash_data(root: &Path, path: &Path, hash: &mut Sha256) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| TrainError::io(path, e))?;
    if meta.is_dir() {
        let mut entries = std::fs::read_dir(path)
            .and_then(|d| d.map(|e| e.map(|e| e.path())).collect::<std::io::Result<Vec<_>>>())
            .map_err(|e| TrainError::io(path, e))?;
        entries.sort();
        return entries.iter().try_for_each(|p| hash_data(root, p, hash));
    }
    let name = path.strip_prefix(root).unwrap_or(path).to_string_lossy();
    hash.update((name.len() as u64).to_le_bytes());
    hash.update(name.as_bytes());
    hash.update(meta.len().to_le_bytes());
    let mut file = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    std::io::copy(&mut file, hash).map_err(|e| TrainError::io(path, e))?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
