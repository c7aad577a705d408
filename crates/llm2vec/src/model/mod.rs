//! Transformer backbones behind one trait: each family reads its Hugging Face config and weights
//! and returns the last hidden states (after the final norm) for a batch of right-padded sequences.
//! The decoder families are trainable; BERT (the classic encoder baseline) encodes only.
//!
//! The layout runs one way, from the families down: `llama`, `gemma` (both filling the shared `decoder`
//! stack, and reading the config fields they share through it) and `bert`, each a `Backbone` (`backbone`);
//! the layers they are built of (`embedding`, `linear`, `norm`, `rotary`, `attention`, `mlp`); the model's
//! own candle ops (`ops`); the CPU kernels those ops run (`cpu`). `tuning` holds what a trainer hands a
//! training pass. The weights come in as the crate's `weights`, which loading fills: nothing here imports
//! `load`.

pub mod attention;
pub mod backbone;
pub mod bert;
pub(crate) mod cpu;
pub mod decoder;
pub mod embedding;
pub mod gemma;
pub mod linear;
pub mod llama;
pub mod mlp;
pub mod norm;
pub mod ops;
pub mod rotary;
pub mod tuning;

use std::path::Path;

use candle_core::{DType, Device};

pub use attention::{AttentionMode, Context};
pub use backbone::Backbone;
pub use tuning::{LowRank, Pass, Projection, Site, Tuning};

use crate::error::{Error, Result};
use crate::weights::Weights;

/// The instruction-set path the CPU kernels take on this machine (`avx512`, `avxvnni`, `avx2` or `scalar`;
/// `LLM2VEC_CPU_ISA` may narrow it).
pub fn cpu_kernels() -> &'static str {
    cpu::isa::Isa::active().name()
}

/// The architectures we can build, by their config's `model_type`.
/// `bert` is an encoder, for encoding only (the classic baseline).
pub const SUPPORTED: &[&str] = &["llama", "mistral", "qwen2", "gemma", "gemma2", "gemma3_text", "gemma3", "bert"];

/// A parsed model config, one variant per family.
#[derive(Debug, Clone)]
pub enum Config {
    /// `llama`, `mistral`, `qwen2`.
    Llama(llama::Config),
    /// `gemma`, `gemma2`, `gemma3_text` (and `gemma3`'s text part).
    Gemma(gemma::Config),
    /// `bert`.
    Bert(bert::Config),
}

impl Config {
    /// Parses a Hugging Face config (the text of `config.json`, or a GGUF's equivalent); `path` names it in errors.
    pub fn from_json(json: &serde_json::Value, path: &Path) -> Result<Self> {
        let model_type = json.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
        let parse_err = |source| Error::Json { path: path.into(), source };
        match model_type {
            "llama" | "mistral" | "qwen2" => {
                Ok(Config::Llama(serde_json::from_value(json.clone()).map_err(parse_err)?))
            }
            "gemma" | "gemma2" | "gemma3_text" => {
                Ok(Config::Gemma(serde_json::from_value(json.clone()).map_err(parse_err)?))
            }
            "bert" => Ok(Config::Bert(serde_json::from_value(json.clone()).map_err(parse_err)?)),
            "gemma3" => {
                let mut text =
                    json.get("text_config").and_then(|t| t.as_object()).cloned().ok_or_else(|| Error::Config {
                        path: path.into(),
                        field: "text_config".into(),
                        msg: "an object is required for model_type gemma3".into(),
                    })?;
                text.insert("model_type".into(), "gemma3_text".into());
                Self::from_json(&serde_json::Value::Object(text), path)
            }
            other => Err(Error::UnsupportedArchitecture {
                path: path.into(),
                found: if other.is_empty() { "(no model_type)".into() } else { other.into() },
                supported: SUPPORTED.join(", "),
            }),
        }
    }

    /// The config's `model_type` (`gemma3_text` for a `gemma3` config).
    pub fn model_type(&self) -> &str {
        match self {
            Config::Llama(c) => &c.decoder.model_type,
            Config::Gemma(c) => &c.decoder.model_type,
            Config::Bert(c) => &c.model_type,
        }
    }

    /// Builds the backbone from weights with Hugging Face names; with `quantize`, each block's linear
    /// layers take 8 bits as soon as the block is built ([`linear::Linear::from_parts`]), so that no more
    /// than one block is ever held in f32.
    pub fn build(&self, weights: &Weights, dtype: DType, device: &Device, quantize: bool) -> Result<Box<dyn Backbone>> {
        Ok(match self {
            Config::Llama(c) => Box::new(llama::load(c, weights, dtype, device, quantize)?),
            Config::Gemma(c) => Box::new(gemma::load(c, weights, dtype, device, quantize)?),
            Config::Bert(c) => Box::new(bert::Model::load(c, weights, dtype, device, quantize)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma3_text_config_must_be_an_object() {
        let json = serde_json::json!({"model_type": "gemma3", "text_config": 5});
        let err = Config::from_json(&json, Path::new("config.json")).unwrap_err().to_string();
        assert!(err.contains("text_config"), "{err}");
    }
}
