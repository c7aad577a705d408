//! PEFT LoRA adapters (adapter_config.json + adapter_model.safetensors): read, check against the
//! base weights, and merge `W += scale * B A` into them. Several adapters merge in order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};
use crate::weights::{parse_safetensors, Weights};

/// PEFT's `adapter_config.json`: the fields that shape a merge, and those PEFT needs to load an adapter
/// this project writes. Fields PEFT leaves out take its defaults; the optional ones are written only when set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    /// PEFT's adapter kind (`LORA`).
    #[serde(default)]
    pub peft_type: Option<String>,
    /// The model the adapter was trained on.
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// The rank of the updates.
    pub r: usize,
    /// The updates' scale is `lora_alpha / r` (`/ sqrt(r)` with rsLoRA).
    pub lora_alpha: f64,
    /// Dropout on the updates' input in training.
    #[serde(default)]
    pub lora_dropout: f64,
    /// Module names (PEFT also allows one string, a pattern; it is kept as the only entry).
    #[serde(default, deserialize_with = "one_or_many")]
    pub target_modules: Vec<String>,
    /// Which biases PEFT trained (`none` unless told otherwise); a merge applies the LoRA matrices only.
    #[serde(default = "no_bias")]
    pub bias: String,
    /// Whether the base weights are stored `[in, out]` (GPT-2's `Conv1D`).
    #[serde(default)]
    pub fan_in_fan_out: bool,
    /// Whether PEFT loads the adapter frozen.
    #[serde(default)]
    pub inference_mode: bool,
    /// Rank-stabilised scale: `lora_alpha / sqrt(r)`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_rslora: bool,
    /// Weight-decomposed updates (DoRA), which are refused.
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_dora: bool,
    /// Ranks of single modules that differ from `r`.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub rank_pattern: HashMap<String, usize>,
    /// Alphas of single modules that differ from `lora_alpha`.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub alpha_pattern: HashMap<String, f64>,
}

impl AdapterConfig {
    /// A plain LoRA adapter (no bias, rank and alpha the same for every module), ready for inference.
    pub fn lora(
        r: usize,
        lora_alpha: f64,
        lora_dropout: f64,
        target_modules: Vec<String>,
        base: Option<String>,
    ) -> Self {
        Self {
            peft_type: Some("LORA".into()),
            base_model_name_or_path: base,
            r,
            lora_alpha,
            lora_dropout,
            target_modules,
            bias: no_bias(),
            fan_in_fan_out: false,
            inference_mode: true,
            use_rslora: false,
            use_dora: false,
            rank_pattern: HashMap::new(),
            alpha_pattern: HashMap::new(),
        }
    }

    /// Reads `<dir>/adapter_config.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("adapter_config.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        Self::parse(&bytes, &path)
    }

    /// Parses the bytes of `path`.
    fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|source| Error::json(path, source))
    }
}

fn no_bias() -> String {
    "none".into()
}

fn is_false(b: &bool) -> bool {
    !b
}

/// A list of names, one name, or null (no names).
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Names {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Names>::deserialize(d)? {
        None => Vec::new(),
        Some(Names::One(name)) => vec![name],
        Some(Names::Many(names)) => names,
    })
}

/// A LoRA adapter: per target module, its A `[r, in]` and B `[out, r]` matrices.
pub struct Adapter {
    /// Its `adapter_config.json`.
    pub config: AdapterConfig,
    dir: PathBuf,
    pairs: HashMap<String, (Tensor, Tensor)>,
}

