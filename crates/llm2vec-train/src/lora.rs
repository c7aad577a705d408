//! LoRA: trainable low-rank updates `dropout(x) A^T B^T * alpha/r` on the frozen projections of a
//! backbone (handed to the model's `Tuning` hook, whose fused ops never give the base weights a
//! gradient), dropout seeds, and adapters saved and loaded with PEFT's key names
//! (`base_model.model.<module>.lora_A.weight`) and `adapter_config.json`.

use crate::rng::Rng;
use crate::{Result, TrainError};
use candle_core::{DType, Device, Tensor, Var};
use llm2vec::load::adapter::AdapterConfig;
use llm2vec::model::{LowRank, Projection, Site, Tuning};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// PEFT's LoRA hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraSettings {
    pub r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
}

impl LoraSettings {
    /// The `adapter_config.json` of an adapter with these settings on `target_modules` of `base`.
    pub fn adapter_config(&self, target_modules: Vec<String>, base: Option<String>) -> AdapterConfig {
        AdapterConfig::lora(self.r, self.lora_alpha, self.lora_dropout, target_modules, base)
    }
}

/// One low-rank update: A [r, in] and B [out, r].
pub struct Lora {
    a: Var,
    b: Var,
    scale: f64,
    dropout: f64,
}

impl Lora {
    /// A fresh update for a projection `in_dim -> out_dim`: A kaiming-uniform (a = sqrt 5, i.e. bound
    /// 1/sqrt(in)) as PEFT, B zeros, so the model starts equal to the base.
    pub fn new(
        in_dim: usize,
        out_dim: usize,
        settings: &LoraSettings,
        rng: &mut Rng,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let bound = 1.0 / (in_dim as f64).sqrt();
        let a: Vec<f64> = (0..settings.r * in_dim).map(|_| rng.uniform_range(-bound, bound)).collect();
        let a = Tensor::from_vec(a, (settings.r, in_dim), device)?.to_dtype(dtype)?;
        let b = Tensor::zeros((out_dim, settings.r), dtype, device)?;
        Self::from_parts(a, b, settings)
    }

    /// An update from existing A [r, in] and B [out, r].
    pub fn from_parts(a: Tensor, b: Tensor, settings: &LoraSettings) -> Result<Self> {
        let r = settings.r;
        let (ra, rb) = (a.dims2()?.0, b.dims2()?.1);
        if r == 0 || ra != r || rb != r {
            return Err(TrainError::Adapter(format!("shapes A {:?} B {:?} do not have rank {r}", a.dims(), b.dims())));
        }
        if !(0.0..1.0).contains(&settings.lora_dropout) {
            return Err(TrainError::Invalid("lora_dropout must be in [0, 1)".into()));
        }
        Ok(Self {
            a: Var::from_tensor(&a)?,
            b: Var::from_tensor(&b)?,
            scale: settings.lora_alpha / r as f64,
            dropout: settings.lora_dropout,
        })
    }

    /// The trainable A [r, in] and B [out, r].
    pub fn vars(&self) -> [&Var; 2] {
        [&self.a, &self.b]
    }

    /// The update as the model's training ops take it.
    pub fn low_rank(&self) -> LowRank {
        LowRank {
            a: self.a.as_tensor().clone(),
            b: self.b.as_tensor().clone(),
            scale: self.scale,
            dropout: self.dropout,
        }
    }
}

/// The LoRA updates of a whole backbone (one per adapted projection) and its training-time dropout.
pub struct LoraModel {
    updates: BTreeMap<Site, Lora>,
    settings: LoraSettings,
    attention_dropout: f64,
    /// Set while training: the source of every dropout mask.
    rng: RefCell<Option<Rng>>,
}

impl LoraModel {
    /// Fresh updates (in `dtype`, the model's) on every projection of `sites` whose kind is in `targets`.
    pub fn new(
        sites: &[(Site, usize, usize)],
        targets: &[Projection],
        settings: &LoraSettings,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let mut rng = Rng::new(seed);
        let mut updates = BTreeMap::new();
        for &(site, inp, out) in sites.iter().filter(|(s, _, _)| targets.contains(&s.proj)) {
            updates.insert(site, Lora::new(inp, out, settings, &mut rng, dtype, device)?);
        }
        if updates.is_empty() {
            let msg = if sites.is_empty() {
                "the model has no projection LoRA can adapt (training supports the decoder families, not BERT)"
            } else {
                "no projection of the model matches lora target_modules"
            };
            return Err(TrainError::Invalid(msg.into()));
        }
        Ok(Self { updates, settings: settings.clone(), attention_dropout: 0.0, rng: RefCell::new(None) })
    }

    /// Dropout on attention probabilities while training (the reference's `attention_dropout`, SimCSE).
    pub fn with_attention_dropout(mut self, p: f64) -> Self {
        self.attention_dropout = p;
        self
    }

    /// Training mode with dropout masks drawn from `rng`, or evaluation mode (`None`).
    pub fn set_rng(&self, rng: Option<Rng>) {
        *self.rng.borrow_mut() = rng;
    }

