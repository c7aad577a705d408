//! The Gemma family: Gemma, Gemma 2 (logit soft-capping, sandwich norms, alternating sliding windows)
//! and Gemma 3 (query/key norms, local and global rotary bases).

use candle_core::{DType, Device, Tensor, D};
use serde::Deserialize;

use super::layers::{
    attention_bias, gated_mlp, rotary_attention, Activation, Attend, AttentionMode, Context, Linear, RmsNorm,
    RopeScaling, Rotary,
};
use super::trainable::{frozen_matmul, AttentionSpec, Pass, Projection, Site};
use super::{parse_rope_scaling, Backbone};
use crate::error::{Error, Result};
use crate::load::weights::Weights;

/// The fields of a Hugging Face `config.json` for `gemma`, `gemma2` and `gemma3_text` models.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub model_type: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: usize,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    pub hidden_activation: Option<String>,
    #[serde(default)]
    pub query_pre_attn_scalar: Option<f64>,
    #[serde(default)]
    pub attn_logit_softcapping: Option<f64>,
    #[serde(default)]
    pub final_logit_softcapping: Option<f64>,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub sliding_window_pattern: Option<usize>,
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    #[serde(default)]
    pub rope_local_base_freq: Option<f64>,
    #[serde(default)]
    pub attention_bias: bool,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}

#[derive(Clone, Copy, PartialEq)]
enum Version {
    One,
    Two,
    Three,
}

impl Config {
    fn version(&self) -> Version {
        match self.model_type.as_str() {
            "gemma2" => Version::Two,
            "gemma3_text" | "gemma3" => Version::Three,
            _ => Version::One,
        }
    }

    fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
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

