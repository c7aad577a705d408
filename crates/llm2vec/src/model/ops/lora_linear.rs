//! A projection over a frozen weight with LoRA updates as one op: `x W^T + bias` plus, for each tuned
//! part of a fused projection (q, k and v side by side, say), `dropout(x) A^T B^T * scale` added to that
//! part's columns. One product covers every part's frozen weight, forward and backward (the weight may
//! be a column slice of a larger one, read in place). Backward yields the gradients of `x` and of the
//! parts' A and B only; it recomputes the small `x A^T`. On other devices and dtypes the same sum is
//! composed from candle's ops, with the frozen weight and bias detached (candle computes no gradient for
//! them) and A and B cast to `x`'s dtype inside the graph (f32 master weights under a bf16 model get
//! their gradients in f32).

use std::borrow::Cow;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use super::{by_float, dropped, elements, fused_training, tensor_elements, with_last};
use crate::error::{Error, Result};
use crate::model::cpu::dropout::Mask;
use crate::model::cpu::gemm::{new_product, product, Matrix};
use crate::model::cpu::Real;
use crate::model::tuning::LowRank;

/// One part of a projection's output: its width and, when tuned, its LoRA update with the seed of its
/// dropout mask on `x` (none: no dropout).
pub struct Part {
    /// Its output width.
    pub width: usize,
    /// Its LoRA update and dropout seed, when tuned.
    pub update: Option<(LowRank, Option<u64>)>,
}

/// `x: [.., in]`, `weight_t: [in, out]` (frozen, any strides), `bias: [out]` (frozen), `parts` covering
/// `out` in order; the updates' A and B are trainable variables. Returns `[.., out]`.
pub fn lora_linear(x: &Tensor, weight_t: &Tensor, bias: Option<&Tensor>, parts: &[Part]) -> Result<Tensor> {
    let (in_dim, out_dim) = weight_t.dims2()?;
    let widths = parts.iter().map(|p| p.width).sum::<usize>();
    if x.dims().last() != Some(&in_dim) || widths != out_dim || bias.is_some_and(|b| b.elem_count() != out_dim) {
        return Err(Error::internal(format!(
            "lora linear: input {:?}, parts of {widths} values and a bias against a [{in_dim}, {out_dim}] weight",
            x.dims()
        )));
    }
    if parts.iter().all(|p| p.update.is_none()) {
        return Err(Error::internal("lora linear: no part has an update (use the frozen product)"));
    }
    let masks = parts
        .iter()
        .map(|p| {
            let (lr, seed) = p.update.as_ref()?;
            seed.filter(|_| lr.dropout > 0.0).map(|seed| Mask::new(seed, lr.dropout, x.elem_count()))
        })
        .collect::<Vec<_>>();
    for part in parts {
        if let Some((lr, _)) = &part.update {
            let (r, width) = (lr.a.dim(0)?, part.width);
            if lr.a.dims() != [r, in_dim] || lr.b.dims() != [width, r] {
                return Err(Error::internal(format!(
                    "lora linear: A {:?} and B {:?} for a part of {width} outputs from {in_dim}",
                    lr.a.dims(),
                    lr.b.dims()
                )));
            }
        }
    }
    let bias = bias.map(|b| b.detach().to_dtype(x.dtype())).transpose()?;
    let weight_t = weight_t.detach().to_dtype(x.dtype())?;
    if !fused_training(x) {
        return composed(x, &weight_t, bias.as_ref(), parts, masks);
    }
    let (mut ops, mut a_flat, mut b_flat) = (Vec::with_capacity(parts.len()), Vec::new(), Vec::new());
    let (mut offset, mut a_at, mut b_at) = (0, 0, 0);
    for (part, dropout) in parts.iter().zip(masks) {
        let tuned = match &part.update {
            Some((lr, _)) => {
                let (r, width) = (lr.a.dim(0)?, part.width);
                let tuned = Tuned { r, a_at, b_at, scale: lr.scale, dropout };
                (a_at, b_at) = (a_at + r * in_dim, b_at + width * r);
                a_flat.push(lr.a.flatten_all()?.to_dtype(x.dtype())?);
                b_flat.push(lr.b.flatten_all()?.to_dtype(x.dtype())?);
                Some(tuned)
            }
            None => None,
        };
        ops.push(PartOp { offset, width: part.width, tuned });
        offset += part.width;
    }
    let bias = bias.map(|b| b.contiguous()).transpose()?;
    let op = LoraLinear { weight_t, bias, parts: ops };
    // No reshape around the op: in candle's backward every reshape costs a zeroed gradient and an add.
    Ok(x.contiguous()?.apply_op3(&Tensor::cat(&a_flat, 0)?, &Tensor::cat(&b_flat, 0)?, op)?)
}

