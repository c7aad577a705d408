//! Writing a model with its adapters merged as a Hugging Face directory (config.json, model.safetensors,
//! tokenizer.json, llm2vec_config.json), loadable by this crate and by `transformers`.

use std::path::Path;

use candle_core::Device;

use super::adapter::Adapter;
use crate::error::{Error, Result};
use crate::fs::{write_atomic, write_atomic_with};

/// Loads `model`, merges `adapters` in order and writes the result to `out`.
pub fn save_merged(model: &str, adapters: &[&Path], out: &Path) -> Result<()> {
    let mut loaded = super::load(model, &Device::Cpu)?;
    let mut llm2vec_config = loaded.llm2vec_config.take();
    for dir in adapters {
        Adapter::load(dir)?.merge_into(&mut loaded.weights)?;
        let path = dir.join("llm2vec_config.json");
        if path.exists() {
            llm2vec_config = Some(crate::fs::read_json(&path)?);
        }
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let json = |v: &serde_json::Value| serde_json::to_vec_pretty(v).unwrap_or_default();
    write_atomic(&out.join("config.json"), &json(&loaded.config_json))?;
    if let Some(c) = &llm2vec_config {
        write_atomic(&out.join("llm2vec_config.json"), &json(c))?;
    }
    let tokenizer = loaded.tokenizer.inner().to_string(true).map_err(|e| Error::Tokenizer(e.to_string()))?;
    write_atomic(&out.join("tokenizer.json"), tokenizer.as_bytes())?;
    let tensors = loaded.weights.into_tensors()?;
    write_atomic_with(&out.join("model.safetensors"), |tmp| Ok(candle_core::safetensors::save(&tensors, tmp)?))
}
