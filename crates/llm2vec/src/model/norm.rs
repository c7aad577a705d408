//! RMSNorm, the decoder families' norm: one fused pass for inference, an op with its own backward for
//! training.

use candle_core::{DType, Module, Tensor};

use super::ops;
use super::tuning::Pass;
use crate::error::Result;
use crate::weights::Weights;

/// RMSNorm: `x / sqrt(mean(x^2) + eps) * scale`, accumulated in f32 or wider (one fused pass for f32 inputs,
/// and for half-precision inputs on a GPU).
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
            return ops::rms_norm(x, &self.scale, self.eps);
        }
        Ok(self.forward(x)?)
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if fused_kernel(x) {
            return candle_nn::ops::rms_norm(&x.contiguous()?, &self.scale, self.eps as f32);
        }
        ops::rms_norm::composed(x, &self.scale, self.eps)
    }
}

/// Whether candle's fused kernel normalizes `x` as precisely as the composed ops: in f32 on every
/// device, and in bf16 or f16 off the CPU, where the kernel sums, scales and multiplies in f32 and
/// rounds once (its CPU version rounds the root mean square to the half type before dividing).
fn fused_kernel(x: &Tensor) -> bool {
    match x.dtype() {
        DType::F32 => true,
        DType::BF16 | DType::F16 => !x.device().is_cpu(),
        _ => false,
    }
}