    /// The current dropout RNG (to replay a forward pass exactly).
    pub fn rng(&self) -> Option<Rng> {
        self.rng.borrow().clone()
    }

    /// Every trainable tensor, in a fixed order (site order, then A before B).
    pub fn vars(&self) -> Vec<&Var> {
        self.updates.values().flat_map(Lora::vars).collect()
    }

    /// The adapted projection kinds, in PEFT's `target_modules` form.
    pub fn target_modules(&self) -> Vec<String> {
        let mut kinds: Vec<Projection> = self.updates.keys().map(|s| s.proj).collect();
        kinds.sort();
        kinds.dedup();
        kinds.into_iter().map(|p| p.short_name().to_string()).collect()
    }

    /// Writes the adapter in PEFT's format (f32) into `dir`, atomically per file.
    pub fn save(&self, dir: &Path, base: Option<String>) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let mut buffers = Vec::new();
        for (site, lora) in &self.updates {
            for (part, var) in ["A", "B"].iter().zip(lora.vars()) {
                buffers.push((key(&site.module_path(), part), var.dims().to_vec(), f32_bytes(var.as_tensor())?));
            }
        }
        let views = buffers
            .iter()
            .map(|(k, shape, bytes)| {
                let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .map_err(|e| TrainError::Adapter(e.to_string()))?;
                Ok((k.clone(), view))
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = safetensors::serialize(views, None).map_err(|e| TrainError::Adapter(e.to_string()))?;
        write_if_changed(&dir.join("adapter_model.safetensors"), &bytes)?;
        let config = self.settings.adapter_config(self.target_modules(), base);
        let json = serde_json::to_vec_pretty(&config).map_err(|e| TrainError::Adapter(e.to_string()))?;
        write_if_changed(&dir.join("adapter_config.json"), &json)
    }

    /// Replaces every update's A and B with those of the adapter in `dir` (a checkpoint of this model).
    pub fn load_weights(&mut self, dir: &Path) -> Result<()> {
        let mut loaded = load_adapter(dir, &Device::Cpu)?;
        for (site, lora) in &mut self.updates {
            let module = site.module_path();
            let (a, b) = loaded
                .weights
                .remove(&module)
                .ok_or_else(|| TrainError::Adapter(format!("{}: no weights for {module}", dir.display())))?;
            for (var, t) in [(&lora.a, a), (&lora.b, b)] {
                if var.dims() != t.dims() {
                    return Err(TrainError::Adapter(format!(
                        "{}: {module} has shape {:?}, expected {:?}",
                        dir.display(),
                        t.dims(),
                        var.dims()
                    )));
                }
                var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
            }
        }
        Ok(())
    }
}

impl Tuning for LoraModel {
    /// In evaluation mode (no RNG) the update is detached: no graph is built.
    fn low_rank(&self, site: Site) -> Option<LowRank> {
        let training = self.rng.borrow().is_some();
        self.updates.get(&site).map(|l| {
            let lr = l.low_rank();
            if training {
                lr
            } else {
                LowRank { a: lr.a.detach(), b: lr.b.detach(), ..lr }
            }
        })
    }

    fn dropout_seed(&self) -> Option<u64> {
        self.rng.borrow_mut().as_mut().map(Rng::next_u64)
    }

    fn attention_dropout(&self) -> f64 {
        self.attention_dropout
    }
}

fn key(module: &str, part: &str) -> String {
    format!("base_model.model.{module}.lora_{part}.weight")
}

fn f32_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let v: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    Ok(v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

/// Writes `bytes` atomically unless `path` already holds them: a resumed run that has nothing left
/// to train leaves its adapter's files (and their times, which embedding caches key on) as they were.
pub(crate) fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    Ok(llm2vec::fs::write_atomic(path, bytes)?)
}

/// A loaded adapter: its config and (A, B) per module name.
pub struct LoadedAdapter {
    pub config: AdapterConfig,
    pub weights: HashMap<String, (Tensor, Tensor)>,
}

/// Reads an adapter written by [`LoraModel::save`] (or by PEFT for the fields used here).
pub fn load_adapter(dir: &Path, device: &candle_core::Device) -> Result<LoadedAdapter> {
    let config = AdapterConfig::read(dir)?;
    let st_path = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&st_path).map_err(|e| TrainError::io(&st_path, e))?;
    let mut tensors = candle_core::safetensors::load_buffer(&bytes, device)?;
    let modules: Vec<String> = tensors
        .keys()
        .filter_map(|k| k.strip_prefix("base_model.model.")?.strip_suffix(".lora_A.weight").map(str::to_string))
        .collect();
    let mut weights = HashMap::new();
    for m in modules {
        let mut take = |part: &str| {
            tensors.remove(&key(&m, part)).ok_or_else(|| TrainError::Adapter(format!("{m}: lora_{part} missing")))
        };
        let pair = (take("A")?, take("B")?);
        weights.insert(m, pair);
    }
    Ok(LoadedAdapter { config, weights })
}
