//! The decoder families' gated MLP activation `act(gate) * up`, from the fused gate/up projection.

use candle_core::Tensor;

use super::linear::Linear;
use super::ops;
use super::tuning::Pass;
use crate::error::Result;

pub use super::ops::gated::Activation;

/// `act(gate) * up` from block `layer`'s fused gate/up projection of `x` ([`ops::gated()`]: one op without
/// intermediate tensors on the CPU, candle's ops elsewhere).
pub fn gated_mlp(gate_up: &Linear, x: &Tensor, layer: usize, act: Activation, pass: Pass) -> Result<Tensor> {
    ops::gated(&gate_up.output(x, layer, pass)?, act)
}
