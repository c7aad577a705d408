//! The Llama family: Llama 1/2/3, Mistral and Qwen2 share one decoder block; they differ in
//! projection biases (Qwen2), sliding-window attention (Mistral) and rope scaling (Llama 3).

use candle_core::{DType, Device};
use serde::Deserialize;

use super::attention::AttentionSpec;
use super::decoder::{Block, BlockWeights, Decoder, DecoderConfig};
use super::embedding::Embedding;
use super::mlp::Activation;
use super::norm::RmsNorm;
use super::rotary::{RopeScaling, Rotary};
use crate::error::{Error, Result};
use crate::weights::Weights;

/// The fields of a Hugging Face `config.json` for `llama`, `mistral` and `qwen2` models.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// The fields every decoder family has.
    #[serde(flatten)]
    pub decoder: DecoderConfig,
    /// Values per head; `hidden_size / num_attention_heads` when absent.
    pub head_dim: Option<usize>,
    /// Whether the LM head is the token embeddings.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Whether the MLP's projections have biases.
    #[serde(default)]
    pub mlp_bias: bool,
    /// Whether Qwen2 uses its `sliding_window`.
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    /// The MLP's activation (`silu`).
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_act() -> String {
    "silu".into()
}

impl Config {
    fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.decoder.hidden_size / self.decoder.num_attention_heads.max(1))
    }

    fn qkv_bias(&self) -> bool {
        self.decoder.model_type == "qwen2" || self.decoder.attention_bias
    }

    fn window(&self) -> Option<usize> {
        match self.decoder.model_type.as_str() {
            "mistral" => self.decoder.sliding_window,
            "qwen2" if self.use_sliding_window == Some(true) => self.decoder.sliding_window,
            _ => None,
        }
    }

    /// Checks the numbers that the shapes depend on.
    pub fn validate(&self, path: &std::path::Path) -> Result<()> {
        self.decoder.check_heads(self.head_dim(), path)?;
        if self.hidden_act != "silu" {
            let msg = format!("`{}` is not supported (silu)", self.hidden_act);
            return Err(Error::Config { path: path.into(), field: "hidden_act".into(), msg });
        }
        RopeScaling::parse(self.decoder.rope_scaling.as_ref(), path).map(|_| ())
    }
}

/// A Llama-family decoder from its config and weights.
pub fn load(cfg: &Config, w: &Weights, dtype: DType, device: &Device, quantize: bool) -> Result<Decoder> {
    cfg.validate(w.source())?;
    let (h, hd) = (cfg.decoder.hidden_size, cfg.head_dim());
    let sizes = cfg.decoder.sizes(hd, cfg.qkv_bias(), cfg.mlp_bias);
    let embed = w.take("model.embed_tokens.weight", (cfg.decoder.vocab_size, h), dtype)?;
    let lm_head = if quantize {
        None
    } else if cfg.tie_word_embeddings || !w.contains("lm_head.weight") {
        Some(embed.clone())
    } else {
        Some(w.take("lm_head.weight", (cfg.decoder.vocab_size, h), dtype)?)
    };
    let embed = Embedding::new(embed, quantize)?;
    let blocks = (0..cfg.decoder.num_hidden_layers)
        .map(|i| {
            let bw = BlockWeights::new(w, i, &sizes, (cfg.decoder.rms_norm_eps, 0.0), dtype, quantize);
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
    let scaling = RopeScaling::parse(cfg.decoder.rope_scaling.as_ref(), w.source())?;
    Ok(Decoder {
        embed,
        embed_scale: None,
        blocks,
        norm: RmsNorm::load(w, "model.norm.weight", h, cfg.decoder.rms_norm_eps, 0.0, dtype)?,
        lm_head,
        rotary: Rotary::new(hd, cfg.decoder.rope_theta, &scaling),
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
