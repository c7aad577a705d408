//! The training side of a forward pass: the `Tuning` hook through which a trainer supplies LoRA
//! updates and dropout, and fused CPU ops with their own backward (candle's fused kernels record no
//! gradient, and composing them from small ops keeps many activations alive and makes candle's
//! backward accumulate a gradient per small op): LoRA linear layers over frozen weights
//! (`linear`), attention with its rotary embedding, mask and dropout (`attention`), RMSNorm and the
//! gated MLP activation. Dropout masks are drawn from a seed and kept as bits for backward.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Storage, Tensor};

use super::cpu;
use crate::error::{Error, Result};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

mod attention;
mod linear;

pub use attention::{attention, AttentionSpec};
pub use linear::{lora_linear, Part};

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
    pub const ALL: [Projection; 7] = [
        Projection::Q,
        Projection::K,
        Projection::V,
        Projection::O,
        Projection::Gate,
        Projection::Up,
        Projection::Down,
    ];

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
        if !n.is_multiple_of(64) {
            if let Some(last) = kept.last_mut() {
                *last &= (1u64 << (n % 64)) - 1;
            }
        }
        Self { kept, n, scale: 1.0 / (1.0 - p) }
    }

    /// `values * mask` in place, for the elements `offset..offset + values.len()` of the mask.
    fn apply<T: Real>(&self, values: &mut [T], offset: usize) {
        let scale = T::of(self.scale);
        if offset.is_multiple_of(8) {
            // Eight elements per mask byte, as factors 0 or 1: a multiply the compiler vectorises.
            for (c, chunk) in values.chunks_mut(8).enumerate() {
                let byte = offset / 8 + c;
                let factors = &BYTE_FACTORS[(self.kept[byte / 8] >> (8 * (byte % 8)) & 0xFF) as usize];
                chunk.iter_mut().zip(factors).for_each(|(v, &f)| *v = *v * scale * T::of(f64::from(f)));
            }
            return;
        }
        for (i, v) in (offset..).zip(values.iter_mut()) {
            *v = if self.kept[i / 64] >> (i % 64) & 1 == 1 { *v * scale } else { T::of(0.0) };
        }
    }

    /// `x * mask` in place for all `n` elements, on the rayon pool.
    fn apply_all<T: Real>(&self, x: &mut [T]) -> candle_core::Result<()> {
        if x.len() != self.n {
            candle_core::bail!("dropout mask: {} elements, the tensor has {}", self.n, x.len());
        }
        x.par_chunks_mut(64 * 64).enumerate().for_each(|(c, chunk)| self.apply(chunk, c * 64 * 64));
        Ok(())
    }
}

/// The bits of a byte as eight factors, 1.0 where the bit is set.
static BYTE_FACTORS: [[f32; 8]; 256] = byte_factors();

const fn byte_factors() -> [[f32; 8]; 256] {
    let mut table = [[0.0; 8]; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut bit = 0;
        while bit < 8 {
            if byte >> bit & 1 == 1 {
                table[byte][bit] = 1.0;
            }
            bit += 1;
        }
        byte += 1;
    }
    table
}

fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The float types the training kernels run in: f32, and f64 for the gradient checks.
pub(super) trait Real:
    candle_core::WithDType
    + Sync
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
    + std::ops::MulAssign
    + std::ops::DivAssign
{
    fn of(v: f64) -> Self {
        Self::from_f64(v)
    }
    fn exp(self) -> Self;
    fn tanh(self) -> Self;
    fn sqrt(self) -> Self;
    /// The slice as f32 when `Self` is f32 (the vectorised kernels' type).
    fn as_f32(v: &[Self]) -> Option<&[f32]>;
    fn as_f32_mut(v: &mut [Self]) -> Option<&mut [f32]>;
}