    pub fn validate(&self, path: &std::path::Path) -> Result<()> {
        let err = |field: &str, msg: String| Error::Config { path: path.into(), field: field.into(), msg };
        if self.num_attention_heads == 0
            || self.kv_heads() == 0
            || !self.num_attention_heads.is_multiple_of(self.kv_heads())
        {
            return Err(err(
                "num_key_value_heads",
                format!(
                    "{} must be positive and divide num_attention_heads {}",
                    self.kv_heads(),
                    self.num_attention_heads
                ),
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return Err(err("head_dim", format!("{} must be even and positive", self.head_dim)));
        }
        if let Some(act) = &self.hidden_activation {
            if act != "gelu_pytorch_tanh" && act != "gelu" {
                return Err(err("hidden_activation", format!("`{act}` is not supported (gelu_pytorch_tanh)")));
            }
        }
        parse_rope_scaling(self.rope_scaling.as_ref(), path).map(|_| ())
    }
}

struct Block {
    input_norm: RmsNorm,
    qkv: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    o_proj: Linear,
    post_attention_norm: Option<RmsNorm>,
    pre_mlp_norm: RmsNorm,
    post_mlp_norm: Option<RmsNorm>,
    gate_up: Linear,
    down_proj: Linear,
    sliding: bool,
}

/// A Gemma-family decoder: hidden states and logits.
pub struct Model {
    embed: Tensor,
    embed_scale: f64,
    blocks: Vec<Block>,
    norm: RmsNorm,
    global_rotary: Rotary,
    local_rotary: Rotary,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    intermediate: usize,
    attn_scale: f64,
    attn_softcap: Option<f64>,
    final_softcap: Option<f64>,
    window: Option<usize>,
    dtype: DType,
    device: Device,
}

impl Model {
    pub fn load(cfg: &Config, w: &Weights, dtype: DType, device: &Device) -> Result<Self> {
        cfg.validate(w.source())?;
        let version = cfg.version();
        let (h, hd, eps) = (cfg.hidden_size, cfg.head_dim, cfg.rms_norm_eps);
        let (heads, kv) = (cfg.num_attention_heads, cfg.kv_heads());
        let embed = w.take("model.embed_tokens.weight", (cfg.vocab_size, h), dtype)?;
        let blocks = (0..cfg.num_hidden_layers)
            .map(|i| {
                let p = format!("model.layers.{i}");
                let lin = |proj, out, inp, bias| Linear::load(w, &p, proj, out, inp, bias, dtype);
                let norm = |name: &str, size| RmsNorm::load(w, &format!("{p}.{name}.weight"), size, eps, 1.0, dtype);
                let sandwich = version != Version::One;
                let ab = cfg.attention_bias;
                Ok(Block {
                    input_norm: norm("input_layernorm", h)?,
                    qkv: Linear::fused(&[
                        lin(Projection::Q, heads * hd, h, ab)?,
                        lin(Projection::K, kv * hd, h, ab)?,
                        lin(Projection::V, kv * hd, h, ab)?,
                    ])?,
                    q_norm: (version == Version::Three).then(|| norm("self_attn.q_norm", hd)).transpose()?,
                    k_norm: (version == Version::Three).then(|| norm("self_attn.k_norm", hd)).transpose()?,
                    o_proj: lin(Projection::O, h, heads * hd, ab)?,
                    post_attention_norm: sandwich.then(|| norm("post_attention_layernorm", h)).transpose()?,
                    pre_mlp_norm: if sandwich {
                        norm("pre_feedforward_layernorm", h)?
                    } else {
                        norm("post_attention_layernorm", h)?
                    },
                    post_mlp_norm: sandwich.then(|| norm("post_feedforward_layernorm", h)).transpose()?,
                    gate_up: Linear::fused(&[
                        lin(Projection::Gate, cfg.intermediate_size, h, false)?,
                        lin(Projection::Up, cfg.intermediate_size, h, false)?,
                    ])?,
                    down_proj: lin(Projection::Down, h, cfg.intermediate_size, false)?,
                    sliding: cfg.is_sliding(i),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let scaling = parse_rope_scaling(cfg.rope_scaling.as_ref(), w.source())?;
        let local_base = match version {
            Version::Three => cfg.rope_local_base_freq.unwrap_or(10_000.0),
            _ => cfg.rope_theta,
        };
        let local_scaling = if version == Version::Three { RopeScaling::None } else { scaling.clone() };
        Ok(Self {
            embed,
            embed_scale: (h as f64).sqrt(),
            blocks,
            norm: RmsNorm::load(w, "model.norm.weight", h, eps, 1.0, dtype)?,
            global_rotary: Rotary::new(hd, cfg.rope_theta, &scaling),
            local_rotary: Rotary::new(hd, local_base, &local_scaling),
            heads,
            kv_heads: kv,
            head_dim: hd,
            intermediate: cfg.intermediate_size,
            attn_scale: 1.0 / cfg.query_pre_attn_scalar.unwrap_or(hd as f64).sqrt(),
            attn_softcap: if version == Version::One { None } else { cfg.attn_logit_softcapping },
            final_softcap: cfg.final_logit_softcapping,
            window: cfg.sliding_window,
            dtype,
            device: device.clone(),
        })
    }
}

impl Backbone for Model {
    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let scale = Tensor::new(self.embed_scale as f32, &self.device)?.to_dtype(self.dtype)?;
        let x = self.embed.embedding(&ids.flatten_all()?)?.reshape((ids.dim(0)?, ids.dim(1)?, ()))?;
        Ok(x.broadcast_mul(&scale)?)
    }

    fn context(&self, lengths: &[usize], seq_len: usize, mode: AttentionMode) -> Result<Context> {
        let (cos, sin) = self.global_rotary.tables(seq_len, self.dtype, &self.device)?;
        let bias = attention_bias(lengths, seq_len, mode, None, self.dtype, &self.device)?;
        let window_bias = match self.window {
            Some(w) if mode == AttentionMode::Causal && self.blocks.iter().any(|b| b.sliding) => {
                attention_bias(lengths, seq_len, mode, Some(w), self.dtype, &self.device)?
            }
            _ => bias.clone(),
        };
        let (local_cos, local_sin) = self.local_rotary.tables(seq_len, self.dtype, &self.device)?;
        Ok(Context {
            global: Attend { cos, sin, bias },
            local: Attend { cos: local_cos, sin: local_sin, bias: window_bias },
        })
    }

    fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    fn block(&self, i: usize, x: &Tensor, ctx: &Context, pass: Pass) -> Result<Tensor> {
        let blk = &self.blocks[i];
        let (b, l, _) = x.dims3()?;
        let (hd, heads, kv) = (self.head_dim, self.heads, self.kv_heads);
        let attend = if blk.sliding { &ctx.local } else { &ctx.global };
        let qkv = blk.qkv.output(&blk.input_norm.apply(x, pass)?, i, pass)?;
        let qkv = match (&blk.q_norm, &blk.k_norm) {
            (None, None) => qkv,
            (q_norm, k_norm) => {
                // Per-head RMSNorm on q and k (Gemma 3), then the parts side by side again.
                let part = |first: usize, n: usize, norm: &Option<RmsNorm>| -> Result<Tensor> {
                    let t = qkv.narrow(D::Minus1, first * hd, n * hd)?;
                    match norm {
                        Some(norm) => Ok(norm.apply(&t.reshape((b, l, n, hd))?, pass)?.reshape((b, l, n * hd))?),
                        None => Ok(t),
                    }
                };
                Tensor::cat(
                    &[part(0, heads, q_norm)?, part(heads, kv, k_norm)?, part(heads + kv, kv, &None)?],
                    D::Minus1,
                )?
            }
        };
        let spec =
            AttentionSpec { heads, kv_heads: kv, head_dim: hd, scale: self.attn_scale, softcap: self.attn_softcap };
        let attn = rotary_attention(&qkv, attend, spec, pass)?;
        let attn = blk.o_proj.output(&attn, i, pass)?;
        let attn = match &blk.post_attention_norm {
            Some(n) => n.apply(&attn, pass)?,
            None => attn,
        };
        let x = (x + attn)?;
        let normed = blk.pre_mlp_norm.apply(&x, pass)?;
        let act = gated_mlp(&blk.gate_up, &normed, i, self.intermediate, Activation::GeluTanh, pass)?;
        let mlp = blk.down_proj.output(&act, i, pass)?;
        let mlp = match &blk.post_mlp_norm {
            Some(n) => n.apply(&mlp, pass)?,
            None => mlp,
        };
        Ok((x + mlp)?)
    }

    fn final_norm(&self, x: &Tensor, pass: Pass) -> Result<Tensor> {
        self.norm.apply(x, pass)
    }

    fn logits(&self, hidden: &Tensor, pass: Pass) -> Result<Tensor> {
        let logits = match pass {
            Pass::Infer => hidden.broadcast_matmul(&self.embed.t()?)?,
            Pass::Train(_) => frozen_matmul(hidden, &self.embed.t()?)?,
        };
        Ok(match self.final_softcap {
            Some(cap) => ((logits / cap)?.tanh()? * cap)?,
            None => logits,
        })
    }

    fn sites(&self) -> Vec<(Site, usize, usize)> {
        let linears = |(i, b): (usize, &Block)| {
            [&b.qkv, &b.o_proj, &b.gate_up, &b.down_proj]
                .into_iter()
                .flat_map(move |lin| lin.sites(i))
                .collect::<Vec<_>>()
        };
        self.blocks.iter().enumerate().flat_map(linears).collect()
    }

    fn linears_mut(&mut self) -> Vec<&mut Linear> {
        self.blocks.iter_mut().flat_map(|b| [&mut b.qkv, &mut b.o_proj, &mut b.gate_up, &mut b.down_proj]).collect()
    }

    fn hidden_size(&self) -> usize {
        self.embed.dim(1).unwrap_or(0)
    }

    fn dtype(&self) -> DType {
        self.dtype
    }

    fn device(&self) -> &Device {
        &self.device
    }
}
