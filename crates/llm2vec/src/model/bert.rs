//! BERT encoders (all-MiniLM-L6-v2 and other sentence-transformers models): the classic encoder
//! baseline, for inference only. Post-norm blocks, absolute positions, erf GELU; no rotary tables.

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::attention::{attention_bias, self_attention, Attend, AttentionMode, AttentionSpec, Context};
use super::backbone::Backbone;
use super::linear::Linear;
use super::tuning::{Pass, Projection, Site};
use crate::error::{Error, Result};
use crate::weights::Weights;

/// The fields of a Hugging Face `config.json` for `bert` models.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// `bert`.
    pub model_type: String,
    /// The number of token embeddings.
    pub vocab_size: usize,
    /// The width of the hidden states.
    pub hidden_size: usize,
    /// The number of blocks.
    pub num_hidden_layers: usize,
    /// The number of attention heads.
    pub num_attention_heads: usize,
    /// The width inside the feed-forward layer.
    pub intermediate_size: usize,
    /// The number of position embeddings: the longest input.
    pub max_position_embeddings: usize,
    /// The number of token-type embeddings (type 0 is used).
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// The LayerNorms' epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// The feed-forward activation (`gelu`).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// How positions are embedded (`absolute`).
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_position_type() -> String {
    "absolute".into()
}

impl Config {
    /// Checks the numbers that the shapes depend on.
    pub fn validate(&self, path: &std::path::Path) -> Result<()> {
        let err = |field: &str, msg: String| Error::Config { path: path.into(), field: field.into(), msg };
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(err(
                "num_attention_heads",
                format!("{} must be positive and divide hidden_size {}", self.num_attention_heads, self.hidden_size),
            ));
        }
        if self.hidden_act != "gelu" {
            return Err(err("hidden_act", format!("`{}` is not supported (gelu)", self.hidden_act)));
        }
        if self.position_embedding_type != "absolute" {
            return Err(err(
                "position_embedding_type",
                format!("`{}` is not supported (absolute)", self.position_embedding_type),
            ));
        }
        Ok(())
    }
}

/// LayerNorm with scale and shift (inference only).
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn load(w: &Weights, prefix: &str, size: usize, eps: f64, dtype: DType) -> Result<Self> {
        Ok(Self {
            weight: w.take(&format!("{prefix}.weight"), size, dtype)?,
            bias: w.take(&format!("{prefix}.bias"), size, dtype)?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, self.eps as f32)?)
    }
}