/// The same sum from candle's ops, on any device: the frozen product (weight and bias detached), plus each
/// tuned part's `dropout(x) A^T B^T * scale` (A and B cast to `x`'s dtype) in its columns.
fn composed(
    x: &Tensor,
    weight_t: &Tensor,
    bias: Option<&Tensor>,
    parts: &[Part],
    masks: Vec<Option<Mask>>,
) -> Result<Tensor> {
    let (in_dim, out_dim) = weight_t.dims2()?;
    let flat = x.reshape((x.elem_count() / in_dim, in_dim))?;
    let mut y = flat.matmul(weight_t)?;
    if let Some(b) = bias {
        y = y.broadcast_add(b)?;
    }
    let updates = parts
        .iter()
        .zip(&masks)
        .map(|(part, mask)| match &part.update {
            Some((lr, _)) => {
                let xd = match mask {
                    Some(mask) => dropped(&flat, mask)?,
                    None => flat.clone(),
                };
                let (a, b) = (lr.a.to_dtype(x.dtype())?, lr.b.to_dtype(x.dtype())?);
                xd.matmul(&a.t()?)?.matmul(&b.t()?)? * lr.scale
            }
            None => Tensor::zeros((flat.dim(0)?, part.width), x.dtype(), x.device()),
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    y = (y + Tensor::cat(&updates, D::Minus1)?)?;
    Ok(y.reshape(with_last(x.dims(), out_dim))?)
}

struct LoraLinear {
    weight_t: Tensor,
    bias: Option<Tensor>,
    parts: Vec<PartOp>,
}

/// A part's columns in the output and, when tuned, where its A `[r, in]` and B `[width, r]` sit in the
/// flattened, concatenated A and B arguments.
struct PartOp {
    offset: usize,
    width: usize,
    tuned: Option<Tuned>,
}

struct Tuned {
    r: usize,
    a_at: usize,
    b_at: usize,
    scale: f64,
    dropout: Option<Mask>,
}

impl Tuned {
    fn dropped<'a, T: Real>(&self, x: &'a [T]) -> candle_core::Result<Cow<'a, [T]>> {
        Ok(match &self.dropout {
            Some(mask) => {
                let mut dropped = x.to_vec();
                mask.apply_all(&mut dropped)?;
                Cow::Owned(dropped)
            }
            None => Cow::Borrowed(x),
        })
    }
}

/// `(m, k, n)`: rows of `x: [.., k]` and the output width.
type Sizes = (usize, usize, usize);

impl LoraLinear {
    /// The frozen weight `[in, out]` with its strides, read while `f` runs.
    fn with_weight<T: Real, R>(&self, f: impl FnOnce(Matrix<T>) -> candle_core::Result<R>) -> candle_core::Result<R> {
        let (guard, layout) = self.weight_t.storage_and_layout();
        let candle_core::Storage::Cpu(storage) = &*guard else {
            candle_core::bail!("lora-linear: the weight is not on the CPU");
        };
        let data = T::cpu_storage_as_slice(storage)?;
        let (rows, cols) = layout.shape().dims2()?;
        let (rs, cs) = (layout.stride()[0], layout.stride()[1]);
        if rows == 0 || cols == 0 || layout.start_offset() + (rows - 1) * rs + (cols - 1) * cs >= data.len() {
            candle_core::bail!("lora-linear: weight layout out of range");
        }
        f(Matrix { ptr: data[layout.start_offset()..].as_ptr(), cs: cs as isize, rs: rs as isize })
    }

