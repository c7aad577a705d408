//! Building blocks shared by the model families: linear layers, RMSNorm, rotary embeddings,
//! attention masks and grouped-query attention.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Module, Shape, Tensor, D};
use rayon::prelude::*;

use super::cpu;
use super::trainable::{self, AttentionSpec, Part, Pass, Projection, Site};
use crate::error::{Error, Result};
use crate::load::weights::Weights;

/// Whether tokens see only earlier tokens (causal) or the whole sequence (bidirectional).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionMode {
    Causal,
    Bidirectional,
}

/// `y = x W^T + b`, with `W^T` stored contiguous (`[in, out]`) so that matrix products read it in order,
/// or in 8 bits for inference on the CPU ([`Linear::quantize`]). It computes one projection or several
/// fused ones (their outputs side by side, in `parts` order).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    parts: Vec<(Projection, usize)>,
}

#[derive(Debug, Clone)]
enum Weight {
    /// `W^T`, `[in, out]`.
    Dense(Tensor),
    /// With the bias read out once, for the products' last step.
    Int8(cpu::q8::Matrix, Option<Vec<f32>>),
}

impl Linear {
    /// From a Hugging Face weight `[out, in]`.
    pub fn new(proj: Projection, weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let out = weight.dim(0)?;
        Ok(Self { weight: Weight::Dense(weight.t()?.contiguous()?), bias, parts: vec![(proj, out)] })
    }

