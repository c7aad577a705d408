//! Loading: model sources (directories, GGUF files, short names, hub ids), configs, weights and adapters.

pub mod adapter;
pub mod export;
pub mod hub;
mod sentence_transformers;

// Not part of the stable API: the GGUF reader, used by the workspace's own crates and fuzz targets.
#[doc(hidden)]
pub mod gguf;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde_json::Value;

use crate::error::{Error, Result};
pub use crate::fs::models_dir;
use crate::fs::read_json;
use crate::model::Config;
use crate::tokenize::TextTokenizer;
use crate::weights::Weights;

/// Short names that stand for models (a file or a folder) placed by this repository's fetch scripts.
pub const SHORT_NAMES: &[(&str, &str, &str)] = &[
    ("smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf", "scripts/fetch-default-model.sh"),
    ("gemma-3-270m", "gemma-3-270m-q4_k_m.gguf", "scripts/fetch-gemma3.sh"),
    ("all-minilm-l6-v2", "all-MiniLM-L6-v2", "scripts/fetch-minilm.sh"),
];

/// The model used when none is named.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// A model ready to build: config, weights under Hugging Face names, tokenizer and LLM2Vec settings.
pub struct Loaded {
    /// The parsed config.
    pub config: Config,
    /// The config as read (`config.json`, or the GGUF metadata's equivalent).
    pub config_json: Value,
    /// The weights, under Hugging Face names.
    pub weights: Weights,
    /// The tokenizer, with its special tokens.
    pub tokenizer: TextTokenizer,
    /// The name the reference keys its chat templates on (`_name_or_path`).
    pub name_or_path: String,
    /// `llm2vec_config.json` of the model directory, else a sentence-transformers folder's settings, if any.
    pub llm2vec_config: Option<Value>,
}

/// The token embedding tables that follow the vocabulary: input embeddings, and an untied LM head.
const VOCAB_TABLES: [&str; 2] = ["model.embed_tokens.weight", "lm_head.weight"];

impl Loaded {
    /// Adds `token` to the tokenizer and, when the tokenizer has outgrown the token tables, grows them to its
    /// size, as the reference's MNTP script does (`add_tokens`, then `resize_token_embeddings(len(tokenizer))`
    /// only if the embedding is smaller): the new rows come from `new_rows(rows, hidden)`. Returns the id.
    pub fn add_token(&mut self, token: &str, mut new_rows: impl FnMut(usize, usize) -> Vec<f32>) -> Result<u32> {
        let id = self.tokenizer.add_special_token(token)?;
        let size = self.tokenizer.inner().get_vocab_size(true);
        for name in VOCAB_TABLES {
            if !self.weights.contains(name) {
                continue;
            }
            let table = self.weights.get(name)?;
            let (rows, hidden) = table.dims2()?;
            if size > rows {
                let extra = Tensor::from_vec(new_rows(size - rows, hidden), (size - rows, hidden), table.device())?;
                self.weights.insert(name.to_string(), Tensor::cat(&[&table, &extra.to_dtype(table.dtype())?], 0)?);
                if let Some(config) = self.config_json.as_object_mut() {
                    config.insert("vocab_size".into(), size.into());
                }
            }
        }
        self.config = Config::from_json(&self.config_json, Path::new("config.json"))?;
        Ok(id)
    }
}

/// Resolves `spec` (short name, `.gguf` file, model directory or hub id) and reads the model.
pub fn load(spec: &str, device: &Device) -> Result<Loaded> {
    crate::model::cpu::isa::check_env()?;
    let path = resolve(spec)?;
    if path.is_file() {
        load_gguf(&path, spec, device)
    } else {
        load_dir(&path, spec, device)
    }
}

/// The local path of a model: a file or directory as given, a short name's file, or a hub snapshot.
pub fn resolve(spec: &str) -> Result<PathBuf> {
    if let Some((name, file, script)) = SHORT_NAMES.iter().find(|(n, _, _)| *n == spec) {
        let path = models_dir().join(file);
        return if path.exists() {
            Ok(path)
        } else {
            Err(Error::ModelNotFound(format!("`{name}` expects {}; run {script} to fetch it", path.display())))
        };
    }
    let path = Path::new(spec);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    if looks_like_path(spec) {
        return Err(Error::ModelNotFound(format!(
            "`{spec}` was not found locally (it looks like a path, so it is not looked up on the hub{})",
            if spec.starts_with('~') { "; `~` is expanded by the shell only when unquoted" } else { "" }
        )));
    }
    if hub::looks_like_repo_id(spec) {
        return hub::snapshot(spec);
    }
    Err(Error::ModelNotFound(format!(
        "`{spec}` is not a file, a directory, a short name ({}) or a hub id (org/name)",
        SHORT_NAMES.iter().map(|s| s.0).collect::<Vec<_>>().join(", ")
    )))
}

