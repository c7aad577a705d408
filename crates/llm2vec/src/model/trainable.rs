//! The training side of a forward pass: the `Tuning` hook through which a trainer supplies LoRA
//! updates and dropout, and fused ops with their own backward (candle's fused kernels record no
//! gradient, and composing them from small ops keeps many activations alive): LoRA linear layers
//! over frozen weights, RMSNorm, rotary embedding, masked softmax, the gated MLP activation and
//! dropout whose masks are regenerated from a seed in backward instead of stored.

use candle_core::backend::BackendStorage;
use candle_core::op::BackpropOp;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Storage, Tensor, D};

use crate::error::{Error, Result};

/// The projections of a decoder block that LoRA adapts, with their Hugging Face module names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Projection {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Projection {
    pub const ALL: [Projection; 7] =
        [Projection::Q, Projection::K, Projection::V, Projection::O, Projection::Gate, Projection::Up, Projection::Down];

    /// The module's path inside a block (`self_attn.q_proj`, ...).
    pub fn module(self) -> &'static str {
        match self {
            Projection::Q => "self_attn.q_proj",
            Projection::K => "self_attn.k_proj",
            Projection::V => "self_attn.v_proj",
            Projection::O => "self_attn.o_proj",
            Projection::Gate => "mlp.gate_proj",
            Projection::Up => "mlp.up_proj",
            Projection::Down => "mlp.down_proj",
        }
    }

    /// The last part of the module name (`q_proj`), as PEFT's `target_modules` lists it.
    pub fn short_name(self) -> &'static str {
        self.module().rsplit('.').next().unwrap_or_default()
    }
}

/// One projection of one block, with its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Site {
    pub layer: usize,
    pub proj: Projection,
}

impl Site {
    /// The Hugging Face module path, `layers.3.self_attn.q_proj` (without the `model.` prefix, as the
    /// reference's bare encoder model names it).
    pub fn module_path(self) -> String {
        format!("layers.{}.{}", self.layer, self.proj.module())
    }
}

/// A LoRA update `dropout(x) A^T B^T * scale`, A `[r, in]` and B `[out, r]` (trainable variables).
#[derive(Clone)]
pub struct LowRank {
    pub a: Tensor,
    pub b: Tensor,
    pub scale: f64,
    pub dropout: f64,
}

/// What a trainer adds to the frozen model during a training forward pass.
pub trait Tuning {
    /// The LoRA update of projection `site`, if that projection is tuned.
    fn low_rank(&self, site: Site) -> Option<LowRank>;
    /// A seed for the next dropout mask, or `None` when dropout is off (evaluation).
    fn dropout_seed(&self) -> Option<u64>;
    /// Dropout probability on the attention probabilities.
    fn attention_dropout(&self) -> f64;
}

/// How a forward pass runs.
#[derive(Clone, Copy)]
pub enum Pass<'a> {
    /// Inference: fused kernels, no gradients.
    Infer,
    /// Training: every op records gradients, frozen weights get none, and `Tuning` adds its updates.
    Train(&'a dyn Tuning),
}

impl Pass<'_> {
    pub fn is_train(&self) -> bool {
        matches!(self, Pass::Train(_))
    }
}

/// `x Wt` over the last axis of `x` for a frozen `weight_t: [in, out]`: on the CPU the product's backward
/// yields the input's gradient only (candle's matmul also computes and stores one for the weight).
pub fn frozen_matmul(x: &Tensor, weight_t: &Tensor) -> Result<Tensor> {
    let (in_dim, out_dim) = weight_t.dims2()?;
    let dims = x.dims();
    if dims.last() != Some(&in_dim) {
        return Err(Error::Input(format!("frozen matmul: input {dims:?} does not end in {in_dim}")));
    }
    let flat = x.reshape((x.elem_count() / in_dim, in_dim))?;
    let y = if x.device().is_cpu() && x.dtype() == weight_t.dtype() {
        flat.contiguous()?.apply_op1(FrozenMatmul { weight_t: weight_t.detach() })?
    } else {
        flat.matmul(&weight_t.detach())?
    };
    Ok(y.reshape(with_last(dims, out_dim))?)
}

