//! `x W^T` for a frozen weight: on the CPU the product's backward yields the input's gradient only
//! (candle's matmul also computes and stores one for the weight).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Storage, Tensor};

use super::with_last;
use crate::error::{Error, Result};

/// `x Wt` over the last axis of `x` for a frozen `weight_t: [in, out]`.
pub fn frozen_matmul(x: &Tensor, weight_t: &Tensor) -> Result<Tensor> {
    let (in_dim, out_dim) = weight_t.dims2()?;
    let dims = x.dims();
    if dims.last() != Some(&in_dim) {
        return Err(Error::internal(format!("frozen matmul: input {dims:?} does not end in {in_dim}")));
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
