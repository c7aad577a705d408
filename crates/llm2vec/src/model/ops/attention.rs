//! Attention for training as one op with its own backward, computed per (sequence, key/value head) on
//! the CPU: rotary embedding of q and k (where the family has one: the decoders, not BERT), scaled
//! scores (soft-capped where the family does), the additive mask, softmax, dropout on the probabilities
//! and the weighted values. q, k and v are read where the fused projection wrote them (no split,
//! transposed or repeated copies), and backward recomputes a head's probabilities instead of keeping
//! them. Inference on the CPU takes the same op (without a graph to record, it costs nothing more).
//! Other devices and dtypes take the composed version, `sdpa` after the rotation, which inference of
//! every family off the CPU shares.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use super::{dropped, float_bwd, float_fwd, fused_training, softmax_last_dim, tensor_elements, widened, FloatOp1};
use crate::error::{Error, Result};
use crate::model::cpu::dropout::Mask;
use crate::model::cpu::gemm::{product, Matrix};
use crate::model::cpu::{simd, softmax, Real};
use crate::model::rotary::rotate;

/// The attention of one family: head counts and size, the scores' scale and soft cap.
#[derive(Debug, Clone, Copy)]
pub struct AttentionSpec {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (fewer than `heads` in grouped-query attention).
    pub kv_heads: usize,
    /// Values per head.
    pub head_dim: usize,
    /// The factor on `q k^T` (usually `1 / sqrt(head_dim)`).
    pub scale: f64,
    /// Gemma 2's cap on the scores: `cap * tanh(score / cap)`.
    pub softcap: Option<f64>,
}

/// `qkv: [b, l, (heads + 2 kv_heads) * d]` (q, k and v side by side, as the fused projection writes
/// them), `rotary` tables `(cos, sin): [l, d / 2]` (rotate-half; `None` leaves q and k as they are),
/// additive `bias: [b, 1, l, l]`; `dropout` is `(p, seed)` for the probabilities. Returns
/// `[b, l, heads * d]`.
pub fn attention(
    qkv: &Tensor,
    rotary: Option<(&Tensor, &Tensor)>,
    bias: &Tensor,
    spec: AttentionSpec,
    dropout: Option<(f64, u64)>,
) -> Result<Tensor> {
    let (b, l, width) = qkv.dims3()?;
    let AttentionSpec { heads, kv_heads, head_dim: d, .. } = spec;
    let odd_rotary = rotary.is_some() && d % 2 != 0;
    if kv_heads == 0 || heads % kv_heads != 0 || odd_rotary || width != (heads + 2 * kv_heads) * d {
        return Err(Error::internal(format!(
            "attention: {width} values per token for {heads} heads and {kv_heads} key/value heads of {d}"
        )));
    }
    let dropout = dropout.filter(|(p, _)| *p > 0.0).map(|(p, seed)| Mask::new(seed, p, b * heads * l * l));
    if !fused_training(qkv) {
        let part = |first: usize, n: usize| -> Result<Tensor> {
            Ok(qkv.narrow(D::Minus1, first * d, n * d)?.reshape((b, l, n, d))?.transpose(1, 2)?)
        };
        let (mut q, mut k) = (part(0, heads)?, part(heads, kv_heads)?);
        if let Some((cos, sin)) = rotary {
            (q, k) = (rotate(&q, cos, sin)?, rotate(&k, cos, sin)?);
        }
        return sdpa(&q, &k, &part(heads + kv_heads, kv_heads)?, bias, &spec, dropout.as_ref());
    }
    let dtype = qkv.dtype();
    let table = |t: &Tensor| t.detach().to_dtype(dtype)?.contiguous();
    let rotary = match rotary {
        Some((cos, sin)) => Some((table(cos)?, table(sin)?)),
        None => None,
    };
    let op = Attention { rotary, bias: table(bias)?, dims: Dims { b, l, heads, kv: kv_heads, d }, spec, dropout };
    Ok(qkv.contiguous()?.apply_op1(op)?)
}