struct FrozenMatmul {
    weight_t: Tensor,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (w_guard, w_layout) = self.weight_t.storage_and_layout();
        let Storage::Cpu(w) = &*w_guard else {
            candle_core::bail!("frozen-matmul: the weight is not on the CPU");
        };
        let (m, k) = layout.shape().dims2()?;
        let n = w_layout.shape().dims2()?.1;
        Ok((storage.matmul(w, (1, m, n, k), layout, w_layout)?, Shape::from((m, n))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.weight_t.t()?)?))
    }
}

fn with_last(dims: &[usize], last: usize) -> Vec<usize> {
    let mut out = dims.to_vec();
    if let Some(l) = out.last_mut() {
        *l = last;
    }
    out
}

/// Runs `f` on CPU tensors viewing the op's inputs (without history) and returns its output's storage.
/// The copies this makes are cheap next to the products the ops compute.
fn on_cpu(inputs: &[(&CpuStorage, &Layout)], f: impl FnOnce(&[Tensor]) -> candle_core::Result<Tensor>) -> candle_core::Result<(CpuStorage, Shape)> {
    let tensors = inputs.iter().map(|(s, l)| view(s, l)).collect::<candle_core::Result<Vec<_>>>()?;
    let out = f(&tensors)?.contiguous()?;
    let (guard, layout) = out.storage_and_layout();
    let (Storage::Cpu(s), Some((start, end))) = (&*guard, layout.contiguous_offsets()) else {
        candle_core::bail!("trainable op: expected contiguous CPU output");
    };
    let storage = if start == 0 && end == storage_len(s)? { s.clone() } else { narrow_storage(s, start, end)? };
    Ok((storage, out.shape().clone()))
}

fn storage_len(s: &CpuStorage) -> candle_core::Result<usize> {
    Ok(match s {
        CpuStorage::F32(v) => v.len(),
        CpuStorage::F64(v) => v.len(),
        CpuStorage::BF16(v) => v.len(),
        CpuStorage::F16(v) => v.len(),
        _ => candle_core::bail!("trainable op: float tensors only"),
    })
}

fn narrow_storage(s: &CpuStorage, start: usize, end: usize) -> candle_core::Result<CpuStorage> {
    Ok(match s {
        CpuStorage::F32(v) => CpuStorage::F32(v[start..end].to_vec()),
        CpuStorage::F64(v) => CpuStorage::F64(v[start..end].to_vec()),
        CpuStorage::BF16(v) => CpuStorage::BF16(v[start..end].to_vec()),
        CpuStorage::F16(v) => CpuStorage::F16(v[start..end].to_vec()),
        _ => candle_core::bail!("trainable op: float tensors only"),
    })
}

fn view(storage: &CpuStorage, layout: &Layout) -> candle_core::Result<Tensor> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("trainable op: expected a contiguous input");
    };
    let len = storage_len(storage)?;
    let all = Tensor::from_storage(Storage::Cpu(storage.clone()), Shape::from(len), BackpropOp::none(), false);
    all.narrow(0, start, end - start)?.reshape(layout.shape())
}

/// Multipliers of inverted dropout for `n` elements: 0 with probability `p`, else `1 / (1 - p)`. Element `i`'s
/// draw (16 bits of a hash of `(seed, i / 4)`) depends only on the seed and its index, so backward regenerates
/// the mask instead of storing it.
fn dropout_mask(seed: u64, p: f64, shape: &Shape, dtype: DType, device: &candle_core::Device) -> candle_core::Result<Tensor> {
    let keep = (1.0 / (1.0 - p)) as f32;
    let threshold = (p * 65536.0).round() as u64;
    let n = shape.elem_count();
    let mut mask = Vec::with_capacity(n);
    for block in 0..n.div_ceil(4) as u64 {
        let bits = mix(seed, block);
        for k in 0..4 {
            mask.push(if (bits >> (16 * k)) & 0xFFFF < threshold { 0.0 } else { keep });
        }
    }
    mask.truncate(n);
    Tensor::from_vec(mask, shape, device)?.to_dtype(dtype)
}

fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Inverted dropout with the mask drawn from `seed` (regenerated in backward).
pub fn dropout(x: &Tensor, p: f64, seed: u64) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    Ok(x.contiguous()?.apply_op1(Dropout { p, seed })?)
}

