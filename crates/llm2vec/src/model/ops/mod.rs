//! The model's own candle ops, one module per op: each hands tensors' CPU storage to the kernels of
//! `model/cpu/` in its `cpu_fwd`, and the training ops compute their gradients in `bwd` (candle's
//! fused kernels record no gradient, and composing them from small ops keeps many activations alive
//! and makes candle's backward accumulate a gradient per small op). Whether a tensor takes these ops or
//! candle's composed ones is decided here, in `fused_cpu`.
//!
//! - `attention`: the decoders' attention from the fused q/k/v with its rotary embedding, mask and
//!   dropout (training, and inference on the CPU);
//! - `split_attention`: inference attention over separate q, k and v (BERT);
//! - `linear`: inference products `x W^T + b`, in f32 or with 8-bit weights;
//! - `lora_linear`: a fused projection over frozen weights with its LoRA updates (training);
//! - `frozen_matmul`: a product whose weight gets no gradient (the LM head in training);
//! - `rms_norm` and `gated` (the MLP's `act(gate) * up`), for training and inference.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Shape, Storage, Tensor, WithDType};

pub mod attention;
pub mod frozen_matmul;
pub mod gated;
pub mod linear;
pub mod lora_linear;
pub mod rms_norm;
pub mod split_attention;

pub use attention::{attention, AttentionSpec};
pub use frozen_matmul::frozen_matmul;
pub use gated::gated;
pub use lora_linear::{lora_linear, Part};
pub use rms_norm::rms_norm;

use super::cpu::Real;

/// Whether the fused CPU kernels take a tensor: f32 on the CPU (other devices and dtypes compose
/// candle's ops).
pub(crate) fn fused_cpu(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// The elements a layout views in a CPU storage when they are contiguous data of type `T`; `None`
/// for anything else.
fn contiguous<'a, T: WithDType>(storage: &'a CpuStorage, layout: &Layout) -> Option<&'a [T]> {
    let (start, end) = layout.contiguous_offsets()?;
    T::cpu_storage_as_slice(storage).ok().map(|v| &v[start..end])
}

/// The same for a tensor's storage (from `Tensor::storage_and_layout`); `None` off the CPU.
fn cpu_data<'a, T: WithDType>(storage: &'a Storage, layout: &Layout) -> Option<&'a [T]> {
    match storage {
        Storage::Cpu(s) => contiguous(s, layout),
        _ => None,
    }
}

/// [`contiguous`] for the generic ops, as an error when the data does not fit.
fn elements<'a, T: Real>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [T]> {
    let Some(data) = contiguous(storage, layout) else {
        candle_core::bail!("training op: expected contiguous {} data on the CPU", std::any::type_name::<T>());
    };
    Ok(data)
}

/// The same for a tensor's storage (from `Tensor::storage_and_layout`).
fn tensor_elements<'a, T: Real>(storage: &'a Storage, layout: &Layout) -> candle_core::Result<&'a [T]> {
    match storage {
        Storage::Cpu(s) => elements(s, layout),
        _ => candle_core::bail!("training op: the ops run on the CPU only"),
    }
}

/// `dims` with the last one replaced by `last`.
fn with_last(dims: &[usize], last: usize) -> Vec<usize> {
    let mut out = dims.to_vec();
    if let Some(l) = out.last_mut() {
        *l = last;
    }
    out
}

/// An op of one input computed on contiguous slices, generic over the float type: the ops of one
/// input implement `CustomOp1` through [`float_fwd`] and [`float_bwd`].
trait FloatOp1 {
    fn forward<T: Real>(&self, x: &[T]) -> candle_core::Result<Vec<T>>;
    /// The input's gradient for the output gradient `grad`.
    fn backward<T: Real>(&self, x: &[T], grad: &[T]) -> candle_core::Result<Vec<T>>;
    /// The output's dims for the input's.
    fn output_dims(&self, input: &[usize]) -> Vec<usize>;
}

/// `CustomOp1::cpu_fwd` of a [`FloatOp1`].
fn float_fwd(op: &impl FloatOp1, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
    fn run<T: Real>(op: &impl FloatOp1, s: &CpuStorage, l: &Layout) -> candle_core::Result<CpuStorage> {
        Ok(T::to_cpu_storage_owned(op.forward(elements::<T>(s, l)?)?))
    }
    Ok((by_float!(s.dtype(), run(op, s, l))?, Shape::from(op.output_dims(l.dims()))))
}

/// `CustomOp1::bwd` of a [`FloatOp1`].
fn float_bwd(op: &impl FloatOp1, x: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
    fn run<T: Real>(op: &impl FloatOp1, x: &Tensor, grad: &Tensor) -> candle_core::Result<Tensor> {
        let grad = grad.contiguous()?;
        let [(xg, xl), (gg, gl)] = [x, &grad].map(Tensor::storage_and_layout);
        let dx = op.backward(tensor_elements::<T>(&xg, xl)?, tensor_elements::<T>(&gg, gl)?)?;
        Tensor::from_vec(dx, x.shape(), x.device())
    }
    Ok(Some(by_float!(x.dtype(), run(op, x, grad))?))
}

/// Calls `$f::<T>` for a float dtype (f32 or f64).
macro_rules! by_float {
    ($dtype:expr, $f:ident($($arg:expr),*)) => {
        match $dtype {
            candle_core::DType::F32 => $f::<f32>($($arg),*),
            candle_core::DType::F64 => $f::<f64>($($arg),*),
            dtype => candle_core::bail!("training op: f32 or f64 tensors only, got {dtype:?}"),
        }
    };
}
use by_float;

/// Helpers of the tests that hold the fused ops against candle's composed ones.
#[cfg(test)]
pub(crate) mod tests {
    use candle_core::{DType, Device, Tensor};

    /// Deterministic values in [-1, 1).
    pub fn values(shape: &[usize], seed: usize) -> Tensor {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5) - 1.0).collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

    pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap()).unwrap();
        d.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap() as f32
    }
}