impl Real for f32 {
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn tanh(self) -> Self {
        f32::tanh(self)
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn as_f32(v: &[Self]) -> Option<&[f32]> {
        Some(v)
    }
    fn as_f32_mut(v: &mut [Self]) -> Option<&mut [f32]> {
        Some(v)
    }
}

impl Real for f64 {
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn as_f32(_: &[Self]) -> Option<&[f32]> {
        None
    }
    fn as_f32_mut(_: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
}

/// Softmax of one row in place (the maximum subtracted first).
pub(super) fn softmax<T: Real>(row: &mut [T]) {
    let Some(&first) = row.first() else { return };
    let max = row.iter().copied().fold(first, |m, x| if x > m { x } else { m });
    let mut sum = T::of(0.0);
    row.iter_mut().for_each(|x| {
        *x = (*x - max).exp();
        sum += *x;
    });
    row.iter_mut().for_each(|x| *x /= sum);
}

/// The contiguous elements a layout views in a CPU storage, as `T`.
fn elements<'a, T: Real>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [T]> {
    let Some(data) = cpu::contiguous(storage, layout) else {
        candle_core::bail!("training op: expected contiguous {} data on the CPU", std::any::type_name::<T>());
    };
    Ok(data)
}

/// The same for a tensor's storage (from `Tensor::storage_and_layout`).
fn tensor_elements<'a, T: Real>(storage: &'a Storage, layout: &Layout) -> candle_core::Result<&'a [T]> {
    match storage {
        Storage::Cpu(s) => elements(s, layout),
        _ => candle_core::bail!("training op: the ops run on the CPU only"),
    }
}

/// Calls `$f::<T>` for a float dtype (f32 or f64).
macro_rules! by_float {
    ($dtype:expr, $f:ident($($arg:expr),*)) => {
        match $dtype {
            candle_core::DType::F32 => $f::<f32>($($arg),*),
            candle_core::DType::F64 => $f::<f64>($($arg),*),
            dtype => candle_core::bail!("training op: f32 or f64 tensors only, got {dtype:?}"),
        }
    };
}
use by_float;

/// A matrix operand of a product: a pointer with the strides of a step along a row (`cs`) and down
/// a column (`rs`).
#[derive(Clone, Copy)]
struct Matrix<T> {
    ptr: *const T,
    cs: isize,
    rs: isize,
}

impl<T> Matrix<T> {
    /// Row-major rows of `width` elements from the start of `v`.
    fn rows(v: &[T], width: usize) -> Self {
        Self { ptr: v.as_ptr(), cs: 1, rs: width as isize }
    }

    fn t(self) -> Self {
        Self { ptr: self.ptr, cs: self.rs, rs: self.cs }
    }
}

/// `dst = beta * lhs rhs` (`[m, k] x [k, n]`), or `dst += beta * lhs rhs` when `accumulate`, into the
/// rows of `dst` that start every `dst_rs` elements.
///
/// SAFETY: `lhs` and `rhs` address `[m, k]` and `[k, n]` matrices through their strides.
unsafe fn product<T: Real>(
    dst: &mut [T],
    dst_rs: usize,
    (m, n, k): (usize, usize, usize),
    lhs: Matrix<T>,
    rhs: Matrix<T>,
    beta: f64,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(n <= dst_rs && dst.len() >= (m - 1) * dst_rs + n, "product: the destination is too small");
    let (one, beta) = (T::of(1.0), T::of(beta));
    gemm(
        m,
        n,
        k,
        dst.as_mut_ptr(),
        1,
        dst_rs as isize,
        accumulate,
        lhs.ptr,
        lhs.cs,
        lhs.rs,
        rhs.ptr,
        rhs.cs,
        rhs.rs,
        one,
        beta,
        false,
        false,
        false,
        parallelism(m, n, k),
    );
}