/// A model name meant as a local path, never to be downloaded: it starts with `.`, `/` or `~`, ends in `.gguf`,
/// or has a `/` after a first component that exists here (`models/typo` when `models/` exists).
fn looks_like_path(spec: &str) -> bool {
    let first_exists =
        spec.split_once(['/', '\\']).is_some_and(|(first, _)| !first.is_empty() && Path::new(first).exists());
    spec.starts_with(['.', '/', '~', '\\']) || spec.to_ascii_lowercase().ends_with(".gguf") || first_exists
}

fn load_gguf(path: &Path, spec: &str, device: &Device) -> Result<Loaded> {
    let g = gguf::load(path, device)?;
    let config = Config::from_json(&g.config, path)?;
    let (bos, eos) = (id_field(&g.config, "bos_token_id"), id_field(&g.config, "eos_token_id"));
    let name = g.config.get("_name_or_path").and_then(Value::as_str).unwrap_or(spec).to_string();
    Ok(Loaded {
        config,
        config_json: g.config,
        weights: g.weights,
        tokenizer: TextTokenizer::new(g.tokenizer, bos, eos, &name)?,
        name_or_path: name,
        llm2vec_config: None,
    })
}

fn load_dir(dir: &Path, spec: &str, device: &Device) -> Result<Loaded> {
    let config_path = dir.join("config.json");
    let config_json = read_json(&config_path)?;
    let config = Config::from_json(&config_json, &config_path)?;
    let has_weights = dir.join("model.safetensors").exists() || dir.join("model.safetensors.index.json").exists();
    let mut weights = if !has_weights && dir.join("adapter_config.json").exists() {
        adapter_base_weights(dir, device)?
    } else {
        read_dir_weights(dir, device)?
    };
    if has_weights && dir.join("adapter_config.json").exists() {
        adapter::Adapter::load(dir)?.merge_into(&mut weights)?;
    }
    let name =
        config_json.get("_name_or_path").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or(spec).to_string();
    let raw_tokenizer = TextTokenizer::load_json(&dir.join("tokenizer.json"))?;
    let (bos, eos) = special_ids(dir, &config_json, &raw_tokenizer)?;
    let tokenizer = TextTokenizer::new(raw_tokenizer, bos, eos, &name)?;
    let llm2vec_path = dir.join("llm2vec_config.json");
    let llm2vec_config =
        if llm2vec_path.exists() { Some(read_json(&llm2vec_path)?) } else { sentence_transformers::settings(dir)? };
    Ok(Loaded { config, config_json, weights, tokenizer, name_or_path: name, llm2vec_config })
}

/// A directory holding only an adapter (as LLM2Vec's MNTP releases): the base model it names, with the adapter merged.
fn adapter_base_weights(dir: &Path, device: &Device) -> Result<Weights> {
    let adapter = adapter::Adapter::load(dir)?;
    let base = adapter.config.base_model_name_or_path.clone().ok_or_else(|| Error::Config {
        path: dir.join("adapter_config.json"),
        field: "base_model_name_or_path".into(),
        msg: "missing, and the directory has no model weights".into(),
    })?;
    let mut weights = read_dir_weights(&resolve(&base)?, device)?;
    adapter.merge_into(&mut weights)?;
    Ok(weights)
}

/// The weights of a model directory, under the names the models read. A decoder saved without its
/// language-model head (the reference's `LLM2Vec.save`, transformers' `AutoModel`) names its tensors
/// `layers.0...` where the full model has `model.layers.0...`: they get that prefix.
fn read_dir_weights(dir: &Path, device: &Device) -> Result<Weights> {
    let weights = Weights::from_dir(dir, device)?;
    if !weights.contains("embed_tokens.weight") || weights.contains("model.embed_tokens.weight") {
        return Ok(weights);
    }
    Ok(weights.prefixed("model."))
}

fn id_field(json: &Value, key: &str) -> Option<u32> {
    match json.get(key)? {
        Value::Number(n) => n.as_u64().map(|v| v as u32),
        Value::Array(items) => items.first().and_then(Value::as_u64).map(|v| v as u32),
        _ => None,
    }
}

/// BOS and EOS ids: the tokenizer config's token strings first (as the reference's tokenizer), then config.json.
/// A BERT tokenizer's `[CLS]` stands in for its missing BOS.
fn special_ids(dir: &Path, config: &Value, tokenizer: &tokenizers::Tokenizer) -> Result<(Option<u32>, Option<u32>)> {
    let tok_config_path = dir.join("tokenizer_config.json");
    let tok_config = if tok_config_path.exists() { Some(read_json(&tok_config_path)?) } else { None };
    let lookup = |key: &str| -> Option<u32> {
        let token = match tok_config.as_ref()?.get(key)? {
            Value::String(s) => s.as_str(),
            Value::Object(o) => o.get("content")?.as_str()?,
            _ => return None,
        };
        tokenizer.token_to_id(token)
    };
    Ok((
        lookup("bos_token").or_else(|| id_field(config, "bos_token_id")).or_else(|| lookup("cls_token")),
        lookup("eos_token").or_else(|| id_field(config, "eos_token_id")),
    ))
}
