//! The Llama family: Llama 1/2/3, Mistral and Qwen2 share one decoder block; they differ in
//! projection biases (Qwen2), sliding-window attention (Mistral) and rope scaling (Llama 3).

use candle_core::{DType, Device};
use serde::Deserialize;

use super::attention::AttentionSpec;
use super::decoder::{Block, BlockWeights, Decoder, Sizes};
use super::mlp::Activation;
use super::norm::RmsNorm;
use super::rotary::{RopeScaling, Rotary};
use crate::error::{Error, Result};
use crate::weights::Weights;

/// The fields of a Hugging Face `config.json` for `llama`, `mistral` and `qwen2` models.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub model_type: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_act() -> String {
    "silu".into()
}

impl Config {
    fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    fn qkv_bias(&self) -> bool {
        self.model_type == "qwen2" || self.attention_bias
    }

    fn window(&self) -> Option<usize> {
        match self.model_type.as_str() {
            "mistral" => self.sliding_window,
            "qwen2" if self.use_sliding_window == Some(true) => self.sliding_window,
            _ => None,
        }
    }

    /// Checks the numbers that the shapes depend on.
    pub fn validate(&self, path: &std::path::Path) -> Result<()> {
        let err = |field: &str, msg: String| Error::Config { path: path.into(), field: field.into(), msg };
        if self.num_attention_heads == 0 || self.kv_heads() == 0 {
            return Err(err("num_attention_heads", "must be positive".into()));
        }
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return Err(err(
                "num_key_value_heads",
                format!("{} does not divide num_attention_heads {}", self.kv_heads(), self.num_attention_heads),
            ));
        }
        if !self.head_dim().is_multiple_of(2) || self.head_dim() == 0 {
            return Err(err("head_dim", format!("{} must be even and positive", self.head_dim())));
        }
        if self.hidden_act != "silu" {
            return Err(err("hidden_act", format!("`{}` is not supported (silu)", self.hidden_act)));
        }
        RopeScaling::parse(self.rope_scaling.as_ref(), path).map(|_| ())
    }
}

/// A Llama-family decoder from its config and weights.
pub fn load(cfg: &Config, w: &Weights, dtype: DType, device: &Device) -> Result<Decoder> {
    cfg.validate(w.source())?;
    let (h, hd) = (cfg.hidden_size, cfg.head_dim());
    let sizes = Sizes {
        hidden: h,
        heads: cfg.num_attention_heads,
        kv_heads: cfg.kv_heads(),
        head_dim: hd,
        intermediate: cfg.intermediate_size,
        qkv_bias: cfg.qkv_bias(),
        o_bias: cfg.attention_bias,
        mlp_bias: cfg.mlp_bias,
    };
    let embed = w.take("model.embed_tokens.weight", (cfg.vocab_size, h), dtype)?;
    let blocks = (0..cfg.num_hidden_layers)
        .map(|i| {
            let bw = BlockWeights::new(w, i, &sizes, (cfg.rms_norm_eps, 0.0), dtype);
            let (input_norm, qkv, o_proj) = (bw.norm("input_layernorm", h)?, bw.qkv()?, bw.o_proj()?);
            let pre_mlp_norm = bw.norm("post_attention_layernorm", h)?;
            let (gate_up, down_proj) = bw.mlp()?;
            Ok(Block {
                input_norm,
                qkv,
                qk_norms: None,
                o_proj,
                post_attention_norm: None,
                pre_mlp_norm,
                post_mlp_norm: None,
                gate_up,
                down_proj,
                sliding: false,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let lm_head = if cfg.tie_word_embeddings || !w.contains("lm_head.weight") {
        embed.clone()
    } else {
        w.take("lm_head.weight", (cfg.vocab_size, h), dtype)?
    };
    let scaling = RopeScaling::parse(cfg.rope_scaling.as_ref(), w.source())?;
    Ok(Decoder {
        embed,
        embed_scale: None,
        blocks,
        norm: RmsNorm::load(w, "model.norm.weight", h, cfg.rms_norm_eps, 0.0, dtype)?,
        lm_head,
        rotary: Rotary::new(hd, cfg.rope_theta, &scaling),
        window: cfg.window(),
        local: None,
        attention: AttentionSpec {
            heads: sizes.heads,
            kv_heads: sizes.kv_heads,
            head_dim: hd,
            scale: 1.0 / (hd as f64).sqrt(),
            softcap: None,
        },
        activation: Activation::Silu,
        final_softcap: None,
        dtype,
        device: device.clone(),
    })
}
