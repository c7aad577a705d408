//! RMSNorm `x / sqrt(mean(x^2) + eps) * scale` over the last axis with its backward, for training
//! (`scale` is frozen): one op generic over f32 and f64 on the CPU, candle's ops elsewhere.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use super::{float_bwd, float_fwd, fused_training, tensor_elements, widened, FloatOp1};
use crate::error::Result;
use crate::model::cpu::Real;

/// `x: [.., n]`, `scale: [n]`.
pub fn rms_norm(x: &Tensor, scale: &Tensor, eps: f64) -> Result<Tensor> {
    let scale = scale.detach().to_dtype(x.dtype())?;
    if !fused_training(x) {
        return Ok(composed(x, &scale, eps)?);
    }
    Ok(x.contiguous()?.apply_op1(RmsNorm { scale: scale.contiguous()?, eps })?)
}

/// The same from candle's ops (which record gradients), on any device: sums in f32 for half-precision
/// `x`, the result in `x`'s dtype times `scale` (in that dtype).
pub(crate) fn composed(x: &Tensor, scale: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let wide = widened(x)?;
    let ms = wide.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = wide.broadcast_div(&(ms + eps)?.sqrt()?)?;
    normed.to_dtype(x.dtype())?.broadcast_mul(scale)
}

struct RmsNorm {
    scale: Tensor,
    eps: f64,
}

impl FloatOp1 for RmsNorm {
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

    fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        input.to_vec()
    }
}

impl RmsNorm {
    fn inverse_rms<T: Real>(&self, row: &[T]) -> T {
        let mut sum = T::of(0.0);
        row.iter().for_each(|&v| sum += v * v);
        T::of(1.0) / (sum / T::of(row.len() as f64) + T::of(self.eps)).sqrt()
    }
}

impl CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        float_fwd(self, s, l)
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        float_bwd(self, x, grad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::tests::{assert_composed_matches_fused, values};

    #[test]
    fn composed_rms_norm_matches_the_op() {
        let scale = values(&[7], 1);
        assert_composed_matches_fused("rms norm", &[values(&[2, 3, 7], 2)], &|x| {
            rms_norm(&x[0], &scale, 1e-6).unwrap()
        });
    }
}
