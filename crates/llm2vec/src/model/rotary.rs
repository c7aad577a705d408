//! Rotary position embeddings: the frequencies (with Hugging Face `rope_scaling`), their cos/sin tables
//! for a batch, and the rotation in candle's ops for the devices and dtypes the fused op does not take.

use std::path::Path;

use candle_core::{DType, Device, Tensor, D};

use crate::error::{Error, Result};

/// How rotary frequencies are derived from the base (Hugging Face `rope_scaling`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// The plain frequencies `base^(-2i/d)`.
    None,
    /// Every frequency divided by `factor` (positions stretched).
    Linear {
        /// The stretch.
        factor: f64,
    },
    /// Llama 3's: low frequencies divided by `factor`, high ones kept, a smooth ramp between.
    Llama3 {
        /// The division of the low frequencies.
        factor: f64,
        /// Wavelengths over `original_max_position / low_freq_factor` count as low frequencies.
        low_freq_factor: f64,
        /// Wavelengths under `original_max_position / high_freq_factor` count as high frequencies.
        high_freq_factor: f64,
        /// The context length the model was trained for (`original_max_position_embeddings`).
        original_max_position: f64,
    },
}

impl RopeScaling {
    /// Reads Hugging Face `rope_scaling` (`rope_type` or the older `type`); `path` names the config in errors.
    pub fn parse(value: Option<&serde_json::Value>, path: &Path) -> Result<RopeScaling> {
        let Some(v) = value.filter(|v| !v.is_null()) else {
            return Ok(RopeScaling::None);
        };
        let err = |msg: String| Error::Config { path: path.into(), field: "rope_scaling".into(), msg };
        let num = |key: &str| {
            v.get(key).and_then(serde_json::Value::as_f64).ok_or_else(|| err(format!("missing number `{key}`")))
        };
        let kind = v.get("rope_type").or_else(|| v.get("type")).and_then(|t| t.as_str()).unwrap_or("default");
        match kind {
            "default" => Ok(RopeScaling::None),
            "linear" => Ok(RopeScaling::Linear { factor: num("factor")? }),
            "llama3" => Ok(RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor: num("low_freq_factor")?,
                high_freq_factor: num("high_freq_factor")?,
                original_max_position: num("original_max_position_embeddings")?,
            }),
            other => Err(err(format!("rope type `{other}` is not supported (default, linear, llama3)"))),
        }
    }

    fn scale(&self, f: f64) -> f64 {
        match *self {
            RopeScaling::None => f,
            RopeScaling::Linear { factor } => f / factor,
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position } => {
                let wavelen = 2.0 * std::f64::consts::PI / f;
                let low_wavelen = original_max_position / low_freq_factor;
                let high_wavelen = original_max_position / high_freq_factor;
                if wavelen < high_wavelen {
                    f
                } else if wavelen > low_wavelen {
                    f / factor
                } else {
                    let smooth =
                        (original_max_position / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                    (1.0 - smooth) * f / factor + smooth * f
                }
            }
        }
    }
}

/// Rotary position embedding tables for one base frequency.
#[derive(Debug, Clone)]
pub struct Rotary {
    inv_freq: Vec<f32>,
}

impl Rotary {
    /// The frequencies for heads of `head_dim` values from `base` under `scaling`.
    pub fn new(head_dim: usize, base: f64, scaling: &RopeScaling) -> Self {
        let inv_freq = (0..head_dim / 2)
            .map(|i| {
                let f = 1.0 / base.powf((2 * i) as f64 / head_dim as f64);
                scaling.scale(f) as f32
            })
            .collect();
        Self { inv_freq }
    }

    /// cos and sin tables of shape `[seq_len, head_dim / 2]`.
    pub fn tables(&self, seq_len: usize, dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(seq_len * half);
        let mut sin = Vec::with_capacity(seq_len * half);
        for pos in 0..seq_len {
            for &f in &self.inv_freq {
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (seq_len, half), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (seq_len, half), device)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }
}

/// Applies rotary embeddings (the rotate-half convention) to `x: [batch, heads, seq, head_dim]`. A view
/// of a contiguous `[batch, seq, heads, head_dim]` tensor is rotated in that layout (no transposed
/// copy) and comes back as the same kind of view. candle's kernels record no gradient: when `x` records
/// one, the rotation is composed from ops that do.
pub(crate) fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if x.track_op() {
        let half = x.dim(D::Minus1)? / 2;
        let (x1, x2) = (x.narrow(D::Minus1, 0, half)?, x.narrow(D::Minus1, half, half)?);
        let (cos, sin) = (cos.detach().to_dtype(x.dtype())?, sin.detach().to_dtype(x.dtype())?);
        let first = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
        let second = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
        return Ok(Tensor::cat(&[first, second], D::Minus1)?);
    }
    let seq_major = x.transpose(1, 2)?;
    if seq_major.is_contiguous() {
        return Ok(candle_nn::rotary_emb::rope_thd(&seq_major, cos, sin)?.transpose(1, 2)?);
    }
    Ok(candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)?)
}