    /// Several projections of the same input fused into one matrix (rows stacked in order).
    pub fn fused(parts: &[Linear]) -> Result<Self> {
        let weights = parts.iter().map(|p| p.dense()).collect::<Result<Vec<&Tensor>>>()?;
        let first = weights.first().ok_or_else(|| Error::Input("no layers to fuse".into()))?;
        let (dtype, device) = (first.dtype(), first.device());
        let bias = if parts.iter().all(|p| p.bias.is_some()) {
            let biases: Vec<&Tensor> = parts.iter().filter_map(|p| p.bias.as_ref()).collect();
            Some(Tensor::cat(&biases, 0)?)
        } else if parts.iter().any(|p| p.bias.is_some()) {
            let biases = parts
                .iter()
                .map(|p| match &p.bias {
                    Some(b) => Ok(b.clone()),
                    None => Tensor::zeros(p.outputs(), dtype, device),
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            Some(Tensor::cat(&biases, 0)?)
        } else {
            None
        };
        let parts = parts.iter().flat_map(|p| p.parts.iter().copied()).collect();
        Ok(Self { weight: Weight::Dense(Tensor::cat(&weights, 1)?), bias, parts })
    }

    /// Stores the weights in 8 bits, one scale per output, for inference on the CPU: the products
    /// then run on integers (`model/cpu/q8.rs`). Training needs the dense weights.
    pub fn quantize(&mut self) -> Result<()> {
        let weight_t = self.dense()?;
        let (inp, out) = weight_t.dims2()?;
        if !weight_t.device().is_cpu() || weight_t.dtype() != DType::F32 {
            let msg = format!(
                "8-bit products run on the CPU from f32 weights, not {:?} on {:?}",
                weight_t.dtype(),
                weight_t.device()
            );
            return Err(Error::Option { option: "quantize", msg });
        }
        let matrix =
            cpu::q8::Matrix::from_transposed(&weight_t.flatten_all()?.to_vec1::<f32>()?, inp, out).ok_or_else(
                || Error::Option { option: "quantize", msg: format!("a [{inp}, {out}] weight cannot be quantized") },
            )?;
        let bias = self.bias.as_ref().map(|b| b.to_dtype(DType::F32)?.to_vec1::<f32>()).transpose()?;
        self.weight = Weight::Int8(matrix, bias);
        Ok(())
    }

    fn dense(&self) -> Result<&Tensor> {
        match &self.weight {
            Weight::Dense(w) => Ok(w),
            Weight::Int8(..) => {
                Err(Error::Option { option: "quantize", msg: "8-bit weights are for inference only".into() })
            }
        }
    }

    fn inputs(&self) -> usize {
        match &self.weight {
            Weight::Dense(w) => w.dim(0).unwrap_or(0),
            Weight::Int8(m, _) => m.inputs(),
        }
    }

    fn outputs(&self) -> usize {
        self.parts.iter().map(|&(_, out)| out).sum()
    }

    /// Projection `proj` of the block whose weights are under `block` (`model.layers.3`).
    pub fn load(
        w: &Weights,
        block: &str,
        proj: Projection,
        out: usize,
        inp: usize,
        bias: bool,
        dtype: DType,
    ) -> Result<Self> {
        let prefix = format!("{block}.{}", proj.module());
        let weight = w.take(&format!("{prefix}.weight"), (out, inp), dtype)?;
        let bias = if bias { Some(w.take(&format!("{prefix}.bias"), out, dtype)?) } else { None };
        Self::new(proj, weight, bias)
    }

    /// The projections this layer computes, with their input and output sizes.
    pub fn sites(&self, layer: usize) -> impl Iterator<Item = (Site, usize, usize)> + '_ {
        let inp = self.inputs();
        self.parts.iter().map(move |&(proj, out)| (Site { layer, proj }, inp, out))
    }

    /// Each part's offset and width in the fused output.
    fn spans(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.parts.iter().scan(0, |offset, &(_, out)| {
            let start = *offset;
            *offset += out;
            Some((start, out))
        })
    }

    /// The whole output, every part side by side: one product for inference; for training one op, the
    /// frozen product plus the tuning's LoRA updates of the tuned parts.
    pub fn output(&self, x: &Tensor, layer: usize, pass: Pass) -> Result<Tensor> {
        let Pass::Train(tuning) = pass else {
            return Ok(self.forward(x)?);
        };
        let update = |proj| tuning.low_rank(Site { layer, proj }).map(|lr| (lr, tuning.dropout_seed()));
        let parts: Vec<Part> = self.parts.iter().map(|&(proj, width)| Part { width, update: update(proj) }).collect();
        if parts.iter().any(|p| p.update.is_some()) {
            return trainable::lora_linear(x, self.dense()?, self.bias.as_ref(), &parts);
        }
        let y = trainable::frozen_matmul(x, self.dense()?)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// The outputs of the parts, as views of `output`.
    pub fn apply(&self, x: &Tensor, layer: usize, pass: Pass) -> Result<Vec<Tensor>> {
        let y = self.output(x, layer, pass)?;
        if self.parts.len() == 1 {
            return Ok(vec![y]);
        }
        self.spans().map(|(start, out)| Ok(y.narrow(D::Minus1, start, out)?)).collect()
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let weight_t = match &self.weight {
            Weight::Dense(w) => w,
            Weight::Int8(m, bias) => return cpu::q8::linear(x, m, bias.as_deref()),
        };
        if let Some(y) = cpu::linear::linear(x, weight_t, self.bias.as_ref())? {
            return Ok(y);
        }
        let dims = x.dims().to_vec();
        let (rows, inp) = (dims[..dims.len() - 1].iter().product::<usize>(), dims[dims.len() - 1]);
        let y = x.reshape((rows, inp))?.matmul(weight_t)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out = dims;
        *out.last_mut().expect("non-empty dims") = weight_t.dim(1)?;
        y.reshape(out)
    }
}

/// RMSNorm: `x / sqrt(mean(x^2) + eps) * scale`, accumulated in f32 (one fused pass for f32 inputs).
#[derive(Debug, Clone)]
pub struct RmsNorm {
    scale: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// `offset` is 1.0 for Gemma, whose weights store `scale - 1`.
    pub fn load(w: &Weights, name: &str, size: usize, eps: f64, offset: f64, dtype: DType) -> Result<Self> {
        let scale = (w.take(name, size, DType::F32)? + offset)?;
        Ok(Self { scale: scale.to_dtype(dtype)?, eps })
    }

    /// The fused kernel records no gradient: training takes an op with its own backward.
    pub fn apply(&self, x: &Tensor, pass: Pass) -> Result<Tensor> {
        if pass.is_train() {
            return trainable::rms_norm(x, &self.scale, self.eps);
        }
        Ok(self.forward(x)?)
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if x.dtype() == DType::F32 {
            return candle_nn::ops::rms_norm(&x.contiguous()?, &self.scale, self.eps as f32);
        }
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?;
        let ms = xf.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = xf.broadcast_div(&(ms + self.eps)?.sqrt()?)?;
        normed.to_dtype(dtype)?.broadcast_mul(&self.scale)
    }
}

/// How rotary frequencies are derived from the base (Hugging Face `rope_scaling`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    Linear { factor: f64 },
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position: f64 },
}

/// Rotary position embedding tables for one base frequency.
#[derive(Debug, Clone)]
pub struct Rotary {
    inv_freq: Vec<f32>,
}

