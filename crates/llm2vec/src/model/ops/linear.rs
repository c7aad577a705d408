//! Inference products `x W^T + bias` on the CPU, with f32 weights or with 8-bit ones (`cpu/q8.rs`).
//!
//! In f32, one product: the output starts as the bias rows (or uninitialised, without a bias) and the
//! product accumulates into it, so there is no zeroed buffer and no separate add pass. (A residual is
//! still added after the product: accumulating into it would round the product at the residual's
//! scale once per block of the inner dimension, which makes results depend on the batch more than the
//! separate add does.)

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use gemm::Parallelism;

use super::{contiguous, cpu_data, fused_cpu, with_last};
use crate::model::cpu::gemm::{product_at, Matrix};
use crate::model::cpu::q8;

/// `x: [.., in]`, `weight_t: [in, out]`, `bias: [out]`. `None` when the inputs are not contiguous f32
/// CPU tensors of those shapes.
pub fn linear(x: &Tensor, weight_t: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Option<Tensor>> {
    if !(fused_cpu(x) && x.is_contiguous()) {
        return Ok(None);
    }
    let (inp, out) = weight_t.dims2()?;
    if x.dims().last() != Some(&inp) || bias.is_some_and(|b| b.elem_count() != out) {
        return Ok(None);
    }
    let (weight_guard, weight_layout) = weight_t.storage_and_layout();
    let bias_guard = bias.map(|b| b.storage_and_layout());
    let Some(weight) = cpu_data::<f32>(&weight_guard, weight_layout) else {
        return Ok(None);
    };
    let bias = match bias_guard.as_ref().map(|(s, l)| cpu_data::<f32>(s, l)) {
        Some(None) => return Ok(None),
        bias => bias.flatten(),
    };
    Ok(Some(x.apply_op1_no_bwd(&Linear { weight, bias, out })?))
}

struct Linear<'a> {
    /// `[in, out]`, row-major.
    weight: &'a [f32],
    bias: Option<&'a [f32]>,
    out: usize,
}

impl CustomOp1 for Linear<'_> {
    fn name(&self) -> &'static str {
        "cpu-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let Some(x) = contiguous::<f32>(storage, layout) else {
            candle_core::bail!("cpu-linear: expects contiguous f32");
        };
        let n = self.out;
        let k = self.weight.len() / n.max(1);
        if k == 0 || x.len() % k != 0 || self.weight.len() != k * n {
            candle_core::bail!("cpu-linear: input of {} values against a [{k}, {n}] weight", x.len());
        }
        let m = x.len() / k;
        let mut y: Vec<f32> = match self.bias {
            Some(b) => b.iter().copied().cycle().take(m * n).collect(),
            None => Vec::with_capacity(m * n),
        };
        let threads = rayon::current_num_threads();
        let parallelism = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
        let (lhs, rhs) = (Matrix::rows(x, k), Matrix::rows(self.weight, n));
        // SAFETY: `y` has room for `m * n` values (initialised when the product accumulates into the
        // bias, written in full by the product otherwise); `x` is `[m, k]` and `weight` `[k, n]`, both
        // row-major.
        unsafe {
            product_at(y.as_mut_ptr(), n, (m, n, k), lhs, rhs, 1.0, self.bias.is_some(), parallelism);
            y.set_len(m * n);
        }
        Ok((CpuStorage::F32(y), Shape::from(with_last(layout.dims(), n))))
    }
}

/// `x W^T + bias` with `w` (and its bias) in 8 bits: `x: [.., inputs]` contiguous f32 on the CPU.
pub fn linear_q8(x: &Tensor, w: &q8::Matrix) -> candle_core::Result<Tensor> {
    if !fused_cpu(x) || x.dims().last() != Some(&w.inputs()) {
        candle_core::bail!(
            "8-bit linear: expects f32 CPU input [.., {}], got {:?} {:?}",
            w.inputs(),
            x.dtype(),
            x.dims()
        );
    }
    x.contiguous()?.apply_op1_no_bwd(&LinearQ8(w))
}

struct LinearQ8<'a>(&'a q8::Matrix);

impl CustomOp1 for LinearQ8<'_> {
    fn name(&self) -> &'static str {
        "cpu-linear-q8"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let Some(x) = contiguous::<f32>(storage, layout) else {
            candle_core::bail!("cpu-linear-q8: expects contiguous f32");
        };
        let n = self.0.outputs();
        let mut y = vec![0f32; x.len() / self.0.inputs() * n];
        self.0.product(x, &mut y);
        Ok((CpuStorage::F32(y), Shape::from(with_last(layout.dims(), n))))
    }
}