struct Dropout {
    p: f64,
    seed: u64,
}

impl CustomOp1 for Dropout {
    fn name(&self) -> &'static str {
        "dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        on_cpu(&[(s, l)], |t| t[0].mul(&dropout_mask(self.seed, self.p, t[0].shape(), t[0].dtype(), t[0].device())?))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.mul(&dropout_mask(self.seed, self.p, arg.shape(), arg.dtype(), arg.device())?)?))
    }
}

/// A projection with a frozen weight `weight_t: [in, out]` (and bias) plus a LoRA update, in one op:
/// only the output is kept for backward; the dropout mask is regenerated from `seed`.
pub fn lora_linear(x: &Tensor, weight_t: &Tensor, bias: Option<&Tensor>, lr: &LowRank, seed: Option<u64>) -> Result<Tensor> {
    let (in_dim, out_dim) = weight_t.dims2()?;
    let dims = x.dims().to_vec();
    let flat = x.reshape((x.elem_count() / in_dim, in_dim))?.contiguous()?;
    let dropout = if lr.dropout > 0.0 { seed.map(|s| (lr.dropout, s)) } else { None };
    let op = LoraLinear { weight_t: weight_t.detach(), bias: bias.map(Tensor::detach), scale: lr.scale, dropout };
    Ok(flat.apply_op3(&lr.a, &lr.b, op)?.reshape(with_last(&dims, out_dim))?)
}

struct LoraLinear {
    weight_t: Tensor,
    bias: Option<Tensor>,
    scale: f64,
    dropout: Option<(f64, u64)>,
}

impl LoraLinear {
    fn dropped(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.dropout {
            Some((p, seed)) => x.mul(&dropout_mask(seed, p, x.shape(), x.dtype(), x.device())?),
            None => Ok(x.clone()),
        }
    }
}

impl CustomOp3 for LoraLinear {
    fn name(&self) -> &'static str {
        "lora-linear"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, a: &CpuStorage, al: &Layout, b: &CpuStorage, bl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        on_cpu(&[(xs, xl), (a, al), (b, bl)], |t| {
            let (x, a, b) = (&t[0], &t[1], &t[2]);
            let low = self.dropped(x)?.matmul(&a.t()?)?.matmul(&b.t()?)?;
            let y = (x.matmul(&self.weight_t)? + (low * self.scale)?)?;
            match &self.bias {
                Some(bias) => y.broadcast_add(bias),
                None => Ok(y),
            }
        })
    }

    fn bwd(&self, x: &Tensor, a: &Tensor, b: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Detached: gradients must not carry (and keep alive) the forward graph.
        let (x, a, b) = (x.detach(), a.detach(), b.detach());
        let xd = self.dropped(&x)?;
        let h = xd.matmul(&a.t()?)?;
        let grad_b = (grad.t()?.matmul(&h)? * self.scale)?;
        let grad_h = (grad.matmul(&b)? * self.scale)?;
        let grad_a = grad_h.t()?.matmul(&xd)?;
        let through_lora = self.dropped(&grad_h.matmul(&a)?)?;
        let grad_x = (grad.matmul(&self.weight_t.t()?)? + through_lora)?;
        Ok((Some(grad_x), Some(grad_a), Some(grad_b)))
    }
}

/// RMSNorm `x / sqrt(mean(x^2) + eps) * scale` over the last axis; `scale` is frozen.
pub fn rms_norm(x: &Tensor, scale: &Tensor, eps: f64) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op1(RmsNormOp { scale: scale.detach(), eps })?)
}

struct RmsNormOp {
    scale: Tensor,
    eps: f64,
}

impl CustomOp1 for RmsNormOp {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        on_cpu(&[(s, l)], |t| {
            let x = &t[0];
            let rms = (x.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?.sqrt()?;
            x.broadcast_div(&rms)?.broadcast_mul(&self.scale.to_dtype(x.dtype())?)
        })
    }

