//! LoRA linear layers: y = x W^T + (dropout(x) A^T B^T) * alpha/r with W frozen. The base
//! product goes through a custom op whose backward yields the input's gradient only, so no
//! gradient is ever computed or stored for W. Adapters are saved and loaded with PEFT's key
//! names (`base_model.model.<module>.lora_A.weight`) and `adapter_config.json`.

use crate::rng::Rng;
use crate::{Result, TrainError};
use candle_core::op::BackpropOp;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Storage, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// `x Wt` for a frozen `Wt` [in, out]; backward returns `grad Wt^T` for the input only.
struct FrozenMatmul {
    weight_t: Tensor,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if !layout.is_contiguous() || layout.start_offset() != 0 {
            candle_core::bail!("frozen-matmul expects a contiguous input");
        }
        let x = Tensor::from_storage(
            Storage::Cpu(storage.clone()),
            layout.shape().clone(),
            BackpropOp::none(),
            false,
        );
        let y = x.matmul(&self.weight_t)?;
        let (guard, y_layout) = y.storage_and_layout();
        match &*guard {
            Storage::Cpu(s) if y_layout.is_contiguous() && y_layout.start_offset() == 0 => {
                Ok((s.clone(), y.shape().clone()))
            }
            _ => candle_core::bail!("frozen-matmul: unexpected output storage"),
        }
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.matmul(&self.weight_t.t()?)?))
    }
}

/// `x W^T` over the last dimension of `x` with no gradient for `weight` [out, in].
pub fn frozen_linear(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    frozen_matmul(x, &weight.t()?)
}

/// `x Wt` over the last dimension of `x` with no gradient for `weight_t` [in, out] (the
/// layout llm2vec's `Linear` keeps).
pub fn frozen_matmul(x: &Tensor, weight_t: &Tensor) -> Result<Tensor> {
    let (in_dim, out_dim) = weight_t.dims2()?;
    let dims = x.dims();
    if dims.last() != Some(&in_dim) {
        return Err(TrainError::Invalid(format!(
            "input {dims:?} does not end in {in_dim}"
        )));
    }
    let rows = x.elem_count() / in_dim;
    let flat = x.reshape((rows, in_dim))?.contiguous()?;
    // The op reads the storage from its start: a view with an offset is copied first.
    let flat = if flat.layout().start_offset() == 0 {
        flat
    } else {
        flat.force_contiguous()?
    };
    let y = flat.apply_op1(FrozenMatmul {
        weight_t: weight_t.detach(),
    })?;
    let mut out_shape = dims[..dims.len() - 1].to_vec();
    out_shape.push(out_dim);
    Ok(y.reshape(out_shape)?)
}

/// A linear layer with a frozen base weight and a trainable low-rank update.
pub struct LoraLinear {
    weight: Tensor,
    a: Var,
    b: Var,
    scale: f64,
    dropout: f64,
}

/// PEFT's LoRA hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraSettings {
    pub r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
}

impl LoraLinear {
    /// A fresh adapter on `weight` [out, in]: A kaiming-uniform (a = sqrt 5, i.e. bound
    /// 1/sqrt(in)) as PEFT, B zeros, so the layer starts equal to the base.
    pub fn new(weight: Tensor, settings: &LoraSettings, rng: &mut Rng) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        let bound = 1.0 / (in_dim as f64).sqrt();
        let a: Vec<f64> = (0..settings.r * in_dim)
            .map(|_| rng.uniform_range(-bound, bound))
            .collect();
        let a =
            Tensor::from_vec(a, (settings.r, in_dim), weight.device())?.to_dtype(weight.dtype())?;
        let b = Tensor::zeros((out_dim, settings.r), weight.dtype(), weight.device())?;
        Self::from_parts(weight, a, b, settings)
    }

    /// A layer from existing A [r, in] and B [out, r].
    pub fn from_parts(
        weight: Tensor,
        a: Tensor,
        b: Tensor,
        settings: &LoraSettings,
    ) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        let r = settings.r;
        if r == 0 || a.dims() != [r, in_dim] || b.dims() != [out_dim, r] {
            return Err(TrainError::Adapter(format!(
                "shapes A {:?} B {:?} do not fit weight [{out_dim}, {in_dim}] at rank {r}",
                a.dims(),
                b.dims()
            )));
        }
        if !(0.0..1.0).contains(&settings.lora_dropout) {
            return Err(TrainError::Invalid("lora_dropout must be in [0, 1)".into()));
        }
        let scale = settings.lora_alpha / r as f64;
        Ok(Self {
            weight: weight.detach(),
            a: Var::from_tensor(&a)?,
            b: Var::from_tensor(&b)?,
            scale,
            dropout: settings.lora_dropout,
        })
    }

    /// The frozen base weight.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The trainable A [r, in] and B [out, r].
    pub fn vars(&self) -> [&Var; 2] {
        [&self.a, &self.b]
    }

    /// Forward; `rng` set means training (dropout on the LoRA branch input).
    pub fn forward(&self, x: &Tensor, rng: Option<&mut Rng>) -> Result<Tensor> {
        let base = frozen_linear(x, &self.weight)?;
        let x = match rng {
            Some(rng) if self.dropout > 0.0 => dropout(x, self.dropout, rng)?,
            _ => x.clone(),
        };
        let low = x
            .broadcast_matmul(&self.a.as_tensor().t()?)?
            .broadcast_matmul(&self.b.as_tensor().t()?)?;
        Ok((base + low.affine(self.scale, 0.0)?)?)
    }
}