impl Adapter {
    /// Reads `adapter_config.json` and `adapter_model.safetensors` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let config_path = dir.join("adapter_config.json");
        let config = std::fs::read(&config_path).map_err(|e| Error::io(&config_path, e))?;
        let weights_path = dir.join("adapter_model.safetensors");
        if !weights_path.exists() && dir.join("adapter_model.bin").exists() {
            return Err(Error::format(
                dir,
                "adapter_model.bin (pickle) is not supported; save the adapter as safetensors",
            ));
        }
        let file = std::fs::File::open(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
        // SAFETY: read-only map, dropped before returning.
        let weights = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(&weights_path, e))?;
        Self::from_bytes(&config, &weights, dir)
    }

    /// Parses an adapter from the bytes of its two files; `dir` names it in errors.
    pub fn from_bytes(config: &[u8], weights: &[u8], dir: &Path) -> Result<Self> {
        let config_path = dir.join("adapter_config.json");
        let config = AdapterConfig::parse(config, &config_path)?;
        let unsupported =
            |field: &str, msg: &str| Error::Config { path: config_path.clone(), field: field.into(), msg: msg.into() };
        if config.peft_type.as_deref().is_some_and(|t| t != "LORA") {
            return Err(unsupported("peft_type", "only LORA adapters are supported"));
        }
        if config.use_dora {
            return Err(unsupported("use_dora", "DoRA adapters are not supported"));
        }
        if config.r == 0 {
            return Err(unsupported("r", "the LoRA rank must be positive"));
        }
        let weights_path = dir.join("adapter_model.safetensors");
        let tensors = parse_safetensors(weights, &Device::Cpu).map_err(|msg| Error::format(&weights_path, msg))?;
        let pairs = pair_tensors(tensors, &weights_path)?;
        check_ranks(&config, &pairs, &config_path)?;
        let pairs = pairs.into_iter().map(|(module, pair)| (module, (pair.a, pair.b))).collect();
        Ok(Self { config, dir: dir.to_path_buf(), pairs })
    }

    /// The rank the config gives `module`: its `rank_pattern` entry, else `r`.
    fn rank(&self, module: &str) -> usize {
        rank_of(&self.config, module).1
    }

    fn scale(&self, module: &str) -> f64 {
        let r = self.rank(module) as f64;
        let alpha = pattern_value(&self.config.alpha_pattern, module).unwrap_or(self.config.lora_alpha);
        if self.config.use_rslora {
            alpha / r.sqrt()
        } else {
            alpha / r
        }
    }

    /// Adds `scale * B A` to each target weight of `base` (kept in f32), when the model takes it.
    pub fn merge_into(&self, base: &mut Weights) -> Result<()> {
        let weights_path = self.dir.join("adapter_model.safetensors");
        for (module, (a, b)) in &self.pairs {
            let name = format!("{module}.weight");
            let shape = base.shape(&name).map_err(|_| {
                Error::weight(
                    &weights_path,
                    &name,
                    "the adapter targets a module the base model does not have (an adapter for another base model?)",
                )
            })?;
            let update = (b.dim(0)?, a.dim(1)?);
            let expected = match *shape.dims() {
                [rows, cols] if self.config.fan_in_fan_out => Some((cols, rows)),
                [rows, cols] => Some((rows, cols)),
                _ => None,
            };
            if expected != Some(update) {
                return Err(Error::weight(
                    &weights_path,
                    &name,
                    format!("adapter update has shape {update:?} but the base weight is {:?} (an adapter for another base model?)", shape.dims()),
                ));
            }
            let (a, b, scale, transposed) = (a.clone(), b.clone(), self.scale(module), self.config.fan_in_fan_out);
            base.change(&name, move |w| {
                let (a, b) =
                    (a.to_dtype(DType::F32)?.to_device(w.device())?, b.to_dtype(DType::F32)?.to_device(w.device())?);
                let delta = (b.matmul(&a)? * scale)?;
                let delta = if transposed { delta.t()? } else { delta };
                Ok((w.to_dtype(DType::F32)? + delta)?)
            })?;
        }
        Ok(())
    }
}

/// The config field that sets `module`'s rank (`r`, or its `rank_pattern` entry) and the rank.
fn rank_of(config: &AdapterConfig, module: &str) -> (String, usize) {
    match pattern_entry(&config.rank_pattern, module) {
        Some((key, r)) => (format!("rank_pattern.{key}"), r),
        None => ("r".into(), config.r),
    }
}

