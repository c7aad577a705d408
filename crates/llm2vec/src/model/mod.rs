//! Transformer backbones behind one trait: each family reads its Hugging Face config and weights
//! and returns the last hidden states (after the final norm) for a batch of right-padded sequences.
//! The decoder families are trainable; BERT (the classic encoder baseline) encodes only.

pub mod bert;
pub(crate) mod cpu;
pub mod gemma;
pub mod layers;
pub mod llama;
pub mod trainable;

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use layers::RopeScaling;
pub use layers::{AttentionMode, Context};
pub use trainable::{LowRank, Pass, Projection, Site, Tuning};

use crate::error::{Error, Result};
use crate::load::weights::Weights;

/// A transformer used as an encoder. The forward pass is exposed in its pieces (embedding,
/// blocks, final norm) so that a training loop can drive the blocks itself (gradient checkpointing).
pub trait Backbone: Send + Sync {
    /// Hidden states `[batch, seq, hidden]` after the final norm. `ids: [batch, seq]` (u32) holds
    /// right-padded sequences whose real lengths are `lengths`.
    fn forward(&self, ids: &Tensor, lengths: &[usize], mode: AttentionMode) -> Result<Tensor> {
        self.forward_pass(ids, lengths, mode, Pass::Infer)
    }

    /// [`Backbone::forward`] for inference or training.
    fn forward_pass(&self, ids: &Tensor, lengths: &[usize], mode: AttentionMode, pass: Pass) -> Result<Tensor> {
        let ctx = self.context(lengths, ids.dim(1)?, mode)?;
        let mut x = self.embed(ids)?;
        for i in 0..self.num_blocks() {
            x = self.block(i, &x, &ctx, pass)?;
        }
        self.final_norm(&x, pass)
    }

    /// Token embeddings `[batch, seq, hidden]` (frozen: never a gradient).
    fn embed(&self, ids: &Tensor) -> Result<Tensor>;
    /// The rotary tables and attention masks of a batch.
    fn context(&self, lengths: &[usize], seq_len: usize, mode: AttentionMode) -> Result<Context>;
    fn num_blocks(&self) -> usize;
    /// Decoder block `i`.
    fn block(&self, i: usize, x: &Tensor, ctx: &Context, pass: Pass) -> Result<Tensor>;
    fn final_norm(&self, x: &Tensor, pass: Pass) -> Result<Tensor>;
    /// Next-token logits `[.., vocab]` from hidden states `[.., hidden]`.
    fn logits(&self, hidden: &Tensor, pass: Pass) -> Result<Tensor>;
    /// Every projection LoRA can adapt, with its input and output sizes.
    fn sites(&self) -> Vec<(Site, usize, usize)>;
    /// Every linear layer of the blocks.
    fn linears_mut(&mut self) -> Vec<&mut layers::Linear>;
    /// Stores the blocks' linear layers in 8 bits for inference on the CPU ([`layers::Linear::quantize`]).
    fn quantize(&mut self) -> Result<()> {
        self.linears_mut().into_iter().try_for_each(|l| l.quantize())
    }
    fn hidden_size(&self) -> usize;
    fn dtype(&self) -> DType;
    fn device(&self) -> &Device;
}

/// The architectures we can build, by their config's `model_type`.
/// `bert` is an encoder, for encoding only (the classic baseline).
pub const SUPPORTED: &[&str] = &["llama", "mistral", "qwen2", "gemma", "gemma2", "gemma3_text", "gemma3", "bert"];

/// A parsed model config, one variant per family.
#[derive(Debug, Clone)]
pub enum Config {
    Llama(llama::Config),
    Gemma(gemma::Config),
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

    pub fn model_type(&self) -> &str {
        match self {
            Config::Llama(c) => &c.model_type,
            Config::Gemma(c) => &c.model_type,
            Config::Bert(c) => &c.model_type,
        }
    }

    /// Builds the backbone from weights with Hugging Face names.
    pub fn build(&self, weights: &Weights, dtype: DType, device: &Device) -> Result<Box<dyn Backbone>> {
        Ok(match self {
            Config::Llama(c) => Box::new(llama::Model::load(c, weights, dtype, device)?),
            Config::Gemma(c) => Box::new(gemma::Model::load(c, weights, dtype, device)?),
            Config::Bert(c) => Box::new(bert::Model::load(c, weights, dtype, device)?),
        })
    }
}

/// Reads Hugging Face `rope_scaling` (`rope_type` or the older `type`).
pub(crate) fn parse_rope_scaling(value: Option<&serde_json::Value>, path: &Path) -> Result<RopeScaling> {
    let Some(v) = value.filter(|v| !v.is_null()) else {
        return Ok(RopeScaling::None);
    };
    let err = |msg: String| Error::Config { path: path.into(), field: "rope_scaling".into(), msg };
    let num = |key: &str| v.get(key).and_then(|x| x.as_f64()).ok_or_else(|| err(format!("missing number `{key}`")));
    let kind = v.get("rope_type").or_else(|| v.get("type")).and_then(|t| t.as_str()).unwrap_or("default");
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear { factor: num("factor")? }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position: num("original_max_position_embeddings")?,
        }),
        other => Err(err(format!("rope type `{other}` is not supported (default, linear, llama3)"))),
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