    fn forward<T: Real>(&self, x: &[T], a: &[T], b: &[T], (m, k, n): Sizes) -> candle_core::Result<Vec<T>> {
        let bias = self.bias.as_ref().map(Tensor::storage_and_layout);
        self.with_weight::<T, _>(|w| {
            // SAFETY: every matrix is addressed within its slice (the weight's range is checked above,
            // the parts' A and B ranges in `check`).
            unsafe {
                let mut y = match &bias {
                    Some((guard, layout)) => {
                        let mut y: Vec<T> =
                            tensor_elements::<T>(guard, layout)?.iter().copied().cycle().take(m * n).collect();
                        product(&mut y, n, (m, n, k), Matrix::rows(x, k), w, 1.0, true);
                        y
                    }
                    None => new_product((m, n, k), Matrix::rows(x, k), w, 1.0),
                };
                for part in &self.parts {
                    let Some(t) = &part.tuned else { continue };
                    let xd = t.dropped(x)?;
                    let h = new_product((m, t.r, k), Matrix::rows(&xd, k), Matrix::rows(&a[t.a_at..], k).t(), 1.0);
                    let update = (Matrix::rows(&h, t.r), Matrix::rows(&b[t.b_at..], t.r).t());
                    product(&mut y[part.offset..], n, (m, part.width, t.r), update.0, update.1, t.scale, true);
                }
                Ok(y)
            }
        })
    }

    /// `(d x, d A, d B)` for the output gradient `grad: [m, n]`.
    #[allow(clippy::type_complexity)]
    fn backward<T: Real>(
        &self,
        x: &[T],
        a: &[T],
        b: &[T],
        grad: &[T],
        (m, k, n): Sizes,
    ) -> candle_core::Result<(Vec<T>, Vec<T>, Vec<T>)> {
        let (mut grad_a, mut grad_b) = (vec![T::of(0.0); a.len()], vec![T::of(0.0); b.len()]);
        self.with_weight::<T, _>(|w| {
            // SAFETY: as in `forward`.
            unsafe {
                let mut grad_x = new_product((m, k, n), Matrix::rows(grad, n), w.t(), 1.0);
                for part in &self.parts {
                    let Some(t) = &part.tuned else { continue };
                    let (r, width) = (t.r, part.width);
                    let g = Matrix { ptr: grad[part.offset..].as_ptr(), cs: 1, rs: n as isize };
                    let (a_p, b_p) = (Matrix::rows(&a[t.a_at..], k), Matrix::rows(&b[t.b_at..], r));
                    let xd = t.dropped(x)?;
                    let h = new_product((m, r, k), Matrix::rows(&xd, k), a_p.t(), 1.0);
                    product(&mut grad_b[t.b_at..], r, (width, r, m), g.t(), Matrix::rows(&h, r), t.scale, false);
                    let grad_h = new_product((m, r, width), g, b_p, t.scale);
                    product(
                        &mut grad_a[t.a_at..],
                        k,
                        (r, k, m),
                        Matrix::rows(&grad_h, r).t(),
                        Matrix::rows(&xd, k),
                        1.0,
                        false,
                    );
                    match &t.dropout {
                        None => product(&mut grad_x, k, (m, k, r), Matrix::rows(&grad_h, r), a_p, 1.0, true),
                        Some(mask) => {
                            let mut through = new_product((m, k, r), Matrix::rows(&grad_h, r), a_p, 1.0);
                            mask.apply_all(&mut through)?;
                            grad_x.par_iter_mut().zip(&through).for_each(|(g, &t)| *g += t);
                        }
                    }
                }
                Ok((grad_x, grad_a, grad_b))
            }
        })
    }

