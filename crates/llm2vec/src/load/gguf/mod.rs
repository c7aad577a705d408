//! GGUF models (llama.cpp's format): read the container, dequantize the tensors to f32 under Hugging Face
//! names and layouts (each when the model takes it), turn the hyper-parameters into a Hugging Face config and
//! rebuild the tokenizer.

mod arch;
mod dequant;
mod reader;
mod tokenizer;
mod types;

use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Shape, Tensor};

pub use arch::{hf_name, unpermute_rows, Arch, SUPPORTED};
pub use dequant::{dequantize, is_supported};
pub use reader::{Array, GgufFile, TensorInfo, Value};
pub use tokenizer::SpecialIds;
pub use types::GgmlType;

use crate::error::{Error, Result};
use crate::weights::{first_match, non_finite, Read, Weights};

/// A GGUF model turned into Hugging Face terms.
pub struct GgufModel {
    /// A Hugging Face style config.json.
    pub config: serde_json::Value,
    /// Tensors under Hugging Face names, dequantized to f32 when taken, in Hugging Face layout
    /// (`[out_features, in_features]` for linear weights), on the requested device.
    pub weights: Weights,
    /// The tokenizer rebuilt from the GGUF's own vocabulary.
    pub tokenizer: tokenizers::Tokenizer,
}

impl std::fmt::Debug for GgufModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufModel").field("config", &self.config).field("weights", &self.weights.source()).finish()
    }
}

/// Loads the GGUF model at `path` with its tensors on `device`.
pub fn load(path: &Path, device: &Device) -> Result<GgufModel> {
    let file = Arc::new(GgufFile::read(path)?);
    let arch = architecture(&file)?;
    let hp = arch::hparams(&file, arch)?;
    let (tokenizer, ids) = tokenizer::build(&file)?;
    let config = arch::config(&file, arch, &hp, &ids)?;
    let weights = weights(&file, arch, &hp, device)?;
    Ok(GgufModel { config, weights, tokenizer })
}

/// The architecture named by `general.architecture`, if supported.
pub fn architecture(file: &GgufFile) -> Result<Arch> {
    let key = "general.architecture";
    let name = file.get(key).and_then(Value::as_str).ok_or_else(|| Error::Config {
        path: file.path().to_path_buf(),
        field: key.into(),
        msg: "missing or not a string".into(),
    })?;
    Arch::from_name(name).ok_or_else(|| Error::UnsupportedArchitecture {
        path: file.path().to_path_buf(),
        found: name.into(),
        supported: SUPPORTED.into(),
    })
}

/// The model's tensors under Hugging Face names, each dequantized and checked when taken.
fn weights(file: &Arc<GgufFile>, arch: Arch, hp: &arch::Hparams, device: &Device) -> Result<Weights> {
    let mut tensors = Vec::with_capacity(file.tensors().len());
    for info in file.tensors().iter().filter(|t| t.name != arch::ROPE_FREQS) {
        let name = arch::hf_name(arch, &info.name).ok_or_else(|| {
            Error::weight(file.path(), &info.name, format!("has no Hugging Face equivalent in a {} model", arch.name()))
        })?;
        let (file, info, hp, device, hf) = (Arc::clone(file), info.clone(), hp.clone(), device.clone(), name.clone());
        let shape = Shape::from(info.shape());
        let read: Read = Box::new(move || {
            let data = file.dequantize(&info)?;
            let data =
                arch::restore(arch, &hp, &hf, data).map_err(|msg| Error::weight(file.path(), &info.name, msg))?;
            if let Some(i) = first_match(&data, |v| !v.is_finite()) {
                return Err(Error::weight(file.path(), &info.name, non_finite(i)));
            }
            Ok(Tensor::from_vec(data, info.shape(), &device)?)
        });
        tensors.push((name, shape, read));
    }
    Ok(Weights::deferred(tensors, file.path()))
}