struct Block {
    qkv: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// A BERT encoder: hidden states of the last layer (BERT has no final norm after its post-norm blocks).
pub struct Model {
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    token_type: Tensor,
    embedding_norm: LayerNorm,
    blocks: Vec<Block>,
    attention: AttentionSpec,
    dtype: DType,
    device: Device,
}

impl Model {
    /// Builds the model from its config and weights with Hugging Face names.
    pub fn load(cfg: &Config, w: &Weights, dtype: DType, device: &Device, quantize: bool) -> Result<Self> {
        cfg.validate(w.source())?;
        // Checkpoints saved from a pre-training head prefix every name with `bert.`.
        let root = if w.contains("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
        let h = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        let emb = |name: &str, rows: usize| w.take(&format!("{root}embeddings.{name}.weight"), (rows, h), dtype);
        let token_types = emb("token_type_embeddings", cfg.type_vocab_size.max(1))?;
        let blocks = (0..cfg.num_hidden_layers)
            .map(|i| {
                let p = format!("{root}encoder.layer.{i}");
                // The projections `(name, projection, outputs)` of `inp` inputs as one layer.
                let lin = |projs: &[(&str, Projection, usize)], inp: usize| -> Result<Linear> {
                    let take =
                        |name: &str, what: &str, shape: &[usize]| w.take(&format!("{p}.{name}.{what}"), shape, dtype);
                    let part = |&(name, proj, out): &(&str, Projection, usize)| -> Result<_> {
                        Ok((proj, take(name, "weight", &[out, inp])?, Some(take(name, "bias", &[out])?)))
                    };
                    Linear::from_parts(projs.iter().map(part).collect::<Result<_>>()?, quantize)
                };
                let inter = cfg.intermediate_size;
                let (q, k, v) = (Projection::Q, Projection::K, Projection::V);
                Ok(Block {
                    qkv: lin(
                        &[("attention.self.query", q, h), ("attention.self.key", k, h), ("attention.self.value", v, h)],
                        h,
                    )?,
                    attention_out: lin(&[("attention.output.dense", Projection::O, h)], h)?,
                    attention_norm: LayerNorm::load(w, &format!("{p}.attention.output.LayerNorm"), h, eps, dtype)?,
                    intermediate: lin(&[("intermediate.dense", Projection::Up, inter)], h)?,
                    output: lin(&[("output.dense", Projection::Down, h)], inter)?,
                    output_norm: LayerNorm::load(w, &format!("{p}.output.LayerNorm"), h, eps, dtype)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            word_embeddings: emb("word_embeddings", cfg.vocab_size)?,
            position_embeddings: emb("position_embeddings", cfg.max_position_embeddings)?,
            // Every token has type 0 (one segment).
            token_type: token_types.get(0)?,
            embedding_norm: LayerNorm::load(w, &format!("{root}embeddings.LayerNorm"), h, eps, dtype)?,
            blocks,
            attention: AttentionSpec {
                heads: cfg.num_attention_heads,
                kv_heads: cfg.num_attention_heads,
                head_dim: h / cfg.num_attention_heads,
                scale: 1.0 / ((h / cfg.num_attention_heads) as f64).sqrt(),
                softcap: None,
            },
            dtype,
            device: device.clone(),
        })
    }

    fn inference_only(pass: Pass) -> Result<()> {
        if pass.is_train() {
            return Err(Error::Input(
                "BERT models are supported for encoding only; training needs a decoder family".into(),
            ));
        }
        Ok(())
    }
}

impl Backbone for Model {
    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let max = self.position_embeddings.dim(0)?;
        if l > max {
            return Err(Error::Input(format!("{l} tokens exceed the model's {max} positions; lower max_length")));
        }
        let words = self.word_embeddings.embedding(&ids.flatten_all()?)?.reshape((b, l, ()))?;
        let positions = self.position_embeddings.narrow(0, 0, l)?.broadcast_add(&self.token_type)?;
        self.embedding_norm.forward(&words.broadcast_add(&positions)?)
    }

    fn context(&self, lengths: &[usize], seq_len: usize, mode: AttentionMode) -> Result<Context> {
        let bias = attention_bias(lengths, seq_len, mode, None, self.dtype, &self.device)?;
        let attend = Attend { rotary: None, bias };
        Ok(Context { global: attend.clone(), local: attend })
    }

    fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    fn block(&self, i: usize, x: &Tensor, ctx: &Context, pass: Pass) -> Result<Tensor> {
        Self::inference_only(pass)?;
        let blk = &self.blocks[i];
        let qkv = blk.qkv.output(x, i, pass)?;
        let attn = self_attention(&qkv, &ctx.global, self.attention, pass)?;
        let x = blk.attention_norm.forward(&(x + blk.attention_out.output(&attn, i, pass)?)?)?;
        let inner = blk.intermediate.output(&x, i, pass)?.gelu_erf()?;
        blk.output_norm.forward(&(&x + blk.output.output(&inner, i, pass)?)?)
    }

    fn final_norm(&self, x: &Tensor, pass: Pass) -> Result<Tensor> {
        Self::inference_only(pass)?;
        Ok(x.clone())
    }

    fn logits(&self, _hidden: &Tensor, _pass: Pass) -> Result<Tensor> {
        Err(Error::Input("BERT models have no next-token head; MNTP training needs a decoder family".into()))
    }

    /// None: LoRA training is for the decoder families.
    fn sites(&self) -> Vec<(Site, usize, usize)> {
        Vec::new()
    }

    fn hidden_size(&self) -> usize {
        self.word_embeddings.dim(1).unwrap_or(0)
    }

    fn dtype(&self) -> DType {
        self.dtype
    }

    fn device(&self) -> &Device {
        &self.device
    }
}