/// Scaled dot-product attention composed from candle's ops, on any device and dtype, with `spec`'s
/// scale and soft cap and `dropout` on the probabilities (its mask over `[b, heads, l, l]`). `q: [b,
/// heads, l, d]`, `k, v: [b, kv_heads, l, d]`, `bias: [b, 1, l, l]`; returns `[b, l, heads * d]`.
pub(crate) fn sdpa(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    spec: &AttentionSpec,
    dropout: Option<&Mask>,
) -> Result<Tensor> {
    let (b, heads, l, d) = q.dims4()?;
    let groups = heads / k.dim(1)?;
    let q = q.contiguous()?;
    let k = repeat_kv(k, groups)?;
    let v = repeat_kv(v, groups)?;
    let mut scores = (q.matmul(&k.t()?)? * spec.scale)?;
    if scores.track_op() {
        // Training: soft cap, mask and softmax in f32 for half-precision inputs (the cap's gradient
        // `1 - tanh^2` loses every digit near saturation in bf16).
        scores = widened(&scores)?;
    }
    if let Some(cap) = spec.softcap {
        scores = ((scores / cap)?.tanh()? * cap)?;
    }
    let mut probs = softmax_last_dim(&scores.broadcast_add(&bias.detach().to_dtype(scores.dtype())?)?)?;
    if let Some(mask) = dropout {
        probs = dropped(&probs, mask)?;
    }
    let out = probs.to_dtype(v.dtype())?.matmul(&v)?;
    Ok(out.transpose(1, 2)?.reshape((b, l, heads * d))?)
}

/// Key/value heads `[b, kv, l, d]` repeated for `groups` query heads each: `[b, kv * groups, l, d]`.
fn repeat_kv(x: &Tensor, groups: usize) -> Result<Tensor> {
    if groups == 1 {
        return Ok(x.contiguous()?);
    }
    let (b, kv, l, d) = x.dims4()?;
    Ok(x.unsqueeze(2)?.expand((b, kv, groups, l, d))?.reshape((b, kv * groups, l, d))?)
}

#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    l: usize,
    heads: usize,
    kv: usize,
    d: usize,
}

impl Dims {
    fn group(&self) -> usize {
        self.heads / self.kv
    }

    /// Values per token in the fused input.
    fn width(&self) -> usize {
        (self.heads + 2 * self.kv) * self.d
    }

    /// Offset in the fused input of the first row of sequence `bi`'s q head `h`.
    fn q(&self, bi: usize, h: usize) -> usize {
        bi * self.l * self.width() + h * self.d
    }

    /// The same for k head `g`.
    fn k(&self, bi: usize, g: usize) -> usize {
        self.q(bi, self.heads + g)
    }

    /// The same for v head `g`.
    fn v(&self, bi: usize, g: usize) -> usize {
        self.q(bi, self.heads + self.kv + g)
    }
}

struct Attention {
    /// `(cos, sin)`, where q and k are rotated.
    rotary: Option<(Tensor, Tensor)>,
    bias: Tensor,
    dims: Dims,
    spec: AttentionSpec,
    dropout: Option<Mask>,
}

/// The op's tables as slices: `(cos, sin): [l, d / 2]` where q and k are rotated, `bias: [b, l, l]`.
struct Tables<'a, T> {
    rotary: Option<(&'a [T], &'a [T])>,
    bias: &'a [T],
}

/// One task's share of backward: `dq` for the group's heads `[l, group * d]`, `dk`, `dv` `[l, d]`.
struct Grads<T> {
    dq: Vec<T>,
    dk: Vec<T>,
    dv: Vec<T>,
}

impl Attention {
    /// Rotates the `[l, d]` rows of `src` (one every `src_rs` elements) into `dst` (one every `dst_rs`);
    /// `back` applies the inverse rotation. Without rotary tables it copies them.
    fn rotate<T: Real>(&self, t: &Tables<T>, src: (&[T], usize), dst: (&mut [T], usize), back: bool) {
        let Dims { l, d, .. } = self.dims;
        let half = d / 2;
        for i in 0..l {
            let x = &src.0[i * src.1..][..d];
            let y = &mut dst.0[i * dst.1..][..d];
            let Some((cos, sin)) = t.rotary else {
                y.copy_from_slice(x);
                continue;
            };
            let (cos, sin) = (&cos[i * half..][..half], &sin[i * half..][..half]);
            for j in 0..half {
                let s = if back { -sin[j] } else { sin[j] };
                y[j] = x[j] * cos[j] - x[j + half] * s;
                y[j + half] = x[j + half] * cos[j] + x[j] * s;
            }
        }
    }

    /// The (rotated) `[l, d]` rows of the q or k head that starts at `offset` in the fused input.
    fn rotated<T: Real>(&self, t: &Tables<T>, qkv: &[T], offset: usize) -> Vec<T> {
        let Dims { l, d, .. } = self.dims;
        let mut out = vec![T::of(0.0); l * d];
        self.rotate(t, (&qkv[offset..], self.dims.width()), (&mut out, d), false);
        out
    }

