//! Linear layers: one projection or several fused ones (q, k and v side by side), dense or quantized
//! for inference on the CPU, with the tuning's LoRA updates in a training pass.

use candle_core::{DType, Module, Tensor};

use super::cpu::{gemm, q8};
use super::ops::{self, fused_cpu, with_f32_values, Part};
use super::tuning::{Pass, Projection, Site};
use crate::error::{Error, Result};

/// `y = x W^T + b`, with `W^T` stored contiguous (`[in, out]`) so that matrix products read it in order,
/// or quantized for inference on the CPU ([`Linear::from_parts`]). It computes one projection or several
/// fused ones (their outputs side by side, in `parts` order).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    parts: Vec<(Projection, usize)>,
}

#[derive(Debug, Clone)]
enum Weight {
    /// `W^T`, `[in, out]`.
    Dense(Tensor),
    /// Quantized, with the bias, which the products add in their last step.
    Int8(q8::Matrix),
}

impl Linear {
    /// From a Hugging Face weight `[out, in]`.
    pub fn new(proj: Projection, weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (out, inp) = weight.dims2()?;
        let transposed = |w: &[f32]| Tensor::from_vec(gemm::transposed(w, out, inp), (inp, out), weight.device());
        let weight_t = match with_f32_values(&weight, transposed) {
            Some(t) => t?,
            None => weight.t()?.contiguous()?,
        };
        Ok(Self { weight: Weight::Dense(weight_t), bias, parts: vec![(proj, out)] })
    }

    /// Several projections of the same input fused into one matrix (rows stacked in order).
    pub fn fused(parts: &[Linear]) -> Result<Self> {
        let weights = parts.iter().map(|p| p.dense()).collect::<Result<Vec<&Tensor>>>()?;
        let first = weights.first().ok_or_else(|| Error::internal("no layers to fuse"))?;
        let biases = parts.iter().map(|p| (p.outputs(), p.bias.as_ref())).collect::<Vec<_>>();
        let bias = stacked_bias(&biases, first.dtype(), first.device())?;
        let parts = parts.iter().flat_map(|p| p.parts.iter().copied()).collect();
        Ok(Self { weight: Weight::Dense(Tensor::cat(&weights, 1)?), bias, parts })
    }

    /// One projection or several fused ones (outputs side by side, in order) from Hugging Face weights
    /// `[out, in]` and biases: dense, or with `quantize` for inference on the CPU, whose products then
    /// run on integers (`model/cpu/q8.rs`): 4-bit codes where every block of the weights already lies on
    /// a 4-bit grid (as read from Q4_0 or Q4_1 GGUF), else 8 bits with a step per block of 32 inputs of
    /// each output. The 8-bit products read the weights' rows as stored: no transposed copy is made.
    /// Training needs the dense weights.
    pub fn from_parts(parts: Vec<(Projection, Tensor, Option<Tensor>)>, quantize: bool) -> Result<Self> {
        if quantize {
            return Self::quantized(parts);
        }
        let mut layers = parts.into_iter().map(|(proj, w, b)| Self::new(proj, w, b)).collect::<Result<Vec<_>>>()?;
        if layers.len() == 1 {
            return Ok(layers.remove(0));
        }
        Self::fused(&layers)
    }