impl Rotary {
    pub fn new(head_dim: usize, base: f64, scaling: &RopeScaling) -> Self {
        let inv_freq = (0..head_dim / 2)
            .map(|i| {
                let f = 1.0 / base.powf((2 * i) as f64 / head_dim as f64);
                scale_frequency(f, scaling) as f32
            })
            .collect();
        Self { inv_freq }
    }

    /// cos and sin tables of shape `[seq_len, head_dim / 2]`.
    pub fn tables(&self, seq_len: usize, dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(seq_len * half);
        let mut sin = Vec::with_capacity(seq_len * half);
        for pos in 0..seq_len {
            for &f in &self.inv_freq {
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (seq_len, half), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (seq_len, half), device)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }
}

fn scale_frequency(f: f64, scaling: &RopeScaling) -> f64 {
    match *scaling {
        RopeScaling::None => f,
        RopeScaling::Linear { factor } => f / factor,
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position } => {
            let wavelen = 2.0 * std::f64::consts::PI / f;
            let low_wavelen = original_max_position / low_freq_factor;
            let high_wavelen = original_max_position / high_freq_factor;
            if wavelen < high_wavelen {
                f
            } else if wavelen > low_wavelen {
                f / factor
            } else {
                let smooth = (original_max_position / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                (1.0 - smooth) * f / factor + smooth * f
            }
        }
    }
}

/// Applies rotary embeddings (the rotate-half convention) to `x: [batch, heads, seq, head_dim]`. A view
/// of a contiguous `[batch, seq, heads, head_dim]` tensor is rotated in that layout (no transposed
/// copy) and comes back as the same kind of view.
fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let seq_major = x.transpose(1, 2)?;
    if seq_major.is_contiguous() {
        return Ok(candle_nn::rotary_emb::rope_thd(&seq_major, cos, sin)?.transpose(1, 2)?);
    }
    Ok(candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)?)
}

/// Self-attention of one block from its fused projection `qkv: [b, l, (heads + 2 kv_heads) * d]`: rotary
/// embeddings on q and k, then attention over v with the context's mask; returns `[b, l, heads * d]`.
/// Training, and inference on the CPU in f32, take one op that reads q, k and v where they are (with its
/// own backward, and the tuning's attention dropout); other devices and dtypes compose candle's ops.
pub(crate) fn rotary_attention(qkv: &Tensor, attend: &Attend, spec: AttentionSpec, pass: Pass) -> Result<Tensor> {
    let Attend { cos, sin, bias } = attend;
    if let Pass::Train(tuning) = pass {
        let dropout = tuning.dropout_seed().map(|seed| (tuning.attention_dropout(), seed));
        return trainable::attention(qkv, cos, sin, bias, spec, dropout);
    }
    if qkv.device().is_cpu() && qkv.dtype() == DType::F32 {
        return trainable::attention(qkv, cos, sin, bias, spec, None);
    }
    let (b, l, _) = qkv.dims3()?;
    let AttentionSpec { heads, kv_heads, head_dim: d, .. } = spec;
    let part = |first: usize, n: usize| -> Result<Tensor> {
        Ok(qkv.narrow(D::Minus1, first * d, n * d)?.reshape((b, l, n, d))?.transpose(1, 2)?)
    };
    let q = apply_rotary(&part(0, heads)?, cos, sin)?;
    let k = apply_rotary(&part(heads, kv_heads)?, cos, sin)?;
    attention(&q, &k, &part(heads + kv_heads, kv_heads)?, bias, spec.scale, spec.softcap)
}

/// The tensors every block of one batch reads: rotary tables and the attention bias, for global layers
/// and for sliding-window layers (the same tensors where a family has none).
pub struct Context {
    pub(crate) global: Attend,
    pub(crate) local: Attend,
}

/// Rotary tables and attention bias for one kind of layer.
#[derive(Clone)]
pub(crate) struct Attend {
    pub cos: Tensor,
    pub sin: Tensor,
    pub bias: Tensor,
}

