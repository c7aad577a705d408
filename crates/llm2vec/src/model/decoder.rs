//! The decoder stack that the Llama and Gemma families share: token embeddings, pre-norm blocks of
//! rotary attention and a gated MLP, a final RMSNorm and the language-model head. A family's loader
//! fills it from its config and weights; the parts only some families have (Gemma's embedding scale,
//! q/k norms, sandwich norms, sliding-window layers and soft caps) are `None` where a family has none.
//! The `config.json` fields every decoder family reads alike live here too (`DecoderConfig`), with their
//! checks; each family's `Config` adds its own.

use candle_core::{DType, Device, Tensor, D};
use serde::Deserialize;

use super::attention::{attention_bias, self_attention, Attend, AttentionMode, AttentionSpec, Context};
use super::backbone::Backbone;
use super::embedding::Embedding;
use super::linear::Linear;
use super::mlp::{gated_mlp, Activation};
use super::norm::RmsNorm;
use super::ops::frozen_matmul;
use super::rotary::Rotary;
use super::tuning::{Pass, Projection, Site};
use crate::error::{Error, Result};
use crate::weights::Weights;

/// The fields of a Hugging Face `config.json` that every decoder family reads the same way; a family's
/// `Config` holds them flattened (`#[serde(flatten)]`) beside its own.
#[derive(Debug, Clone, Deserialize)]
pub struct DecoderConfig {
    /// `llama`, `mistral`, `qwen2`, `gemma`, `gemma2` or `gemma3_text`.
    pub model_type: String,
    /// The width of the hidden states.
    pub hidden_size: usize,
    /// The width inside the MLP.
    pub intermediate_size: usize,
    /// The number of blocks.
    pub num_hidden_layers: usize,
    /// The number of query heads.
    pub num_attention_heads: usize,
    /// The number of key/value heads (grouped-query attention); as many as the query heads when absent.
    pub num_key_value_heads: Option<usize>,
    /// The number of token embeddings.
    pub vocab_size: usize,
    /// The RMSNorms' epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// The rotary embedding's base.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// The rotary embedding's scaling, as `config.json` has it (`RopeScaling::parse` reads it).
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// The sliding window's width, on the layers that have one.
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Whether the attention's projections have biases.
    #[serde(default)]
    pub attention_bias: bool,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}

impl DecoderConfig {
    /// The key/value heads.
    pub(crate) fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// The sizes of a block, with the head size and the q/k/v and MLP biases that each family reads its own
    /// way (the output projection's bias is `attention_bias` in every family).
    pub(crate) fn sizes(&self, head_dim: usize, qkv_bias: bool, mlp_bias: bool) -> Sizes {
        Sizes {
            hidden: self.hidden_size,
            heads: self.num_attention_heads,
            kv_heads: self.kv_heads(),
            head_dim,
            intermediate: self.intermediate_size,
            qkv_bias,
            o_bias: self.attention_bias,
            mlp_bias,
        }
    }

    /// Checks the head counts, and the head size (which each family reads its own way): key/value heads
    /// that divide the query heads, an even size for the rotary embedding.
    pub(crate) fn check_heads(&self, head_dim: usize, path: &std::path::Path) -> Result<()> {
        let err = |field: &str, msg: String| Error::Config { path: path.into(), field: field.into(), msg };
        let (heads, kv) = (self.num_attention_heads, self.kv_heads());
        if heads == 0 {
            return Err(err("num_attention_heads", "must be positive".into()));
        }
        if kv == 0 || !heads.is_multiple_of(kv) {
            return Err(err(
                "num_key_value_heads",
                format!("{kv} must be positive and divide num_attention_heads {heads}"),
            ));
        }
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(err("head_dim", format!("{head_dim} must be even and positive")));
        }
        Ok(())
    }
}

/// A decoder: hidden states and logits.
pub struct Decoder {
    pub(crate) embed: Embedding,
    /// The embeddings' scale (Gemma: `sqrt(hidden)`).
    pub(crate) embed_scale: Option<f64>,
    pub(crate) blocks: Vec<Block>,
    pub(crate) norm: RmsNorm,
    /// `[vocab, hidden]`, often the embeddings themselves; not loaded for 8-bit inference.
    pub(crate) lm_head: Option<Tensor>,
    /// The rotary tables of every layer, or of the global ones where some layers are local.
    pub(crate) rotary: Rotary,
    /// A sliding window on every layer (Mistral).
    pub(crate) window: Option<usize>,
    /// The sliding-window layers, where a family alternates them with global ones (Gemma 2 and 3).
    pub(crate) local: Option<Local>,
    pub(crate) attention: AttentionSpec,
    pub(crate) activation: Activation,
    pub(crate) final_softcap: Option<f64>,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
}

