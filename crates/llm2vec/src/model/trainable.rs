//! The training side of a forward pass: the `Tuning` hook through which a trainer supplies LoRA
//! updates and dropout, and fused ops with their own backward (candle's fused kernels record no
//! gradient, and composing them from small ops keeps many activations alive): LoRA linear layers
//! over frozen weights, RMSNorm, rotary embedding, masked softmax, the gated MLP activation and
//! dropout, whose masks are drawn from a seed and kept as bits for backward.

use candle_core::backend::BackendStorage;
use candle_core::op::BackpropOp;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Storage, Tensor, D};

use crate::error::{Error, Result};
use rayon::prelude::*;

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

/// An inverted-dropout mask over `n` elements, as bits (set = kept; kept values are scaled by `1 / (1 - p)`).
/// Element `i`'s draw is 16 bits of a hash of `(seed, i / 4)`: the mask depends only on the seed.
struct Mask {
    kept: Vec<u64>,
    n: usize,
    scale: f64,
}

impl Mask {
    fn new(seed: u64, p: f64, n: usize) -> Self {
        let threshold = (p * 65536.0).round() as u64;
        let mut kept = vec![0u64; n.div_ceil(64)];
        // Word w holds elements 64w..64w+64, drawn from hashes 16w..16w+16.
        kept.par_iter_mut().enumerate().for_each(|(w, word)| {
            for h in 0..16 {
                let bits = mix(seed, (16 * w + h) as u64);
                for k in 0..4 {
                    if (bits >> (16 * k)) & 0xFFFF >= threshold {
                        *word |= 1 << (4 * h + k);
                    }
                }
            }
        });
        if n % 64 != 0 {
            if let Some(last) = kept.last_mut() {
                *last &= (1u64 << (n % 64)) - 1;
            }
        }
        Self { kept, n, scale: 1.0 / (1.0 - p) }
    }

    /// `x * mask` for a tensor of `n` elements, in one pass over contiguous CPU data.
    fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if x.elem_count() != self.n {
            candle_core::bail!("dropout mask: {} elements, the tensor has {}", self.n, x.elem_count());
        }
        with_cpu(x, |s| match s {
            Slice::F32(v) => Tensor::from_vec(self.scaled(v, self.scale as f32), x.shape(), x.device()),
            Slice::F64(v) => Tensor::from_vec(self.scaled(v, self.scale), x.shape(), x.device()),
        })
    }

    fn scaled<T: Copy + Default + Send + Sync + std::ops::Mul<Output = T>>(&self, v: &[T], scale: T) -> Vec<T> {
        let mut out = vec![T::default(); v.len()];
        out.par_chunks_mut(64).zip(v.par_chunks(64)).enumerate().for_each(|(w, (o, x))| {
            let word = self.kept[w];
            for (k, (o, &x)) in o.iter_mut().zip(x).enumerate() {
                if word >> k & 1 == 1 {
                    *o = x * scale;
                }
            }
        });
        out
    }
}

/// Contiguous CPU data of a tensor, by float type.
enum Slice<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// Runs `f` on the tensor's contiguous CPU data (f32 or f64).
fn with_cpu<R>(t: &Tensor, f: impl FnOnce(Slice) -> candle_core::Result<R>) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (guard, layout) = t.storage_and_layout();
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("trainable op: expected contiguous data");
    };
    match &*guard {
        Storage::Cpu(CpuStorage::F32(v)) => f(Slice::F32(&v[start..end])),
        Storage::Cpu(CpuStorage::F64(v)) => f(Slice::F64(&v[start..end])),
        _ => candle_core::bail!("trainable op: f32 or f64 CPU tensors only"),
    }
}

fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Inverted dropout with the mask drawn from `seed` (kept as bits for backward).
pub fn dropout(x: &Tensor, p: f64, seed: u64) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    let mask = Mask::new(seed, p, x.elem_count());
    Ok(x.contiguous()?.apply_op1(Dropout { mask })?)
}

struct Dropout {
    mask: Mask,
}

impl CustomOp1 for Dropout {
    fn name(&self) -> &'static str {
        "dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        on_cpu(&[(s, l)], |t| self.mask.apply(&t[0]))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(self.mask.apply(grad)?))
    }
}