    /// With `n = x / rms` and `gs = grad * scale`: `dx = (gs - n * mean(gs * n)) / rms`.
    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let x = x.detach();
        let rms = (x.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?.sqrt()?;
        let n = x.broadcast_div(&rms)?;
        let gs = grad.broadcast_mul(&self.scale.to_dtype(x.dtype())?)?;
        let dot = (&gs * &n)?.mean_keepdim(D::Minus1)?;
        Ok(Some((gs - n.broadcast_mul(&dot)?)?.broadcast_div(&rms)?))
    }
}

/// Rotary embedding (rotate-half) of `x: [b, h, l, d]` with tables `[l, d/2]`; backward rotates back.
pub fn rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op1(Rotate { cos: cos.detach(), sin: sin.detach() })?)
}

struct Rotate {
    cos: Tensor,
    sin: Tensor,
}

fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    let (cos, sin) = (cos.to_dtype(x.dtype())?, sin.to_dtype(x.dtype())?);
    candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
}

impl CustomOp1 for Rotate {
    fn name(&self) -> &'static str {
        "rotary"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        on_cpu(&[(s, l)], |t| rotate(&t[0], &self.cos, &self.sin))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(rotate(grad, &self.cos, &self.sin.neg()?)?))
    }
}

/// `softmax(scores + bias)` over the last axis, `bias` (the attention mask) frozen and broadcast over
/// heads: `scores: [b, h, l, l]`, `bias: [b, 1, l, l]`. Backward needs only the output.
pub fn masked_softmax(scores: &Tensor, bias: &Tensor) -> Result<Tensor> {
    Ok(scores.contiguous()?.apply_op1(MaskedSoftmax { bias: bias.detach() })?)
}

struct MaskedSoftmax {
    bias: Tensor,
}

impl CustomOp1 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        on_cpu(&[(s, l)], |t| candle_nn::ops::softmax_last_dim(&t[0].broadcast_add(&self.bias.to_dtype(t[0].dtype())?)?))
    }

    fn bwd(&self, _x: &Tensor, probs: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let probs = probs.detach();
        let dot = (grad * &probs)?.sum_keepdim(D::Minus1)?;
        Ok(Some((grad.broadcast_sub(&dot)? * probs)?))
    }
}

/// The gated MLP activation `act(gate) * up` with its backward.
pub fn gated(gate: &Tensor, up: &Tensor, gelu: bool) -> Result<Tensor> {
    Ok(gate.contiguous()?.apply_op2(&up.contiguous()?, Gate { gelu })?)
}

struct Gate {
    gelu: bool,
}

impl Gate {
    fn act(&self, g: &Tensor) -> candle_core::Result<Tensor> {
        if self.gelu {
            g.gelu()
        } else {
            g.silu()
        }
    }

    /// d act / d g.
    fn act_grad(&self, g: &Tensor) -> candle_core::Result<Tensor> {
        if self.gelu {
            // 0.5 (1 + tanh u) + 0.5 g (1 - tanh^2 u) u', u = c (g + 0.044715 g^3)
            let c = (2.0f64 / std::f64::consts::PI).sqrt();
            let u = ((g + (g.powf(3.0)? * 0.044715)?)? * c)?;
            let th = u.tanh()?;
            let du = ((g.sqr()? * (3.0 * 0.044715))? + 1.0)? * c;
            let left = ((&th + 1.0)? * 0.5)?;
            let right = ((g * 0.5)? * (th.sqr()?.neg()? + 1.0)?)?.mul(&du?)?;
            left + right
        } else {
            let s = candle_nn::ops::sigmoid(g)?;
            // s (1 + g (1 - s))
            &s * ((g * (s.neg()? + 1.0)?)? + 1.0)?
        }
    }
}

impl CustomOp2 for Gate {
    fn name(&self) -> &'static str {
        "gated-activation"
    }

    fn cpu_fwd(&self, g: &CpuStorage, gl: &Layout, u: &CpuStorage, ul: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        on_cpu(&[(g, gl), (u, ul)], |t| self.act(&t[0])? * &t[1])
    }

    fn bwd(&self, gate: &Tensor, up: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (gate, up) = (gate.detach(), up.detach());
        let grad_gate = ((grad * &up)? * self.act_grad(&gate)?)?;
        let grad_up = (grad * self.act(&gate)?)?;
        Ok((Some(grad_gate), Some(grad_up)))
    }
}