/// The local layers' rotary base and window.
pub(crate) struct Local {
    pub rotary: Rotary,
    pub window: Option<usize>,
}

/// One pre-norm block: `x + attention(norm(x))`, then `x + mlp(norm(x))`.
pub(crate) struct Block {
    pub input_norm: RmsNorm,
    pub qkv: Linear,
    /// Per-head RMSNorm of q and k (Gemma 3).
    pub qk_norms: Option<(RmsNorm, RmsNorm)>,
    pub o_proj: Linear,
    /// Norms of the attention's and the MLP's outputs (Gemma 2 and 3: "sandwich" norms).
    pub post_attention_norm: Option<RmsNorm>,
    pub pre_mlp_norm: RmsNorm,
    pub post_mlp_norm: Option<RmsNorm>,
    pub gate_up: Linear,
    pub down_proj: Linear,
    /// Whether the block is one of the local (sliding-window) layers.
    pub sliding: bool,
}

/// The sizes of a block's projections and which of them have biases.
pub(crate) struct Sizes {
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub intermediate: usize,
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub mlp_bias: bool,
}

/// Reads the weights of one block, under `model.layers.{i}`.
pub(crate) struct BlockWeights<'a> {
    w: &'a Weights,
    prefix: String,
    sizes: &'a Sizes,
    /// RMSNorm epsilon and the offset of the stored scales.
    norm: (f64, f64),
    dtype: DType,
    /// Whether the linear layers take 8 bits ([`Linear::from_parts`]).
    quantize: bool,
}

impl<'a> BlockWeights<'a> {
    pub fn new(w: &'a Weights, layer: usize, sizes: &'a Sizes, norm: (f64, f64), dtype: DType, quantize: bool) -> Self {
        Self { w, prefix: format!("model.layers.{layer}"), sizes, norm, dtype, quantize }
    }

    /// The RMSNorm `name` (`input_layernorm`) of `size` values.
    pub fn norm(&self, name: &str, size: usize) -> Result<RmsNorm> {
        let (eps, offset) = self.norm;
        RmsNorm::load(self.w, &format!("{}.{name}.weight", self.prefix), size, eps, offset, self.dtype)
    }

    /// The projections `projs` (with their outputs) of `inp` inputs as one layer, their outputs side by
    /// side; in 8 bits, from the stored rows, when the block is quantized.
    fn linear(&self, projs: &[(Projection, usize)], inp: usize, bias: bool) -> Result<Linear> {
        let part = |&(proj, out): &(Projection, usize)| -> Result<_> {
            let name = format!("{}.{}", self.prefix, proj.module());
            let take = |what: &str, shape: &[usize]| self.w.take(&format!("{name}.{what}"), shape, self.dtype);
            Ok((proj, take("weight", &[out, inp])?, bias.then(|| take("bias", &[out])).transpose()?))
        };
        Linear::from_parts(projs.iter().map(part).collect::<Result<_>>()?, self.quantize)
    }

    /// q, k and v fused.
    pub fn qkv(&self) -> Result<Linear> {
        let Sizes { hidden: h, heads, kv_heads: kv, head_dim: hd, qkv_bias: b, .. } = *self.sizes;
        self.linear(&[(Projection::Q, heads * hd), (Projection::K, kv * hd), (Projection::V, kv * hd)], h, b)
    }

    pub fn o_proj(&self) -> Result<Linear> {
        let s = self.sizes;
        self.linear(&[(Projection::O, s.hidden)], s.heads * s.head_dim, s.o_bias)
    }

    /// The fused gate/up projection and the down projection.
    pub fn mlp(&self) -> Result<(Linear, Linear)> {
        let Sizes { hidden: h, intermediate: n, mlp_bias: b, .. } = *self.sizes;
        let gate_up = self.linear(&[(Projection::Gate, n), (Projection::Up, n)], h, b)?;
        Ok((gate_up, self.linear(&[(Projection::Down, h)], n, b)?))
    }
}

impl Block {
    fn linears(&self) -> [&Linear; 4] {
        [&self.qkv, &self.o_proj, &self.gate_up, &self.down_proj]
    }