/// A projection with a frozen weight `weight_t: [in, out]` (and bias) plus a LoRA update, in one op:
/// only the output (and the dropout mask, as bits) is kept for backward.
pub fn lora_linear(x: &Tensor, weight_t: &Tensor, bias: Option<&Tensor>, lr: &LowRank, seed: Option<u64>) -> Result<Tensor> {
    let (in_dim, out_dim) = weight_t.dims2()?;
    let dims = x.dims().to_vec();
    let flat = x.reshape((x.elem_count() / in_dim, in_dim))?.contiguous()?;
    let dropout = match seed {
        Some(seed) if lr.dropout > 0.0 => Some(Mask::new(seed, lr.dropout, flat.elem_count())),
        _ => None,
    };
    let op = LoraLinear { weight_t: weight_t.detach(), bias: bias.map(Tensor::detach), scale: lr.scale, dropout };
    Ok(flat.apply_op3(&lr.a, &lr.b, op)?.reshape(with_last(&dims, out_dim))?)
}

struct LoraLinear {
    weight_t: Tensor,
    bias: Option<Tensor>,
    scale: f64,
    dropout: Option<Mask>,
}

impl LoraLinear {
    fn dropped(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.dropout {
            Some(mask) => mask.apply(x),
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

/// The float types the slice kernels run in.
trait Real: Copy + Send + Sync + std::ops::Add<Output = Self> + std::ops::Sub<Output = Self> + std::ops::Mul<Output = Self> + std::ops::Div<Output = Self> + std::ops::Neg<Output = Self> {
    fn of(v: f64) -> Self;
    fn exp(self) -> Self;
    fn tanh(self) -> Self;
}

impl Real for f32 {
    fn of(v: f64) -> Self {
        v as f32
    }
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn tanh(self) -> Self {
        f32::tanh(self)
    }
}

impl Real for f64 {
    fn of(v: f64) -> Self {
        v
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
}

/// `act(g)` and `d act / d g` for SiLU or GELU (tanh approximation).
fn activation<T: Real>(g: T, gelu: bool) -> (T, T) {
    let one = T::of(1.0);
    let half = T::of(0.5);
    if gelu {
        let c = T::of(0.797_884_560_802_865_4); // sqrt(2 / pi)
        let k = T::of(0.044715);
        let u = c * (g + k * g * g * g);
        let th = u.tanh();
        let du = c * (one + T::of(3.0) * k * g * g);
        (half * g * (one + th), half * (one + th) + half * g * (one - th * th) * du)
    } else {
        let s = one / (one + (-g).exp());
        (g * s, s * (one + g * (one - s)))
    }
}

impl Gate {
    fn forward<T: Real>(&self, gate: &[T], up: &[T]) -> Vec<T> {
        gate.par_iter().zip(up).map(|(&g, &u)| activation(g, self.gelu).0 * u).collect()
    }

    /// `(d gate, d up)` for the output gradient `grad`.
    fn backward<T: Real>(&self, gate: &[T], up: &[T], grad: &[T]) -> (Vec<T>, Vec<T>) {
        gate.par_iter()
            .zip(up)
            .zip(grad)
            .map(|((&g, &u), &d)| {
                let (a, da) = activation(g, self.gelu);
                (d * u * da, d * a)
            })
            .unzip()
    }
}

impl CustomOp2 for Gate {
    fn name(&self) -> &'static str {
        "gated-activation"
    }

    fn cpu_fwd(&self, g: &CpuStorage, gl: &Layout, u: &CpuStorage, ul: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (Some((gs, ge)), Some((us, ue))) = (gl.contiguous_offsets(), ul.contiguous_offsets()) else {
            candle_core::bail!("gated-activation: expects contiguous inputs");
        };
        let out = match (g, u) {
            (CpuStorage::F32(g), CpuStorage::F32(u)) => CpuStorage::F32(self.forward(&g[gs..ge], &u[us..ue])),
            (CpuStorage::F64(g), CpuStorage::F64(u)) => CpuStorage::F64(self.forward(&g[gs..ge], &u[us..ue])),
            _ => candle_core::bail!("gated-activation: f32 or f64 inputs of one type"),
        };
        Ok((out, gl.shape().clone()))
    }

    fn bwd(&self, gate: &Tensor, up: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (shape, device) = (gate.shape(), gate.device());
        let (dg, du) = with_cpu(gate, |g| {
            with_cpu(up, |u| {
                with_cpu(grad, |d| match (&g, &u, &d) {
                    (Slice::F32(g), Slice::F32(u), Slice::F32(d)) => {
                        let (dg, du) = self.backward(g, u, d);
                        Ok((Tensor::from_vec(dg, shape, device)?, Tensor::from_vec(du, shape, device)?))
                    }
                    (Slice::F64(g), Slice::F64(u), Slice::F64(d)) => {
                        let (dg, du) = self.backward(g, u, d);
                        Ok((Tensor::from_vec(dg, shape, device)?, Tensor::from_vec(du, shape, device)?))
                    }
                    _ => candle_core::bail!("gated-activation: mixed float types"),
                })
            })
        })?;
        Ok((Some(dg), Some(du)))
    }
}