    /// The `[l, d]` rows of v head `g` of sequence `bi` inside the fused input.
    fn values<T: Real>(&self, qkv: &[T], bi: usize, g: usize) -> Matrix<T> {
        Matrix { ptr: qkv[self.dims.v(bi, g)..].as_ptr(), cs: 1, rs: self.dims.width() as isize }
    }

    /// The probabilities `[l, l]` of one head of sequence `bi` from its rotated `qr` and `kr` into `p`;
    /// with soft-capping, `cap_grad` (when given) receives the cap's derivative `1 - tanh^2`.
    fn probs<T: Real>(
        &self,
        t: &Tables<T>,
        bi: usize,
        (qr, kr): (&[T], &[T]),
        p: &mut [T],
        cap_grad: Option<&mut [T]>,
    ) {
        let Dims { l, d, .. } = self.dims;
        // SAFETY: `qr` and `kr` are `[l, d]` row-major.
        unsafe { product(p, l, (l, l, d), Matrix::rows(qr, d), Matrix::rows(kr, d).t(), self.spec.scale, false) };
        if let Some(cap) = self.spec.softcap {
            let cap = T::of(cap);
            match cap_grad {
                Some(grad) => p.iter_mut().zip(grad).for_each(|(x, g)| {
                    let th = (*x / cap).tanh();
                    *x = th * cap;
                    *g = T::of(1.0) - th * th;
                }),
                None => p.iter_mut().for_each(|x| *x = (*x / cap).tanh() * cap),
            }
        }
        for (row, bias) in p.chunks_exact_mut(l).zip(t.bias[bi * l * l..][..l * l].chunks_exact(l)) {
            if let (Some(row), Some(bias)) = (T::as_f32_mut(row), T::as_f32(bias)) {
                simd::softmax_biased(row, bias);
                continue;
            }
            row.iter_mut().zip(bias).for_each(|(x, &b)| *x += b);
            softmax(row);
        }
    }

    /// Dropout on the probabilities `p` of head `h` of sequence `bi`.
    fn drop_probs<T: Real>(&self, p: &mut [T], bi: usize, h: usize) {
        if let Some(mask) = &self.dropout {
            let l = self.dims.l;
            mask.apply(p, (bi * self.dims.heads + h) * l * l);
        }
    }

    /// The outputs `[l, group * d]` of the heads that share key/value head `g` of sequence `bi`.
    fn forward_task<T: Real>(&self, t: &Tables<T>, qkv: &[T], bi: usize, g: usize) -> Vec<T> {
        let Dims { l, d, .. } = self.dims;
        let group = self.dims.group();
        let kr = self.rotated(t, qkv, self.dims.k(bi, g));
        let values = self.values(qkv, bi, g);
        let mut out = vec![T::of(0.0); l * group * d];
        let mut p = vec![T::of(0.0); l * l];
        for j in 0..group {
            let h = g * group + j;
            let qr = self.rotated(t, qkv, self.dims.q(bi, h));
            self.probs(t, bi, (&qr, &kr), &mut p, None);
            self.drop_probs(&mut p, bi, h);
            // SAFETY: `p` is `[l, l]`; `values` addresses the `[l, d]` rows of v head `g` inside `qkv`.
            unsafe { product(&mut out[j * d..], group * d, (l, d, l), Matrix::rows(&p, l), values, 1.0, false) };
        }
        out
    }