    /// The fused q/k/v with the per-head norms of q and k applied (Gemma 3).
    fn normed_qkv(&self, qkv: Tensor, spec: &AttentionSpec, pass: Pass) -> Result<Tensor> {
        let Some((q_norm, k_norm)) = &self.qk_norms else {
            return Ok(qkv);
        };
        let (b, l, _) = qkv.dims3()?;
        let (heads, kv, hd) = (spec.heads, spec.kv_heads, spec.head_dim);
        let part = |first: usize, n: usize, norm: Option<&RmsNorm>| -> Result<Tensor> {
            let t = qkv.narrow(D::Minus1, first * hd, n * hd)?;
            match norm {
                Some(norm) => Ok(norm.apply(&t.reshape((b, l, n, hd))?, pass)?.reshape((b, l, n * hd))?),
                None => Ok(t),
            }
        };
        let parts = [part(0, heads, Some(q_norm))?, part(heads, kv, Some(k_norm))?, part(heads + kv, kv, None)?];
        Ok(Tensor::cat(&parts, D::Minus1)?)
    }
}

/// `norm(x)`, or `x` itself without a norm.
fn maybe_norm(norm: Option<&RmsNorm>, x: Tensor, pass: Pass) -> Result<Tensor> {
    match norm {
        Some(n) => n.apply(&x, pass),
        None => Ok(x),
    }
}

impl Backbone for Decoder {
    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let x = self.embed.lookup(ids)?;
        let Some(scale) = self.embed_scale else {
            return Ok(x);
        };
        let scale = Tensor::new(scale as f32, &self.device)?.to_dtype(self.dtype)?;
        Ok(x.broadcast_mul(&scale)?)
    }

    fn context(&self, lengths: &[usize], seq_len: usize, mode: AttentionMode) -> Result<Context> {
        let (cos, sin) = self.rotary.tables(seq_len, self.dtype, &self.device)?;
        let bias = attention_bias(lengths, seq_len, mode, self.window, self.dtype, &self.device)?;
        let global = Attend { rotary: Some((cos, sin)), bias };
        let Some(local) = &self.local else {
            return Ok(Context { global: global.clone(), local: global });
        };
        let (cos, sin) = local.rotary.tables(seq_len, self.dtype, &self.device)?;
        let bias = match local.window {
            Some(w) if mode == AttentionMode::Causal && self.blocks.iter().any(|b| b.sliding) => {
                attention_bias(lengths, seq_len, mode, Some(w), self.dtype, &self.device)?
            }
            _ => global.bias.clone(),
        };
        Ok(Context { global, local: Attend { rotary: Some((cos, sin)), bias } })
    }

    fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    fn block(&self, i: usize, x: &Tensor, ctx: &Context, pass: Pass) -> Result<Tensor> {
        let blk = &self.blocks[i];
        let attend = if blk.sliding { &ctx.local } else { &ctx.global };
        let qkv = blk.qkv.output(&blk.input_norm.apply(x, pass)?, i, pass)?;
        let qkv = blk.normed_qkv(qkv, &self.attention, pass)?;
        let attn = self_attention(&qkv, attend, self.attention, pass)?;
        let attn = maybe_norm(blk.post_attention_norm.as_ref(), blk.o_proj.output(&attn, i, pass)?, pass)?;
        let x = (x + attn)?;
        let normed = blk.pre_mlp_norm.apply(&x, pass)?;
        let act = gated_mlp(&blk.gate_up, &normed, i, self.activation, pass)?;
        let mlp = maybe_norm(blk.post_mlp_norm.as_ref(), blk.down_proj.output(&act, i, pass)?, pass)?;
        Ok((x + mlp)?)
    }

    fn final_norm(&self, x: &Tensor, pass: Pass) -> Result<Tensor> {
        self.norm.apply(x, pass)
    }

    fn logits(&self, hidden: &Tensor, pass: Pass) -> Result<Tensor> {
        let Some(lm_head) = &self.lm_head else {
            return Err(Error::Option {
                option: "quantize",
                msg: "8-bit models are for embeddings only (no LM head)".into(),
            });
        };
        let logits = match pass {
            Pass::Infer => hidden.broadcast_matmul(&lm_head.t()?)?,
            Pass::Train(_) => frozen_matmul(hidden, &lm_head.t()?)?,
        };
        Ok(match self.final_softcap {
            Some(cap) => ((logits / cap)?.tanh()? * cap)?,
            None => logits,
        })
    }

    fn sites(&self) -> Vec<(Site, usize, usize)> {
        let sites =
            |(i, b): (usize, &Block)| b.linears().into_iter().flat_map(move |lin| lin.sites(i)).collect::<Vec<_>>();
        self.blocks.iter().enumerate().flat_map(sites).collect()
    }

    fn hidden_size(&self) -> usize {
        self.embed.hidden()
    }

    fn dtype(&self) -> DType {
        self.dtype
    }

    fn device(&self) -> &Device {
        &self.device
    }
}
