//! The Llama family: Llama 1/2/3, Mistral and Qwen2 share one decoder block; they differ in
//! projection biases (Qwen2), sliding-window attention (Mistral) and rope scaling (Llama 3).

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::layers::{
    attention_bias, gated_mlp, rotary_attention, Activation, Attend, AttentionMode, Context, Linear, RmsNorm, Rotary,
};
use super::trainable::{frozen_matmul, AttentionSpec, Pass, Projection, Site};
use super::{parse_rope_scaling, Backbone};
use crate::error::{Error, Result};
use crate::load::weights::Weights;

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
        parse_rope_scaling(self.rope_scaling.as_ref(), path).map(|_| ())
    }
}

struct Block {
    input_norm: RmsNorm,
    qkv: Linear,
    o_proj: Linear,
    post_attention_norm: RmsNorm,
    gate_up: Linear,
    down_proj: Linear,
}

/// A Llama-family decoder without its language-model head's sampling: hidden states and logits.
pub struct Model {
    embed: Tensor,
    blocks: Vec<Block>,
    norm: RmsNorm,
    lm_head: Tensor,
    rotary: Rotary,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    intermediate: usize,
    window: Option<usize>,
    dtype: DType,
    device: Device,
}

impl Model {
    pub fn load(cfg: &Config, w: &Weights, dtype: DType, device: &Device) -> Result<Self> {
        cfg.validate(w.source())?;
        let (h, hd) = (cfg.hidden_size, cfg.head_dim());
        let (heads, kv) = (cfg.num_attention_heads, cfg.kv_heads());
        let embed = w.take("model.embed_tokens.weight", (cfg.vocab_size, h), dtype)?;
        let blocks = (0..cfg.num_hidden_layers)
            .map(|i| {
                let p = format!("model.layers.{i}");
                let lin = |proj, out, inp, bias| Linear::load(w, &p, proj, out, inp, bias, dtype);
                let norm =
                    |name: &str| RmsNorm::load(w, &format!("{p}.{name}.weight"), h, cfg.rms_norm_eps, 0.0, dtype);
                let qb = cfg.qkv_bias();
                Ok(Block {
                    input_norm: norm("input_layernorm")?,
                    qkv: Linear::fused(&[
                        lin(Projection::Q, heads * hd, h, qb)?,
                        lin(Projection::K, kv * hd, h, qb)?,
                        lin(Projection::V, kv * hd, h, qb)?,
                    ])?,
                    o_proj: lin(Projection::O, h, heads * hd, cfg.attention_bias)?,
                    post_attention_norm: norm("post_attention_layernorm")?,
                    gate_up: Linear::fused(&[
                        lin(Projection::Gate, cfg.intermediate_size, h, cfg.mlp_bias)?,
                        lin(Projection::Up, cfg.intermediate_size, h, cfg.mlp_bias)?,
                    ])?,
                    down_proj: lin(Projection::Down, h, cfg.intermediate_size, cfg.mlp_bias)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let lm_head = if cfg.tie_word_embeddings || !w.contains("lm_head.weight") {
            embed.clone()
        } else {
            w.take("lm_head.weight", (cfg.vocab_size, h), dtype)?
        };
        let scaling = parse_rope_scaling(cfg.rope_scaling.as_ref(), w.source())?;
        Ok(Self {
            embed,
            blocks,
            norm: RmsNorm::load(w, "model.norm.weight", h, cfg.rms_norm_eps, 0.0, dtype)?,
            lm_head,
            rotary: Rotary::new(hd, cfg.rope_theta, &scaling),
            heads,
            kv_heads: kv,
            head_dim: hd,
            intermediate: cfg.intermediate_size,
            window: cfg.window(),
            dtype,
            device: device.clone(),
        })
    }
}

impl Backbone for Model {
    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(self.embed.embedding(&ids.flatten_all()?)?.reshape((ids.dim(0)?, ids.dim(1)?, ()))?)
    }

    fn context(&self, lengths: &[usize], seq_len: usize, mode: AttentionMode) -> Result<Context> {
        let (cos, sin) = self.rotary.tables(seq_len, self.dtype, &self.device)?;
        let bias = attention_bias(lengths, seq_len, mode, self.window, self.dtype, &self.device)?;
        let attend = Attend { cos, sin, bias };
        Ok(Context { global: attend.clone(), local: attend })
    }

    fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    fn block(&self, i: usize, x: &Tensor, ctx: &Context, pass: Pass) -> Result<Tensor> {
        let blk = &self.blocks[i];
        let (hd, heads, kv) = (self.head_dim, self.heads, self.kv_heads);
        let qkv = blk.qkv.output(&blk.input_norm.apply(x, pass)?, i, pass)?;
        let spec = AttentionSpec { heads, kv_heads: kv, head_dim: hd, scale: 1.0 / (hd as f64).sqrt(), softcap: None };
        let attn = rotary_attention(&qkv, &ctx.global, spec, pass)?;
        let x = (x + blk.o_proj.output(&attn, i, pass)?)?;
        let normed = blk.post_attention_norm.apply(&x, pass)?;
        let act = gated_mlp(&blk.gate_up, &normed, i, self.intermediate, Activation::Silu, pass)?;
        Ok((x + blk.down_proj.output(&act, i, pass)?)?)
    }

    fn final_norm(&self, x: &Tensor, pass: Pass) -> Result<Tensor> {
        self.norm.apply(x, pass)
    }

    fn logits(&self, hidden: &Tensor, pass: Pass) -> Result<Tensor> {
        match pass {
            Pass::Infer => Ok(hidden.broadcast_matmul(&self.lm_head.t()?)?),
            Pass::Train(_) => frozen_matmul(hidden, &self.lm_head.t()?),
        }
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