/// Inverted dropout with masks from `rng`.
pub fn dropout(x: &Tensor, p: f64, rng: &mut Rng) -> Result<Tensor> {
    let scale = rng.dropout_scale(x.elem_count(), p);
    let mask = Tensor::from_vec(scale, x.shape(), x.device())?.to_dtype(x.dtype())?;
    Ok(x.mul(&mask)?)
}

/// PEFT's `adapter_config.json`, with the fields PEFT needs to load the adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    pub peft_type: String,
    pub base_model_name_or_path: Option<String>,
    pub r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub target_modules: Vec<String>,
    pub bias: String,
    pub fan_in_fan_out: bool,
    pub inference_mode: bool,
}

impl AdapterConfig {
    /// The config for `settings` on `target_modules` of `base`.
    pub fn new(settings: &LoraSettings, target_modules: Vec<String>, base: Option<String>) -> Self {
        Self {
            peft_type: "LORA".into(),
            base_model_name_or_path: base,
            r: settings.r,
            lora_alpha: settings.lora_alpha,
            lora_dropout: settings.lora_dropout,
            target_modules,
            bias: "none".into(),
            fan_in_fan_out: false,
            inference_mode: true,
        }
    }
}

fn key(module: &str, part: &str) -> String {
    format!("base_model.model.{module}.lora_{part}.weight")
}

fn f32_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let v: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    Ok(v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

/// Writes `adapter_model.safetensors` (f32) and `adapter_config.json` into `dir`, atomically.
pub fn save_adapter(
    dir: &Path,
    layers: &[(&str, &LoraLinear)],
    config: &AdapterConfig,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let mut buffers = Vec::new();
    for (module, layer) in layers {
        for (part, var) in ["A", "B"].iter().zip(layer.vars()) {
            buffers.push((
                key(module, part),
                var.dims().to_vec(),
                f32_bytes(var.as_tensor())?,
            ));
        }
    }
    let views = buffers
        .iter()
        .map(|(k, shape, bytes)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .map_err(|e| TrainError::Adapter(e.to_string()))?;
            Ok((k.clone(), view))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes =
        safetensors::serialize(views, None).map_err(|e| TrainError::Adapter(e.to_string()))?;
    llm2vec::io::write_atomic(&dir.join("adapter_model.safetensors"), &bytes)?;
    let json = serde_json::to_vec_pretty(config).map_err(|e| TrainError::Adapter(e.to_string()))?;
    llm2vec::io::write_atomic(&dir.join("adapter_config.json"), &json)?;
    Ok(())
}

/// A loaded adapter: its config and (A, B) per module name.
pub struct LoadedAdapter {
    pub config: AdapterConfig,
    pub weights: HashMap<String, (Tensor, Tensor)>,
}

/// Reads an adapter written by [`save_adapter`] (or by PEFT for the fields used here).
pub fn load_adapter(dir: &Path, device: &candle_core::Device) -> Result<LoadedAdapter> {
    let cfg_path = dir.join("adapter_config.json");
    let text = std::fs::read(&cfg_path).map_err(|e| TrainError::io(&cfg_path, e))?;
    let config: AdapterConfig = serde_json::from_slice(&text)
        .map_err(|e| TrainError::Adapter(format!("{}: {e}", cfg_path.display())))?;
    let st_path = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&st_path).map_err(|e| TrainError::io(&st_path, e))?;
    let mut tensors = candle_core::safetensors::load_buffer(&bytes, device)?;
    let modules: Vec<String> = tensors
        .keys()
        .filter_map(|k| {
            k.strip_prefix("base_model.model.")?
                .strip_suffix(".lora_A.weight")
                .map(str::to_string)
        })
        .collect();
    let mut weights = HashMap::new();
    for m in modules {
        let mut take = |part: &str| {
            tensors
                .remove(&key(&m, part))
                .ok_or_else(|| TrainError::Adapter(format!("{m}: lora_{part} missing")))
        };
        let pair = (take("A")?, take("B")?);
        weights.insert(m, pair);
    }
    Ok(LoadedAdapter { config, weights })
}