/// Refuses, as PEFT does, matrices whose rank is not the one the config gives their module: merged with
/// the config's rank, they would be scaled by the wrong `lora_alpha / r`.
fn check_ranks(config: &AdapterConfig, pairs: &HashMap<String, Pair>, config_path: &Path) -> Result<()> {
    let mut modules: Vec<&String> = pairs.keys().collect();
    modules.sort_unstable();
    for module in modules {
        let pair = &pairs[module];
        let (field, r) = rank_of(config, module);
        let found = pair.a.dim(0)?;
        if found != r {
            return Err(Error::Config {
                path: config_path.to_path_buf(),
                field,
                msg: format!(
                    "{r}, but tensor `{}` in adapter_model.safetensors has shape {:?} (rank {found}); the config does not describe these weights",
                    pair.a_name,
                    pair.a.dims()
                ),
            });
        }
    }
    Ok(())
}

/// A per-module override from PEFT's `rank_pattern` / `alpha_pattern` (keys match a module name's suffix).
fn pattern_value<T: Copy>(pattern: &HashMap<String, T>, module: &str) -> Option<T> {
    pattern_entry(pattern, module).map(|(_, v)| v)
}

/// The key and value of the override that applies to `module`, if any.
fn pattern_entry<'a, T: Copy>(pattern: &'a HashMap<String, T>, module: &str) -> Option<(&'a str, T)> {
    pattern
        .iter()
        .find(|(k, _)| module == k.as_str() || module.ends_with(&format!(".{k}")))
        .map(|(k, v)| (k.as_str(), *v))
}

/// A module's LoRA matrices, and the A matrix's name in the file (for error messages).
struct Pair {
    a: Tensor,
    b: Tensor,
    a_name: String,
}

/// Groups `...<module>.lora_A.weight` / `lora_B.weight` into pairs under Hugging Face module names.
fn pair_tensors(tensors: HashMap<String, Tensor>, path: &Path) -> Result<HashMap<String, Pair>> {
    let mut a_parts = HashMap::new();
    let mut b_parts = HashMap::new();
    for (key, t) in tensors {
        let (module, is_a) = if let Some(m) = key.strip_suffix(".lora_A.weight") {
            (m, true)
        } else if let Some(m) = key.strip_suffix(".lora_B.weight") {
            (m, false)
        } else {
            return Err(Error::weight(path, &key, "not a LoRA A/B matrix (only LoRA on linear layers is supported)"));
        };
        let module = hf_module_name(module);
        if is_a {
            a_parts.insert(module, (key, t));
        } else {
            b_parts.insert(module, t);
        }
    }
    let mut pairs = HashMap::new();
    for (module, (a_name, a)) in a_parts {
        let b = b_parts.remove(&module).ok_or_else(|| Error::weight(path, &module, "lora_A without lora_B"))?;
        let (r_a, r_b) = (a.dim(0)?, b.dim(1)?);
        if a.rank() != 2 || b.rank() != 2 || r_a != r_b || r_a == 0 {
            return Err(Error::weight(
                path,
                &module,
                format!("lora_A {:?} and lora_B {:?} do not fit together", a.dims(), b.dims()),
            ));
        }
        pairs.insert(module, Pair { a, b, a_name });
    }
    if let Some(module) = b_parts.keys().next() {
        return Err(Error::weight(path, module, "lora_B without lora_A"));
    }
    Ok(pairs)
}

/// PEFT names modules `base_model.model.<path>`, where `<path>` starts at the wrapped model: `model.layers...`
/// for a causal-LM class, `layers...` for a bare model class. Both map to `model.layers...`.
fn hf_module_name(peft_name: &str) -> String {
    let inner = peft_name.strip_prefix("base_model.model.").unwrap_or(peft_name);
    if inner.starts_with("model.") {
        inner.to_string()
    } else {
        format!("model.{inner}")
    }
}
