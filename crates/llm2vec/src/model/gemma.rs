//! The Gemma family: Gemma, Gemma 2 (logit soft-capping, sandwich norms, alternating sliding windows)
//! and Gemma 3 (query/key norms, local and global rotary bases).

use candle_core::{DType, Device};
use serde::Deserialize;

use super::attention::AttentionSpec;
use super::decoder::{Block, BlockWeights, Decoder, DecoderConfig, Local};
use super::embedding::Embedding;
use super::mlp::Activation;
use super::norm::RmsNorm;
use super::rotary::{RopeScaling, Rotary};
use crate::error::{Error, Result};
use crate::weights::Weights;

/// The fields of a Hugging Face `config.json` for `gemma`, `gemma2` and `gemma3_text` models.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// The fields every decoder family has.
    #[serde(flatten)]
    pub decoder: DecoderConfig,
    /// Values per head.
    pub head_dim: usize,
    /// The MLP's activation (`gelu_pytorch_tanh`).
    #[serde(default)]
    pub hidden_activation: Option<String>,
    /// The scores' scale is `1 / sqrt(query_pre_attn_scalar)` (`head_dim` when absent).
    #[serde(default)]
    pub query_pre_attn_scalar: Option<f64>,
    /// The cap on the attention scores (Gemma 2).
    #[serde(default)]
    pub attn_logit_softcapping: Option<f64>,
    /// The cap on the next-token logits.
    #[serde(default)]
    pub final_logit_softcapping: Option<f64>,
    /// Every how many layers one is global (Gemma 3; 6 when absent).
    #[serde(default)]
    pub sliding_window_pattern: Option<usize>,
    /// Each layer's kind (`sliding_attention` or `full_attention`), when listed.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// The rotary base of the sliding-window layers (Gemma 3).
    #[serde(default)]
    pub rope_local_base_freq: Option<f64>,
}

#[derive(Clone, Copy, PartialEq)]
enum Version {
    One,
    Two,
    Three,
}

impl Config {
    fn version(&self) -> Version {
        match self.decoder.model_type.as_str() {
            "gemma2" => Version::Two,
            "gemma3_text" | "gemma3" => Version::Three,
            _ => Version::One,
        }
    }

    fn is_sliding(&self, layer: usize) -> bool {
        if let Some(types) = &self.layer_types {
            return types.get(layer).is_some_and(|t| t == "sliding_attention");
        }
        match self.version() {
            Version::One => false,
            Version::Two => layer.is_multiple_of(2),
            Version::Three => !(layer + 1).is_multiple_of(self.sliding_window_pattern.unwrap_or(6)),
        }
    }

    /// Checks the numbers that the shapes depend on.
    pub fn validate(&self, path: &std::path::Path) -> Result<()> {
        self.decoder.check_heads(self.head_dim, path)?;
        if let Some(act) = &self.hidden_activation {
            if act != "gelu_pytorch_tanh" && act != "gelu" {
                let msg = format!("`{act}` is not supported (gelu_pytorch_tanh)");
                return Err(Error::Config { path: path.into(), field: "hidden_activation".into(), msg });
            }
        }
        RopeScaling::parse(self.decoder.rope_scaling.as_ref(), path).map(|_| ())
    }
}

/// A Gemma-family decoder from its config and weights.
pub fn load(cfg: &Config, w: &Weights, dtype: DType, device: &Device, quantize: bool) -> Result<Decoder> {
    cfg.validate(w.source())?;
    let version = cfg.version();
    let (h, hd, eps) = (cfg.decoder.hidden_size, cfg.head_dim, cfg.decoder.rms_norm_eps);
    let sizes = cfg.decoder.sizes(hd, cfg.decoder.attention_bias, false);
    let embed = w.take("model.embed_tokens.weight", (cfg.decoder.vocab_size, h), dtype)?;
    let lm_head = (!quantize).then(|| embed.clone());
    let embed = Embedding::new(embed, quantize)?;
    let blocks = (0..cfg.decoder.num_hidden_layers)
        .map(|i| {
            let bw = BlockWeights::new(w, i, &sizes, (eps, 1.0), dtype, quantize);
            let sandwich = version != Version::One;
            let (input_norm, qkv) = (bw.norm("input_layernorm", h)?, bw.qkv()?);
            let qk_norms = (version == Version::Three)
                .then(|| Ok::<_, Error>((bw.norm("self_attn.q_norm", hd)?, bw.norm("self_attn.k_norm", hd)?)))
                .transpose()?;
            let o_proj = bw.o_proj()?;
            let post_attention_norm = sandwich.then(|| bw.norm("post_attention_layernorm", h)).transpose()?;
            let pre_mlp_norm =
                bw.norm(if sandwich { "pre_feedforward_layernorm" } else { "post_attention_layernorm" }, h)?;
            let post_mlp_norm = sandwich.then(|| bw.norm("post_feedforward_layernorm", h)).transpose()?;
            let (gate_up, down_proj) = bw.mlp()?;
            Ok(Block {
                input_norm,
                qkv,
                qk_norms,
                o_proj,
                post_attention_norm,
                pre_mlp_norm,
                post_mlp_norm,
                gate_up,
                down_proj,
                sliding: cfg.is_sliding(i),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let scaling = RopeScaling::parse(cfg.decoder.rope_scaling.as_ref(), w.source())?;
    let local_base = match version {
        Version::Three => cfg.rope_local_base_freq.unwrap_or(10_000.0),
        _ => cfg.decoder.rope_theta,
    };
    let local_scaling = if version == Version::Three { RopeScaling::None } else { scaling.clone() };
    Ok(Decoder {
        lm_head,
        embed,
        embed_scale: Some((h as f64).sqrt()),
        blocks,
        norm: RmsNorm::load(w, "model.norm.weight", h, eps, 1.0, dtype)?,
        rotary: Rotary::new(hd, cfg.decoder.rope_theta, &scaling),
        window: None,
        local: Some(Local { rotary: Rotary::new(hd, local_base, &local_scaling), window: cfg.decoder.sliding_window }),
        attention: AttentionSpec {
            heads: sizes.heads,
            kv_heads: sizes.kv_heads,
            head_dim: hd,
            scale: 1.0 / cfg.query_pre_attn_scalar.unwrap_or(hd as f64).sqrt(),
            softcap: if version == Version::One { None } else { cfg.attn_logit_softcapping },
        },
        activation: Activation::GeluTanh,
        final_softcap: cfg.final_logit_softcapping,
        dtype,
        device: device.clone(),
    })
}
