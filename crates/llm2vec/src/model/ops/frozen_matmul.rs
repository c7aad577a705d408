//! `x W^T` for a frozen weight: on the CPU the product's backward yields the input's gradient only
//! (candle's matmul also computes and stores one for the weight); elsewhere candle's product with the
//! weight detached, so that candle computes no gradient for it either.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Storage, Tensor};

use super::{fused_training, with_last};
use crate::error::{Error, Result};

/// `x Wt` over the last axis of `x` for a frozen `weight_t: [in, out]`.
pub fn frozen_matmul(x: &Tensor, weight_t: &Tensor) -> Result<Tensor> {
    let (in_dim, out_dim) = weight_t.dims2()?;
    let dims = x.dims();
    if dims.last() != Some(&in_dim) {
        return Err(Error::internal(format!("frozen matmul: input {dims:?} does not end in {in_dim}")));
    }
    let flat = x.reshape((x.elem_count() / in_dim, in_dim))?;
    let weight_t = weight_t.detach().to_dtype(x.dtype())?;
    let y = if fused_training(x) {
        flat.contiguous()?.apply_op1(FrozenMatmul { weight_t })?
    } else {
        flat.matmul(&weight_t)?
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

#[cfg(test)]
mod tests {
    use candle_core::Var;

    use super::*;
    use crate::model::ops::tests::{assert_composed_matches_fused, values};

    /// The input's gradient matches, and the weight gets none on either path (even as a variable).
    #[test]
    fn composed_frozen_matmul_matches_the_op() {
        let weight_t = values(&[5, 4], 1);
        assert_composed_matches_fused("frozen matmul", &[values(&[2, 3, 5], 2)], &|x| {
            frozen_matmul(&x[0], &weight_t).unwrap()
        });
        let w = Var::from_tensor(&weight_t).unwrap();
        let run = || frozen_matmul(&values(&[2, 5], 3), w.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        for store in [run(), crate::model::ops::composed_ops(run)] {
            assert!(store.get(w.as_tensor()).is_none(), "the frozen weight got a gradient");
        }
    }
}
