//! The model's own candle ops, one module per op: each hands tensors' CPU storage to the kernels of
//! `model/cpu/` in its `cpu_fwd`, and the training ops compute their gradients in `bwd` (candle's
//! fused kernels record no gradient, and composing them from small ops keeps many activations alive
//! and makes candle's backward accumulate a gradient per small op). Beside each training op sits its
//! composed version, built from candle ops that record gradients, for every other device and dtype
//! (CUDA, bf16). Which one a tensor takes is decided here, in `fused_cpu` and `fused_training`;
//! [`composed_ops`] forces the composed ones (to check them against the fused ones on the CPU).
//!
//! - `attention`: attention from the fused q/k/v with its rotary embedding (the decoders; BERT has
//!   none), mask and dropout (training, and inference on the CPU);
//! - `linear`: inference products `x W^T + b`, in f32 or on integers;
//! - `lora_linear`: a fused projection over frozen weights with its LoRA updates (training);
//! - `frozen_matmul`: a product whose weight gets no gradient (the LM head in training);
//! - `rms_norm` and `gated` (the MLP's `act(gate) * up`), for training and inference.

use std::cell::Cell;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Shape, Storage, Tensor, WithDType, D};

pub mod attention;
pub mod frozen_matmul;
pub mod gated;
pub mod linear;
pub mod lora_linear;
pub mod rms_norm;

pub use attention::{attention, AttentionSpec};
pub use frozen_matmul::frozen_matmul;
pub use gated::gated;
pub use lora_linear::{lora_linear, Part};
pub use rms_norm::rms_norm;

use super::cpu::dropout::Mask;
use super::cpu::Real;

thread_local! {
    /// Set while [`composed_ops`] runs: this thread's ops compose candle's ops on every device.
    static COMPOSED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every op on this thread composed from candle's ops, as off the CPU: the composed
/// versions can then be checked against the fused kernels on the CPU (a forward pass and its backward
/// run on the calling thread, so other threads keep the fused kernels).
pub fn composed_ops<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            COMPOSED.set(self.0);
        }
    }
    let _restore = Restore(COMPOSED.replace(true));
    f()
}

/// Whether the fused CPU kernels take `t`: on the CPU, of one of `dtypes`, and not inside [`composed_ops`].
fn fused(t: &Tensor, dtypes: &[DType]) -> bool {
    t.device().is_cpu() && dtypes.contains(&t.dtype()) && !COMPOSED.get()
}

/// Whether the inference kernels take a tensor: f32 on the CPU (other devices and dtypes compose
/// candle's ops).
pub(crate) fn fused_cpu(t: &Tensor) -> bool {
    fused(t, &[DType::F32])
}

/// Whether the training ops take their fused CPU kernels for a tensor: f32 or f64 on the CPU; other
/// devices and dtypes take the ops' composed versions.
pub(crate) fn fused_training(t: &Tensor) -> bool {
    fused(t, &[DType::F32, DType::F64])
}

/// `x` in f32 when it is in a half-precision type (sums and exponentials of the composed ops run in
/// f32), else `x` itself. The cast records its gradient.
pub fn widened(x: &Tensor) -> candle_core::Result<Tensor> {
    match x.dtype() {
        DType::BF16 | DType::F16 => x.to_dtype(DType::F32),
        _ => Ok(x.clone()),
    }
}

/// Softmax over the last axis. Without a gradient to record, candle's fused kernel; else composed
/// from ops that record one (candle's kernel does not), the row maximum subtracted first (detached: it
/// cancels out of the gradient), in f32 for half-precision inputs.
pub(crate) fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    if !x.track_op() {
        return candle_nn::ops::softmax_last_dim(x);
    }
    let wide = widened(x)?;
    let max = wide.max_keepdim(D::Minus1)?.detach();
    let exp = wide.broadcast_sub(&max)?.exp()?;
    exp.broadcast_div(&exp.sum_keepdim(D::Minus1)?)?.to_dtype(x.dtype())
}

/// `x` times inverted-dropout `mask` for the composed ops, on any device. The mask is drawn on the CPU
/// with the same seed-and-index hash as the fused kernels' (so every device draws the same mask) and
/// uploaded as one byte per element: for a `[32, 512, 576]` activation that is 9.4 MB per mask
/// (about 0.4 ms over PCIe 4) and about as long to hash on a few cores.
pub(crate) fn dropped(x: &Tensor, mask: &Mask) -> candle_core::Result<Tensor> {
    let kept = Tensor::from_vec(mask.kept(x.elem_count())?, x.shape(), x.device())?.to_dtype(x.dtype())?;
    (x * kept)? * mask.scale()
}

/// The elements a layout views in a CPU storage when they are contiguous data of type `T`; `None`
/// for anything else.
fn contiguous<'a, T: WithDType>(storage: &'a CpuStorage, layout: &Layout) -> Option<&'a [T]> {
    let (start, end) = layout.contiguous_offsets()?;
    T::cpu_storage_as_slice(storage).ok().map(|v| &v[start..end])
}

/// `f` of the values of `t`, read in place, when it is contiguous f32 data on the CPU; else `None`.
pub(crate) fn with_f32_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    let (storage, layout) = t.storage_and_layout();
    cpu_data::<f32>(&storage, layout).map(f)
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
    use candle_core::{DType, Device, Tensor, Var};

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

    /// The output of `f` and the gradients of `sum(y * w)` (fixed weights `w`) for each of `inputs`.
    fn output_and_grads(inputs: &[Tensor], f: &dyn Fn(&[Tensor]) -> Tensor) -> Vec<Tensor> {
        let vars: Vec<Var> = inputs.iter().map(|x| Var::from_tensor(x).unwrap()).collect();
        let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let y = f(&tensors);
        let w = values(y.dims(), 99).to_dtype(y.dtype()).unwrap();
        let store = (&y * w).unwrap().sum_all().unwrap().backward().unwrap();
        let grads = tensors.iter().map(|t| store.get(t).expect("every input gets a gradient").clone());
        std::iter::once(y).chain(grads).collect()
    }

    /// The largest difference between `a` and `b` relative to the largest magnitude in `b`.
    fn relative_diff(a: &Tensor, b: &Tensor) -> f64 {
        let scale = max_diff(b, &b.zeros_like().unwrap()) as f64;
        let d = (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap()).unwrap();
        d.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap() / scale.max(1e-30)
    }

    /// `f`'s composed version (inside [`super::composed_ops`]) against its fused kernels on the CPU: the
    /// output and every input's gradient, within 1e-10 (relative to the largest value) in f64 and 1e-4
    /// in f32. `inputs` are converted to each dtype; `f` converts what else it uses to its inputs' dtype.
    pub fn assert_composed_matches_fused(name: &str, inputs: &[Tensor], f: &dyn Fn(&[Tensor]) -> Tensor) {
        for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-4)] {
            let inputs: Vec<Tensor> = inputs.iter().map(|x| x.to_dtype(dtype).unwrap()).collect();
            let fused = output_and_grads(&inputs, f);
            let composed = super::composed_ops(|| output_and_grads(&inputs, f));
            for (i, (c, r)) in composed.iter().zip(&fused).enumerate() {
                assert_eq!(c.dims(), r.dims(), "{name} {dtype:?}: tensor {i}");
                let diff = relative_diff(c, r);
                let what = if i == 0 { "output".to_string() } else { format!("gradient {}", i - 1) };
                assert!(diff < tol, "{name} {dtype:?}: {what} differs by {diff:e} (relative)");
            }
        }
    }
}