    fn backward_task<T: Real>(&self, t: &Tables<T>, (qkv, grad): (&[T], &[T]), bi: usize, g: usize) -> Grads<T> {
        let Dims { l, heads, d, .. } = self.dims;
        let (group, zero, scale) = (self.dims.group(), T::of(0.0), self.spec.scale);
        let kr = self.rotated(t, qkv, self.dims.k(bi, g));
        let values = self.values(qkv, bi, g);
        let (mut dkr, mut dv, mut dqr) = (vec![zero; l * d], vec![zero; l * d], vec![zero; l * d]);
        let mut dq = vec![zero; l * group * d];
        let (mut p, mut kept, mut dp) = (vec![zero; l * l], vec![zero; l * l], vec![zero; l * l]);
        let mut cap_grad = vec![zero; if self.spec.softcap.is_some() { l * l } else { 0 }];
        for j in 0..group {
            let h = g * group + j;
            let qr = self.rotated(t, qkv, self.dims.q(bi, h));
            self.probs(t, bi, (&qr, &kr), &mut p, self.spec.softcap.map(|_| &mut cap_grad[..]));
            kept.copy_from_slice(&p);
            self.drop_probs(&mut kept, bi, h);
            let dout = Matrix { ptr: grad[(bi * l * heads + h) * d..].as_ptr(), cs: 1, rs: (heads * d) as isize };
            // SAFETY: `dout` addresses head `h`'s `[l, d]` rows inside `grad`, `values` v head `g`'s inside
            // `qkv`; the other operands are `[l, l]` or `[l, d]` row-major.
            unsafe {
                product(&mut dv, d, (l, d, l), Matrix::rows(&kept, l).t(), dout, 1.0, true);
                product(&mut dp, l, (l, l, d), dout, values.t(), 1.0, false);
            }
            self.drop_probs(&mut dp, bi, h);
            for (dp, p) in dp.chunks_exact_mut(l).zip(p.chunks_exact(l)) {
                let mut dot = zero;
                dp.iter().zip(p).for_each(|(&a, &b)| dot += a * b);
                dp.iter_mut().zip(p).for_each(|(a, &b)| *a = b * (*a - dot));
            }
            if self.spec.softcap.is_some() {
                dp.iter_mut().zip(&cap_grad).for_each(|(a, &c)| *a *= c);
            }
            // SAFETY: all operands are `[l, l]` or `[l, d]` row-major.
            unsafe {
                product(&mut dqr, d, (l, d, l), Matrix::rows(&dp, l), Matrix::rows(&kr, d), scale, false);
                product(&mut dkr, d, (l, d, l), Matrix::rows(&dp, l).t(), Matrix::rows(&qr, d), scale, true);
            }
            self.rotate(t, (&dqr, d), (&mut dq[j * d..], group * d), true);
        }
        let mut dk = vec![zero; l * d];
        self.rotate(t, (&dkr, d), (&mut dk, d), true);
        Grads { dq, dk, dv }
    }

    /// Runs `f` with the op's tables as `T` slices.
    fn with_tables<T: Real, R>(&self, f: impl FnOnce(&Tables<T>) -> candle_core::Result<R>) -> candle_core::Result<R> {
        let rotary = self.rotary.as_ref().map(|(cos, sin)| (cos.storage_and_layout(), sin.storage_and_layout()));
        let (bg, bl) = self.bias.storage_and_layout();
        let t = Tables {
            rotary: match &rotary {
                Some(((cg, cl), (sg, sl))) => Some((tensor_elements::<T>(cg, cl)?, tensor_elements::<T>(sg, sl)?)),
                None => None,
            },
            bias: tensor_elements::<T>(&bg, bl)?,
        };
        let Dims { b, l, d, .. } = self.dims;
        let bad_tables = t.rotary.is_some_and(|(cos, sin)| cos.len() != l * d / 2 || sin.len() != l * d / 2);
        if bad_tables || t.bias.len() != b * l * l {
            candle_core::bail!(
                "attention: rotary tables of {} values or a bias of {} for {b} sequences of {l}, heads of {d}",
                t.rotary.map_or(0, |(cos, _)| cos.len()),
                t.bias.len()
            );
        }
        f(&t)
    }
}

impl FloatOp1 for Attention {
    fn forward<T: Real>(&self, qkv: &[T]) -> candle_core::Result<Vec<T>> {
        let Dims { b, l, heads, kv, d } = self.dims;
        if qkv.len() != b * l * self.dims.width() {
            candle_core::bail!("attention: {} values for {b} x {l} tokens of {}", qkv.len(), self.dims.width());
        }
        let group = self.dims.group();
        let mut out = vec![T::of(0.0); b * l * heads * d];
        let shared = Shared::new(&mut out);
        self.with_tables::<T, _>(|t| {
            (0..b * kv).into_par_iter().for_each(|task| {
                let (bi, g) = (task / kv, task % kv);
                let part = self.forward_task(t, qkv, bi, g);
                // SAFETY: task (bi, g) alone writes the columns of g's heads in sequence bi's rows.
                unsafe { shared.write_rows(&part, group * d, (bi * l * heads + g * group) * d, heads * d, l) };
            });
            Ok(())
        })?;
        Ok(out)
    }