/// Additive attention bias `[batch, 1, seq, seq]` for right-padded sequences of the given lengths:
/// 0 where query i may attend key j, a large negative value elsewhere. A sliding window limits causal
/// attention to `i - j < window`; bidirectional attention sees every real token, as the reference's
/// bidirectional models do (they drop the window along with the causal mask).
pub fn attention_bias(
    lengths: &[usize],
    seq_len: usize,
    mode: AttentionMode,
    window: Option<usize>,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let blocked = if dtype == DType::F16 { -6.0e4f32 } else { -1.0e9f32 };
    let mut bias = vec![0f32; lengths.len() * seq_len * seq_len];
    for (b, &len) in lengths.iter().enumerate() {
        for i in 0..seq_len {
            let row = &mut bias[(b * seq_len + i) * seq_len..(b * seq_len + i + 1) * seq_len];
            for (j, v) in row.iter_mut().enumerate() {
                let visible =
                    j < len && (mode == AttentionMode::Bidirectional || (j <= i && window.is_none_or(|w| i - j < w)));
                if !visible {
                    *v = blocked;
                }
            }
        }
    }
    Ok(Tensor::from_vec(bias, (lengths.len(), 1, seq_len, seq_len), device)?.to_dtype(dtype)?)
}

/// Scaled dot-product attention with grouped-query heads, for inference.
/// `q: [b, heads, l, d]`, `k, v: [b, kv_heads, l, d]`, `bias: [b, 1, l, l]`; returns `[b, l, heads * d]`.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    scale: f64,
    softcap: Option<f64>,
) -> Result<Tensor> {
    if let Some(out) = cpu::attention::attention(q, k, v, bias, scale, softcap)? {
        return Ok(out);
    }
    let (b, heads, l, d) = q.dims4()?;
    let groups = heads / k.dim(1)?;
    let q = q.contiguous()?;
    let k = repeat_kv(k, groups)?;
    let v = repeat_kv(v, groups)?;
    let mut scores = (q.matmul(&k.t()?)? * scale)?;
    if let Some(cap) = softcap {
        scores = ((scores / cap)?.tanh()? * cap)?;
    }
    let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(bias)?)?;
    let out = probs.matmul(&v)?;
    Ok(out.transpose(1, 2)?.reshape((b, l, heads * d))?)
}

fn repeat_kv(x: &Tensor, groups: usize) -> Result<Tensor> {
    if groups == 1 {
        return Ok(x.contiguous()?);
    }
    let (b, kv, l, d) = x.dims4()?;
    Ok(x.unsqueeze(2)?.expand((b, kv, groups, l, d))?.reshape((b, kv * groups, l, d))?)
}

/// The gated MLP: `act(gate) * up` from the fused gate/up projection. For inference on the CPU in f32 the
/// activation is one pass without intermediate tensors; training takes an op with its own backward.
pub fn gated_mlp(gate_up: &Linear, x: &Tensor, layer: usize, n: usize, act: Activation, pass: Pass) -> Result<Tensor> {
    let gate_up = gate_up.output(x, layer, pass)?;
    if pass.is_train() {
        return trainable::gated(&gate_up, act == Activation::GeluTanh);
    }
    if gate_up.device().is_cpu() && gate_up.dtype() == DType::F32 {
        return Ok(gate_up.contiguous()?.apply_op1_no_bwd(&Gated { n, act })?);
    }
    let gate = gate_up.narrow(D::Minus1, 0, n)?;
    let gate = match act {
        Activation::Silu => candle_nn::ops::silu(&gate)?,
        Activation::GeluTanh => gate.gelu()?,
    };
    Ok((gate * gate_up.narrow(D::Minus1, n, n)?)?)
}

/// The MLP activations of the supported families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// GELU with the tanh approximation (`gelu_pytorch_tanh`).
    GeluTanh,
}

struct Gated {
    n: usize,
    act: Activation,
}

impl CustomOp1 for Gated {
    fn name(&self) -> &'static str {
        "gated-activation"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("gated-activation: expects contiguous f32");
        };
        let n = self.n;
        let mut out = vec![0f32; (end - start) / 2];
        let row = |(row, dst): (&[f32], &mut [f32])| {
            let (gate, up) = row.split_at(n);
            match self.act {
                Activation::Silu => cpu::simd::silu_mul(gate, up, dst),
                Activation::GeluTanh => {
                    dst.iter_mut().zip(gate.iter().zip(up)).for_each(|(o, (&g, &u))| *o = gelu_tanh(g) * u)
                }
            }
        };
        let rows = data[start..end].par_chunks_exact(2 * n).zip(out.par_chunks_exact_mut(n));
        rows.with_min_len(16).for_each(row);
        let mut dims = layout.shape().dims().to_vec();
        *dims.last_mut().expect("non-empty dims") = n;
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

/// GELU with the tanh approximation.
fn gelu_tanh(x: f32) -> f32 {
    let inner = (2.0f32 / std::f32::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
    0.5 * x * (1.0 + inner.tanh())
}