    /// `(m, k, n)` from the shapes of `x: [.., k]` and the flattened A and B, checked against the parts.
    fn check(&self, x: &Shape, a: &Shape, b: &Shape) -> candle_core::Result<Sizes> {
        let k = x.dims().last().copied().unwrap_or(0);
        let n = self.parts.iter().map(|p| p.width).sum::<usize>();
        let fits = self
            .parts
            .iter()
            .filter_map(|p| Some((p, p.tuned.as_ref()?)))
            .all(|(p, t)| t.a_at + t.r * k <= a.elem_count() && t.b_at + p.width * t.r <= b.elem_count());
        if k == 0 || !fits {
            candle_core::bail!("lora-linear: x {x:?}, A {a:?}, B {b:?} do not fit the parts");
        }
        Ok((x.elem_count() / k, k, n))
    }
}

impl CustomOp3 for LoraLinear {
    fn name(&self) -> &'static str {
        "lora-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        a: &CpuStorage,
        al: &Layout,
        b: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        fn run<T: Real>(
            op: &LoraLinear,
            x: (&CpuStorage, &Layout),
            a: (&CpuStorage, &Layout),
            b: (&CpuStorage, &Layout),
        ) -> candle_core::Result<(CpuStorage, Shape)> {
            let sizes = op.check(x.1.shape(), a.1.shape(), b.1.shape())?;
            let y = op.forward(elements::<T>(x.0, x.1)?, elements::<T>(a.0, a.1)?, elements::<T>(b.0, b.1)?, sizes)?;
            Ok((T::to_cpu_storage_owned(y), Shape::from(with_last(x.1.dims(), sizes.2))))
        }
        by_float!(xs.dtype(), run(self, (xs, xl), (a, al), (b, bl)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        fn run<T: Real>(
            op: &LoraLinear,
            x: &Tensor,
            a: &Tensor,
            b: &Tensor,
            grad: &Tensor,
        ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
            let grad = grad.contiguous()?;
            let sizes = op.check(x.shape(), a.shape(), b.shape())?;
            let [(xg, xl), (ag, al), (bg, bl), (gg, gl)] = [x, a, b, &grad].map(Tensor::storage_and_layout);
            let (x_, a_, b_, g_) = (
                tensor_elements::<T>(&xg, xl)?,
                tensor_elements::<T>(&ag, al)?,
                tensor_elements::<T>(&bg, bl)?,
                tensor_elements::<T>(&gg, gl)?,
            );
            let (dx, da, db) = op.backward(x_, a_, b_, g_, sizes)?;
            let device = x.device();
            Ok((
                Tensor::from_vec(dx, x.shape(), device)?,
                Tensor::from_vec(da, a.shape(), device)?,
                Tensor::from_vec(db, b.shape(), device)?,
            ))
        }
        let (dx, da, db) = by_float!(x.dtype(), run(self, x, a, b, grad))?;
        Ok((Some(dx), Some(da), Some(db)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::tests::{assert_composed_matches_fused, values};

    /// A fused projection of three parts: LoRA with dropout on the first, none on the second, LoRA without
    /// dropout on the third; the gradients of x and of both updates' A and B.
    #[test]
    fn composed_lora_linear_matches_the_op() {
        let (w_t, bias) = (values(&[6, 9], 1), values(&[9], 2));
        let inputs =
            [values(&[2, 3, 6], 3), values(&[2, 6], 4), values(&[4, 2], 5), values(&[3, 6], 6), values(&[2, 3], 7)];
        assert_composed_matches_fused("lora linear", &inputs, &|t| {
            let update = |a: &Tensor, b: &Tensor, dropout, seed| {
                Some((LowRank { a: a.clone(), b: b.clone(), scale: 2.0, dropout }, seed))
            };
            let parts = [
                Part { width: 4, update: update(&t[1], &t[2], 0.25, Some(13)) },
                Part { width: 3, update: None },
                Part { width: 2, update: update(&t[3], &t[4], 0.0, None) },
            ];
            lora_linear(&t[0], &w_t, Some(&bias), &parts).unwrap()
        });
    }
}
