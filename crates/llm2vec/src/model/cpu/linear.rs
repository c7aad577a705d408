//! `x W^T + bias` as one product: the output starts as the bias rows (or uninitialised, without a
//! bias) and the product accumulates into it, so there is no zeroed buffer and no separate add pass.
//! (A residual is still added after the product: accumulating into it would round the product at
//! the residual's scale once per block of the inner dimension, which makes results depend on the
//! batch more than the separate add does.)

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use gemm::{gemm, Parallelism};

/// `x: [.., in]`, `weight_t: [in, out]`, `bias: [out]`. `None` when the inputs are not contiguous f32
/// CPU tensors of those shapes.
pub fn linear(x: &Tensor, weight_t: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Option<Tensor>> {
    if !(x.device().is_cpu() && x.dtype() == DType::F32 && x.is_contiguous()) {
        return Ok(None);
    }
    let (inp, out) = weight_t.dims2()?;
    if x.dims().last() != Some(&inp) || bias.is_some_and(|b| b.elem_count() != out) {
        return Ok(None);
    }
    let (weight_guard, weight_layout) = weight_t.storage_and_layout();
    let bias_guard = bias.map(|b| b.storage_and_layout());
    let Some(weight) = super::cpu_data::<f32>(&weight_guard, weight_layout) else {
        return Ok(None);
    };
    let bias = match bias_guard.as_ref().map(|(s, l)| super::cpu_data::<f32>(s, l)) {
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
        let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("cpu-linear: expects contiguous f32");
        };
        let x = &data[start..end];
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
        let read_dst = self.bias.is_some();
        let threads = rayon::current_num_threads();
        let parallelism = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
        // SAFETY: `y` has room for `m * n` values (initialised when `read_dst`, written in full by the
        // product otherwise); `x` is `[m, k]` and `weight` `[k, n]`, both row-major.
        unsafe {
            gemm(
                m,
                n,
                k,
                y.as_mut_ptr(),
                1,
                n as isize,
                read_dst,
                x.as_ptr(),
                1,
                k as isize,
                self.weight.as_ptr(),
                1,
                n as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
            y.set_len(m * n);
        }
        let mut dims = layout.shape().dims().to_vec();
        *dims.last_mut().expect("non-empty dims") = n;
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }
}