/// Large products run on the rayon pool.
fn parallelism(m: usize, n: usize, k: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    if threads > 1 && m * n * k >= 1 << 18 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// `beta * lhs rhs` (`[m, k] x [k, n]`) as a new row-major `[m, n]` matrix, written in full by the
/// product (never zeroed first).
///
/// SAFETY: as for `product`.
unsafe fn new_product<T: Real>((m, n, k): (usize, usize, usize), lhs: Matrix<T>, rhs: Matrix<T>, beta: f64) -> Vec<T> {
    if m == 0 || n == 0 || k == 0 {
        return vec![T::of(0.0); m * n];
    }
    let mut out: Vec<T> = Vec::with_capacity(m * n);
    let (one, beta) = (T::of(1.0), T::of(beta));
    gemm(
        m,
        n,
        k,
        out.as_mut_ptr(),
        1,
        n as isize,
        false,
        lhs.ptr,
        lhs.cs,
        lhs.rs,
        rhs.ptr,
        rhs.cs,
        rhs.rs,
        one,
        beta,
        false,
        false,
        false,
        parallelism(m, n, k),
    );
    out.set_len(m * n);
    out
}

/// RMSNorm `x / sqrt(mean(x^2) + eps) * scale` over the last axis; `scale` is frozen.
pub fn rms_norm(x: &Tensor, scale: &Tensor, eps: f64) -> Result<Tensor> {
    let scale = scale.detach().to_dtype(x.dtype())?.contiguous()?;
    Ok(x.contiguous()?.apply_op1(RmsNormOp { scale, eps })?)
}

struct RmsNormOp {
    scale: Tensor,
    eps: f64,
}

impl RmsNormOp {
    fn forward<T: Real>(&self, x: &[T]) -> candle_core::Result<Vec<T>> {
        let (guard, layout) = self.scale.storage_and_layout();
        let scale = tensor_elements::<T>(&guard, layout)?;
        let n = scale.len();
        let mut out = x.to_vec();
        out.par_chunks_exact_mut(n).with_min_len(8).for_each(|row| {
            let inv = self.inverse_rms(row);
            row.iter_mut().zip(scale).for_each(|(v, &s)| *v = *v * inv * s);
        });
        Ok(out)
    }

    /// With `n = x / rms` and `gs = grad * scale`: `dx = (gs - n * mean(gs * n)) / rms`.
    fn backward<T: Real>(&self, x: &[T], grad: &[T]) -> candle_core::Result<Vec<T>> {
        let (guard, layout) = self.scale.storage_and_layout();
        let scale = tensor_elements::<T>(&guard, layout)?;
        let n = scale.len();
        let mut dx = grad.to_vec();
        dx.par_chunks_exact_mut(n).zip(x.par_chunks_exact(n)).with_min_len(8).for_each(|(dx, x)| {
            let inv = self.inverse_rms(x);
            let mut dot = T::of(0.0);
            for ((g, &xv), &s) in dx.iter_mut().zip(x).zip(scale) {
                *g *= s;
                dot += *g * xv * inv;
            }
            let mean = dot / T::of(n as f64);
            dx.iter_mut().zip(x).for_each(|(g, &xv)| *g = (*g - xv * inv * mean) * inv);
        });
        Ok(dx)
    }

    fn inverse_rms<T: Real>(&self, row: &[T]) -> T {
        let mut sum = T::of(0.0);
        row.iter().for_each(|&v| sum += v * v);
        T::of(1.0) / (sum / T::of(row.len() as f64) + T::of(self.eps)).sqrt()
    }
}

impl CustomOp1 for RmsNormOp {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        fn run<T: Real>(op: &RmsNormOp, s: &CpuStorage, l: &Layout) -> candle_core::Result<CpuStorage> {
            Ok(T::to_cpu_storage_owned(op.forward(elements::<T>(s, l)?)?))
        }
        Ok((by_float!(s.dtype(), run(self, s, l))?, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        fn run<T: Real>(op: &RmsNormOp, x: &Tensor, grad: &Tensor) -> candle_core::Result<Tensor> {
            let grad = grad.contiguous()?;
            let (xg, xl) = x.storage_and_layout();
            let (gg, gl) = grad.storage_and_layout();
            let dx = op.backward(tensor_elements::<T>(&xg, xl)?, tensor_elements::<T>(&gg, gl)?)?;
            Tensor::from_vec(dx, x.shape(), x.device())
        }
        Ok(Some(by_float!(x.dtype(), run(self, x, grad))?))
    }
}

/// The gated MLP activation `act(gate) * up` with its backward, from the fused projection's output
/// `[.., 2n]` (gate, then up); returns `[.., n]`.
pub fn gated(gate_up: &Tensor, gelu: bool) -> Result<Tensor> {
    let width = gate_up.dims().last().copied().unwrap_or(0);
    if width % 2 != 0 {
        return Err(Error::Input(format!("gated activation: {width} values per row, not gate and up halves")));
    }
    Ok(gate_up.contiguous()?.apply_op1(Gate { n: width / 2, gelu })?)
}

struct Gate {
    n: usize,
    gelu: bool,
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
    fn forward<T: Real>(&self, gate_up: &[T]) -> Vec<T> {
        let n = self.n;
        let mut out = vec![T::of(0.0); gate_up.len() / 2];
        let rows = out.par_chunks_exact_mut(n).zip(gate_up.par_chunks_exact(2 * n));
        rows.with_min_len(8).for_each(|(out, row)| {
            let (gate, up) = row.split_at(n);
            match (self.gelu, T::as_f32(gate), T::as_f32(up), T::as_f32_mut(out)) {
                (false, Some(gate), Some(up), Some(out)) => cpu::simd::silu_mul(gate, up, out),
                _ => out
                    .iter_mut()
                    .zip(gate.iter().zip(up))
                    .for_each(|(o, (&g, &u))| *o = activation(g, self.gelu).0 * u),
            }
        });
        out
    }

    /// The gradient `[.., 2n]` (gate, then up) for the output gradient `grad: [.., n]`.
    fn backward<T: Real>(&self, gate_up: &[T], grad: &[T]) -> Vec<T> {
        let n = self.n;
        let mut d = vec![T::of(0.0); gate_up.len()];
        let rows = d.par_chunks_exact_mut(2 * n).zip(gate_up.par_chunks_exact(2 * n).zip(grad.par_chunks_exact(n)));
        rows.with_min_len(8).for_each(|(d, (row, grad))| {
            let ((d_gate, d_up), (gate, up)) = (d.split_at_mut(n), row.split_at(n));
            if let (false, Some(g), Some(u), Some(dy), Some(dg), Some(du)) =
                (self.gelu, T::as_f32(gate), T::as_f32(up), T::as_f32(grad), T::as_f32_mut(d_gate), T::as_f32_mut(d_up))
            {
                return cpu::simd::silu_mul_backward(g, u, dy, dg, du);
            }
            for i in 0..n {
                let (a, da) = activation(gate[i], self.gelu);
                d_gate[i] = grad[i] * up[i] * da;
                d_up[i] = grad[i] * a;
            }
        });
        d
    }
}

impl CustomOp1 for Gate {
    fn name(&self) -> &'static str {
        "gated-activation"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        fn run<T: Real>(op: &Gate, s: &CpuStorage, l: &Layout) -> candle_core::Result<CpuStorage> {
            Ok(T::to_cpu_storage_owned(op.forward(elements::<T>(s, l)?)))
        }
        Ok((by_float!(s.dtype(), run(self, s, l))?, Shape::from(with_last(l.dims(), self.n))))
    }

    fn bwd(&self, gate_up: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        fn run<T: Real>(op: &Gate, gate_up: &Tensor, grad: &Tensor) -> candle_core::Result<Tensor> {
            let grad = grad.contiguous()?;
            let [(xg, xl), (gg, gl)] = [gate_up, &grad].map(Tensor::storage_and_layout);
            let d = op.backward(tensor_elements::<T>(&xg, xl)?, tensor_elements::<T>(&gg, gl)?);
            Tensor::from_vec(d, gate_up.shape(), gate_up.device())
        }
        Ok(Some(by_float!(gate_up.dtype(), run(self, gate_up, grad))?))
    }
}