    /// [`Linear::from_parts`] in 8 bits.
    fn quantized(parts: Vec<(Projection, Tensor, Option<Tensor>)>) -> Result<Self> {
        let (_, first, _) = parts.first().ok_or_else(|| Error::internal("no layers to fuse"))?;
        if !fused_cpu(first) {
            let msg = format!(
                "8-bit products run on the CPU from f32 weights, not {:?} on {:?}",
                first.dtype(),
                first.device()
            );
            return Err(Error::Option { option: "quantize", msg });
        }
        let outputs = parts.iter().map(|(_, w, _)| w.dim(0)).collect::<candle_core::Result<Vec<_>>>()?;
        let biases = outputs.iter().zip(&parts).map(|(&out, (_, _, b))| (out, b.as_ref())).collect::<Vec<_>>();
        let bias = stacked_bias(&biases, DType::F32, first.device())?.map(|b| b.to_vec1::<f32>()).transpose()?;
        let weights = parts.iter().map(|(_, w, _)| w).collect::<Vec<_>>();
        let rows = Tensor::cat(&weights, 0)?;
        let (out, inp) = rows.dims2()?;
        let matrix = with_f32_values(&rows, |rows| q8::Matrix::from_rows(rows, inp, out, bias.as_deref()))
            .flatten()
            .ok_or_else(|| Error::Option {
                option: "quantize",
                msg: format!("a [{out}, {inp}] weight cannot be quantized"),
            })?;
        let parts = parts.iter().zip(outputs).map(|((proj, _, _), out)| (*proj, out)).collect();
        Ok(Self { weight: Weight::Int8(matrix), bias: None, parts })
    }

    fn dense(&self) -> Result<&Tensor> {
        match &self.weight {
            Weight::Dense(w) => Ok(w),
            Weight::Int8(..) => {
                Err(Error::Option { option: "quantize", msg: "quantized weights are for inference only".into() })
            }
        }
    }

    fn inputs(&self) -> usize {
        match &self.weight {
            Weight::Dense(w) => w.dim(0).unwrap_or(0),
            Weight::Int8(m) => m.inputs(),
        }
    }

    fn outputs(&self) -> usize {
        self.parts.iter().map(|&(_, out)| out).sum()
    }

    /// The projections this layer computes, with their input and output sizes.
    pub fn sites(&self, layer: usize) -> impl Iterator<Item = (Site, usize, usize)> + '_ {
        let inp = self.inputs();
        self.parts.iter().map(move |&(proj, out)| (Site { layer, proj }, inp, out))
    }

    /// The whole output, every part side by side: one product for inference; for training one op, the
    /// frozen product plus the tuning's LoRA updates of the tuned parts.
    pub fn output(&self, x: &Tensor, layer: usize, pass: Pass) -> Result<Tensor> {
        let Pass::Train(tuning) = pass else {
            return Ok(self.forward(x)?);
        };
        let update = |proj| tuning.low_rank(Site { layer, proj }).map(|lr| (lr, tuning.dropout_seed()));
        let parts: Vec<Part> = self.parts.iter().map(|&(proj, width)| Part { width, update: update(proj) }).collect();
        if parts.iter().any(|p| p.update.is_some()) {
            return ops::lora_linear(x, self.dense()?, self.bias.as_ref(), &parts);
        }
        let y = ops::frozen_matmul(x, self.dense()?)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// The biases of layers fused side by side, `(outputs, bias)` each: `None` when none has one, else
/// all of them in one vector, zeros for the layers without.
fn stacked_bias(
    biases: &[(usize, Option<&Tensor>)],
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Option<Tensor>> {
    if biases.iter().all(|(_, b)| b.is_none()) {
        return Ok(None);
    }
    let parts = biases
        .iter()
        .map(|&(out, b)| match b {
            Some(b) => b.to_dtype(dtype),
            None => Tensor::zeros(out, dtype, device),
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Some(Tensor::cat(&parts, 0)?))
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let weight_t = match &self.weight {
            Weight::Dense(w) => w,
            Weight::Int8(m) => return ops::linear::linear_q8(x, m),
        };
        if let Some(y) = ops::linear::linear(x, weight_t, self.bias.as_ref())? {
            return Ok(y);
        }
        let dims = x.dims().to_vec();
        let (rows, inp) = (dims[..dims.len() - 1].iter().product::<usize>(), dims[dims.len() - 1]);
        let y = x.reshape((rows, inp))?.matmul(weight_t)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out = dims;
        *out.last_mut().expect("non-empty dims") = weight_t.dim(1)?;
        y.reshape(out)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Module;

    use super::Linear;
    use crate::model::ops::tests::{max_diff, values};
    use crate::model::Projection;

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
