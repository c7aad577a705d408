//! The decoder families' gated MLP activation `act(gate) * up`, from the fused gate/up projection.

use candle_core::{Tensor, D};

use super::linear::Linear;
use super::ops::{self, fused_cpu};
use super::tuning::Pass;
use crate::error::Result;

pub use super::ops::gated::Activation;

/// `act(gate) * up` from block `layer`'s fused gate/up projection of `x`. Training, and inference on the
/// CPU in f32, take one op without intermediate tensors (with its own backward); other devices and
/// dtypes compose candle's ops.
pub fn gated_mlp(gate_up: &Linear, x: &Tensor, layer: usize, act: Activation, pass: Pass) -> Result<Tensor> {
    let gate_up = gate_up.output(x, layer, pass)?;
    if pass.is_train() || fused_cpu(&gate_up) {
        return ops::gated(&gate_up, act);
    }
    let n = gate_up.dim(D::Minus1)? / 2;
    let gate = gate_up.narrow(D::Minus1, 0, n)?;
    let gate = match act {
        Activation::Silu => candle_nn::ops::silu(&gate)?,
        Activation::GeluTanh => gate.gelu()?,
    };
    Ok((gate * gate_up.narrow(D::Minus1, n, n)?)?)
}
