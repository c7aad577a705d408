//! The gated MLP activation `act(gate) * up` from the fused gate/up projection's output `[.., 2n]`
//! (gate, then up), with its backward: SiLU or GELU with the tanh approximation (vectorised in f32); on
//! other devices and dtypes, candle's ops (whose activations record their gradients).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use super::{float_bwd, float_fwd, fused_training, with_last, FloatOp1};
use crate::error::{Error, Result};
use crate::model::cpu::{simd, Real};

/// The MLP activations of the supported families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SiLU, `x * sigmoid(x)` (Llama's).
    Silu,
    /// GELU with the tanh approximation (`gelu_pytorch_tanh`).
    GeluTanh,
}

/// `act(gate) * up` from `gate_up: [.., 2n]`; returns `[.., n]`.
pub fn gated(gate_up: &Tensor, act: Activation) -> Result<Tensor> {
    let width = gate_up.dims().last().copied().unwrap_or(0);
    if width % 2 != 0 {
        return Err(Error::internal(format!("gated activation: {width} values per row, not gate and up halves")));
    }
    let n = width / 2;
    if fused_training(gate_up) {
        return Ok(gate_up.contiguous()?.apply_op1(Gated { n, act })?);
    }
    let gate = gate_up.narrow(D::Minus1, 0, n)?;
    let gate = match act {
        Activation::Silu => gate.silu()?,
        Activation::GeluTanh if gate.track_op() => gelu_tanh(&gate)?,
        Activation::GeluTanh => gate.gelu()?,
    };
    Ok((gate * gate_up.narrow(D::Minus1, n, n)?)?)
}

/// GELU with the tanh approximation from ops with exact gradients (the gradient of candle's `gelu`
/// rounds its constants to six digits).
fn gelu_tanh(g: &Tensor) -> candle_core::Result<Tensor> {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    let inner = (((g.sqr()? * g)? * 0.044715)? + g)? * c;
    ((inner?.tanh()? + 1.0)? * g)? * 0.5
}

struct Gated {
    n: usize,
    act: Activation,
}

/// `act(g)` and `d act / d g`.
fn activation<T: Real>(g: T, act: Activation) -> (T, T) {
    let one = T::of(1.0);
    let half = T::of(0.5);
    match act {
        Activation::GeluTanh => {
            let c = (T::of(2.0) / T::of(std::f64::consts::PI)).sqrt();
            let k = T::of(0.044715);
            let u = c * (g + k * g * g * g);
            let th = u.tanh();
            let du = c * (one + T::of(3.0) * k * g * g);
            (half * g * (one + th), half * (one + th) + half * g * (one - th * th) * du)
        }
        Activation::Silu => {
            let s = one / (one + (-g).exp());
            (g * s, s * (one + g * (one - s)))
        }
    }
}

impl FloatOp1 for Gated {
    fn forward<T: Real>(&self, gate_up: &[T]) -> candle_core::Result<Vec<T>> {
        let n = self.n;
        let mut out = vec![T::of(0.0); gate_up.len() / 2];
        let rows = out.par_chunks_exact_mut(n).zip(gate_up.par_chunks_exact(2 * n));
        rows.with_min_len(8).for_each(|(out, row)| {
            let (gate, up) = row.split_at(n);
            match (self.act, T::as_f32(gate), T::as_f32(up), T::as_f32_mut(out)) {
                (Activation::Silu, Some(gate), Some(up), Some(out)) => simd::silu_mul(gate, up, out),
                (Activation::GeluTanh, Some(gate), Some(up), Some(out)) => simd::gelu_tanh_mul(gate, up, out),
                _ => {
                    out.iter_mut()
                        .zip(gate.iter().zip(up))
                        .for_each(|(o, (&g, &u))| *o = activation(g, self.act).0 * u);
                }
            }
        });
        Ok(out)
    }

    /// The gradient `[.., 2n]` (gate, then up) for the output gradient `grad: [.., n]`.
    fn backward<T: Real>(&self, gate_up: &[T], grad: &[T]) -> candle_core::Result<Vec<T>> {
        let n = self.n;
        let mut d = vec![T::of(0.0); gate_up.len()];
        let rows = d.par_chunks_exact_mut(2 * n).zip(gate_up.par_chunks_exact(2 * n).zip(grad.par_chunks_exact(n)));
        rows.with_min_len(8).for_each(|(d, (row, grad))| {
            let ((d_gate, d_up), (gate, up)) = (d.split_at_mut(n), row.split_at(n));
            if let (Some(g), Some(u), Some(dy), Some(dg), Some(du)) =
                (T::as_f32(gate), T::as_f32(up), T::as_f32(grad), T::as_f32_mut(d_gate), T::as_f32_mut(d_up))
            {
                return match self.act {
                    Activation::Silu => simd::silu_mul_backward(g, u, dy, dg, du),
                    Activation::GeluTanh => simd::gelu_tanh_mul_backward(g, u, dy, dg, du),
                };
            }
            for i in 0..n {
                let (a, da) = activation(gate[i], self.act);
                d_gate[i] = grad[i] * up[i] * da;
                d_up[i] = grad[i] * a;
            }
        });
        Ok(d)
    }

    fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        with_last(input, self.n)
    }
}

impl CustomOp1 for Gated {
    fn name(&self) -> &'static str {
        "gated-activation"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        float_fwd(self, s, l)
    }

    fn bwd(&self, gate_up: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        float_bwd(self, gate_up, grad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::tests::{assert_composed_matches_fused, values};

    #[test]
    fn composed_gated_activation_matches_the_op() {
        let gate_up = (values(&[2, 3, 10], 1) * 4.0).unwrap();
        for act in [Activation::Silu, Activation::GeluTanh] {
            assert_composed_matches_fused(&format!("{act:?}"), std::slice::from_ref(&gate_up), &|x| {
                gated(&x[0], act).unwrap()
            });
        }
    }
}