    fn backward<T: Real>(&self, qkv: &[T], grad: &[T]) -> candle_core::Result<Vec<T>> {
        let Dims { b, l, heads, kv, d } = self.dims;
        if qkv.len() != b * l * self.dims.width() || grad.len() != b * l * heads * d {
            candle_core::bail!(
                "attention: {} input and {} gradient values for {b} x {l} tokens",
                qkv.len(),
                grad.len()
            );
        }
        let (group, width) = (self.dims.group(), self.dims.width());
        let mut dqkv = vec![T::of(0.0); qkv.len()];
        let shared = Shared::new(&mut dqkv);
        self.with_tables::<T, _>(|t| {
            (0..b * kv).into_par_iter().for_each(|task| {
                let (bi, g) = (task / kv, task % kv);
                let part = self.backward_task(t, (qkv, grad), bi, g);
                // SAFETY: task (bi, g) alone writes the columns of g's q heads, k head and v head in
                // sequence bi's rows.
                unsafe {
                    shared.write_rows(&part.dq, group * d, self.dims.q(bi, g * group), width, l);
                    shared.write_rows(&part.dk, d, self.dims.k(bi, g), width, l);
                    shared.write_rows(&part.dv, d, self.dims.v(bi, g), width, l);
                }
            });
            Ok(())
        })?;
        Ok(dqkv)
    }

    fn output_dims(&self, _input: &[usize]) -> Vec<usize> {
        let Dims { b, l, heads, d, .. } = self.dims;
        vec![b, l, heads * d]
    }
}

/// A buffer whose parts the parallel tasks write, each its own.
struct Shared<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: tasks write disjoint elements (see `write_rows`) while the buffer outlives them.
unsafe impl<T: Send> Send for Shared<T> {}
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T: Copy> Shared<T> {
    fn new(buffer: &mut [T]) -> Self {
        Self { ptr: buffer.as_mut_ptr(), len: buffer.len() }
    }

    /// Copies `l` rows of `width` elements from `src` into the buffer, row `i` at `offset + i * rs`.
    ///
    /// SAFETY: no other task reads or writes those elements meanwhile.
    unsafe fn write_rows(&self, src: &[T], width: usize, offset: usize, rs: usize, l: usize) {
        if l == 0 {
            return;
        }
        assert!(
            src.len() >= l * width && width <= rs && offset + (l - 1) * rs + width <= self.len,
            "attention: rows out of range"
        );
        for i in 0..l {
            // SAFETY: both ranges are in bounds (checked above) and the destination is this task's alone
            // (the caller's promise).
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr().add(i * width), self.ptr.add(offset + i * rs), width) };
        }
    }
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        float_fwd(self, s, l)
    }

    fn bwd(&self, qkv: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        float_bwd(self, qkv, grad)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::model::attention::{attention_bias, AttentionMode};
    use crate::model::ops::tests::{assert_composed_matches_fused, values};
    use crate::model::rotary::{RopeScaling, Rotary};

    /// Grouped heads, padding, both modes with a window, soft-capping, dropout on the probabilities, and
    /// no rotary embedding (BERT).
    #[test]
    fn composed_attention_matches_the_op() {
        let (b, l, heads, kv, d) = (2, 5, 4, 2, 6);
        let (cos, sin) = Rotary::new(d, 100.0, &RopeScaling::None).tables(l, DType::F32, &Device::Cpu).unwrap();
        let qkv = values(&[b, l, (heads + 2 * kv) * d], 1);
        let cases = [
            (AttentionMode::Bidirectional, None, None, None, true),
            (AttentionMode::Bidirectional, None, Some(2.0), Some((0.3, 11)), true),
            (AttentionMode::Causal, Some(3), None, Some((0.1, 12)), true),
            (AttentionMode::Bidirectional, None, None, Some((0.2, 13)), false),
        ];
        for (mode, window, softcap, dropout, rotated) in cases {
            let bias = attention_bias(&[5, 3], l, mode, window, DType::F32, &Device::Cpu).unwrap();
            let spec = AttentionSpec { heads, kv_heads: kv, head_dim: d, scale: 0.4, softcap };
            let rotary = rotated.then_some((&cos, &sin));
            let name = format!("attention {mode:?} {window:?} {softcap:?} {dropout:?} rotary {rotated}");
            assert_composed_matches_fused(&name, std::slice::from_ref(&qkv), &|x| {
                attention(&x[0], rotary, &bias, spec, dropout).unwrap()
            });
        }
    }
}
