//! Fused f32 kernels for inference on the CPU. Each takes over one step of the layers in `layers.rs`
//! when its inputs are f32 CPU tensors in a layout it reads, and answers `None` otherwise, so the
//! composed candle ops remain the path for other devices and dtypes. (The decoder families' attention
//! takes the training op of `trainable::attention` for inference too: it reads the fused q/k/v with its
//! rotary embedding; the attention here serves BERT.)

use candle_core::{CpuStorage, Layout, Storage, WithDType};

pub mod attention;
pub mod isa;
pub mod linear;
pub mod q8;
pub mod simd;

/// The elements a layout views in a CPU storage when they are contiguous data of type `T`; `None`
/// for anything else.
pub(super) fn contiguous<'a, T: WithDType>(storage: &'a CpuStorage, layout: &Layout) -> Option<&'a [T]> {
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

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Module, Tensor};

    use crate::model::layers::{
        attention, attention_bias, rotary_attention, Attend, AttentionMode, Linear, RopeScaling, Rotary,
    };
    use crate::model::trainable::AttentionSpec;
    use crate::model::{Pass, Projection};

    /// Deterministic values in [-1, 1).
    fn values(shape: &[usize], seed: usize) -> Tensor {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5) - 1.0).collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap()).unwrap();
        d.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap() as f32
    }

    /// The fused op (f32) against the composed candle ops (f64, which the op does not take):
    /// grouped heads, padding, both attention modes, a sliding window, soft-capping and a strided v,
    /// compared on the real tokens' rows.
    #[test]
    fn attention_matches_the_composed_ops() {
        let (b, heads, kv, l, d) = (3, 6, 2, 9, 8);
        for (mode, window, softcap) in [
            (AttentionMode::Bidirectional, None, None),
            (AttentionMode::Causal, Some(3), None),
            (AttentionMode::Causal, None, Some(2.0)),
        ] {
            let q = values(&[b, heads, l, d], 1);
            let k = values(&[b, kv, l, d], 2);
            let v = values(&[b, l, kv, d], 3).transpose(1, 2).unwrap();
            let lengths = [9, 4, 1];
            let bias = attention_bias(&lengths, l, mode, window, DType::F32, &Device::Cpu).unwrap();
            let fused = attention(&q, &k, &v, &bias, 0.3, softcap).unwrap();
            let f64s = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
            let composed = attention(&f64s(&q), &f64s(&k), &f64s(&v), &f64s(&bias), 0.3, softcap).unwrap();
            assert_eq!(fused.dims(), &[b, l, heads * d]);
            // Padding rows see nothing but blocked keys; their values differ between dtypes and are never used.
            for (i, &len) in lengths.iter().enumerate() {
                let (f, c) = (
                    fused.get(i).unwrap().narrow(0, 0, len).unwrap(),
                    composed.get(i).unwrap().narrow(0, 0, len).unwrap(),
                );
                assert!(max_diff(&f, &c) < 1e-5, "{mode:?} {window:?} {softcap:?}, sequence {i}: {}", max_diff(&f, &c));
            }
        }
    }

    /// Inference attention of the decoder families on the CPU in f32 (one op reading the fused q/k/v with
    /// its rotary embedding) against the composed candle ops in f64: grouped heads, padding, causal with a
    /// window, soft-capping, compared on the real tokens' rows.
    #[test]
    fn rotary_attention_matches_the_composed_ops() {
        let (b, heads, kv, l, d) = (3, 6, 2, 9, 8);
        let rotary = Rotary::new(d, 100.0, &RopeScaling::None);
        for (mode, window, softcap) in
            [(AttentionMode::Bidirectional, None, None), (AttentionMode::Causal, Some(3), Some(2.0))]
        {
            let qkv = values(&[b, l, (heads + 2 * kv) * d], 7);
            let lengths = [9, 4, 1];
            let spec = AttentionSpec { heads, kv_heads: kv, head_dim: d, scale: 0.3, softcap };
            let run = |dtype: DType| {
                let (cos, sin) = rotary.tables(l, dtype, &Device::Cpu).unwrap();
                let bias = attention_bias(&lengths, l, mode, window, dtype, &Device::Cpu).unwrap();
                rotary_attention(&qkv.to_dtype(dtype).unwrap(), &Attend { cos, sin, bias }, spec, Pass::Infer).unwrap()
            };
            let (fused, composed) = (run(DType::F32), run(DType::F64));
            assert_eq!(fused.dims(), &[b, l, heads * d]);
            for (i, &len) in lengths.iter().enumerate() {
                let (f, c) = (
                    fused.get(i).unwrap().narrow(0, 0, len).unwrap(),
                    composed.get(i).unwrap().narrow(0, 0, len).unwrap(),
                );
                assert!(max_diff(&f, &c) < 1e-5, "{mode:?} {window:?} {softcap:?}, sequence {i}: {}", max_diff(&f, &c));
            }
        }
    }

    #[test]
    fn linear_matches_the_composed_ops() {
        for bias in [None, Some(values(&[5], 4))] {
            let weight = values(&[5, 7], 5);
            let x = values(&[2, 3, 7], 6);
            let lin = Linear::new(Projection::Q, weight.clone(), bias.clone()).unwrap();
            let want = x.broadcast_matmul(&weight.t().unwrap()).unwrap();
            let want = match &bias {
                Some(b) => want.broadcast_add(b).unwrap(),
                None => want,
            };
            let got = lin.forward(&x).unwrap();
            assert_eq!(got.dims(), &[2, 3, 5]);
            assert!(max_diff(&got, &want) < 1e-5);
        }
    }
}
