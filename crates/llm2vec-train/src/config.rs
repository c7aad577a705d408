//! Training configs in the reference's JSON field names (train_configs/{mntp,simcse,supervised}):
//! typed fields with the reference's defaults, fields that mean nothing here accepted with a
//! note, unknown fields rejected naming the closest known one.

use crate::{Result, TrainError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The three training stages of LLM2Vec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Mntp,
    SimCse,
    Supervised,
}

impl Stage {
    /// Every stage, in the recipe's order.
    pub const ALL: [Stage; 3] = [Stage::Mntp, Stage::SimCse, Stage::Supervised];
}

/// The stages as `clap` command-line values, under their [`crate::trainer::stage_name`].
#[cfg(feature = "clap")]
impl clap::ValueEnum for Stage {
    fn value_variants<'a>() -> &'a [Self] {
        &Stage::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(crate::trainer::stage_name(*self)))
    }
}

/// What replaces a masked token (the reference's `mask_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskTokenType {
    /// The token "_".
    Blank,
    /// The tokenizer's end-of-sequence token.
    Eos,
    /// An added `"<mask>"` token.
    Mask,
}

/// The MNTP collator (the reference's `data_collator_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollatorType {
    /// 80% mask token, 10% random token, 10% unchanged.
    Default,
    /// Every selected token becomes the mask token.
    AllMask,
}

/// Every field the reference's three training scripts read, with their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    pub model_name_or_path: Option<String>,
    pub peft_model_name_or_path: Option<String>,
    pub tokenizer_name: Option<String>,
    pub dataset_name: Option<String>,
    pub train_file: Option<PathBuf>,
    pub validation_file: Option<PathBuf>,
    pub dataset_file_path: Option<PathBuf>,
    pub max_seq_length: Option<usize>,
    pub line_by_line: bool,
    pub mlm_probability: f64,
    pub mask_token_type: MaskTokenType,
    pub data_collator_type: CollatorType,
    pub per_device_train_batch_size: usize,
    pub per_device_eval_batch_size: usize,
    pub gradient_accumulation_steps: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub warmup_steps: usize,
    pub num_train_epochs: f64,
    pub max_steps: i64,
    pub lora_r: usize,
    pub lora_dropout: f64,
    pub simcse_dropout: f64,
    pub loss_scale: f64,
    pub pooling_mode: String,
    pub bidirectional: bool,
    pub stop_after_n_steps: usize,
    pub save_steps: usize,
    pub eval_steps: Option<usize>,
    pub logging_steps: usize,
    pub output_dir: Option<PathBuf>,
    pub seed: u64,
    pub torch_dtype: Option<String>,
    pub gradient_checkpointing: bool,
    pub do_train: bool,
    pub do_eval: bool,
    pub max_train_samples: Option<usize>,
    pub validation_split_percentage: usize,
    pub max_grad_norm: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model_name_or_path: None,
            peft_model_name_or_path: None,
            tokenizer_name: None,
            dataset_name: None,
            train_file: None,
            validation_file: None,
            dataset_file_path: None,
            max_seq_length: None,
            line_by_line: false,
            mlm_probability: 0.15,
            mask_token_type: MaskTokenType::Blank,
            data_collator_type: CollatorType::Default,
            per_device_train_batch_size: 8,
            per_device_eval_batch_size: 8,
            gradient_accumulation_steps: 1,
            learning_rate: 5e-5,
            weight_decay: 0.0,
            warmup_steps: 0,
            num_train_epochs: 3.0,
            max_steps: -1,
            lora_r: 8,
            lora_dropout: 0.05,
            simcse_dropout: 0.1,
            loss_scale: 50.0,
            pooling_mode: "mean".into(),
            bidirectional: false,
            stop_after_n_steps: 10_000,
            save_steps: 500,
            eval_steps: None,
            logging_steps: 500,
            output_dir: None,
            seed: 42,
            torch_dtype: None,
            gradient_checkpointing: false,
            do_train: false,
            do_eval: false,
            max_train_samples: None,
            validation_split_percentage: 5,
            max_grad_norm: 1.0,
        }
    }
}

/// Fields of [`TrainConfig`], in declaration order.
const KNOWN: &[&str] = &[
    "model_name_or_path",
    "peft_model_name_or_path",
    "tokenizer_name",
    "dataset_name",
    "train_file",
    "validation_file",
    "dataset_file_path",
    "max_seq_length",
    "line_by_line",
    "mlm_probability",
    "mask_token_type",
    "data_collator_type",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "weight_decay",
    "warmup_steps",
    "num_train_epochs",
    "max_steps",
    "lora_r",
    "lora_dropout",
    "simcse_dropout",
    "loss_scale",
    "pooling_mode",
    "bidirectional",
    "stop_after_n_steps",
    "save_steps",
    "eval_steps",
    "logging_steps",
    "output_dir",
    "seed",
    "torch_dtype",
    "gradient_checkpointing",
    "do_train",
    "do_eval",
    "max_train_samples",
    "validation_split_percentage",
    "max_grad_norm",
];

/// Reference fields accepted but without effect here, with the reason.
const IGNORED: &[(&str, &str)] = &[
    ("attn_implementation", "attention is always the native implementation"),
    ("overwrite_output_dir", "checkpoints are always written atomically over older ones"),
    ("evaluation_strategy", "evaluation runs every eval_steps when set"),
    ("eval_strategy", "evaluation runs every eval_steps when set"),
    ("remove_unused_columns", "datasets carry only the columns used"),
    ("disable_tqdm", "progress is reported through logging_steps"),
    (
        "save_only_model",
        "checkpoints hold the adapter, the optimizer state and the step (randomness is derived from seed and step)",
    ),
    ("dataset_config_name", "Hub datasets are not downloaded; give a local train_file"),
    ("cache_dir", "no Hugging Face cache is used"),
    ("preprocessing_num_workers", "preprocessing runs in-process"),
    ("overwrite_cache", "no dataset cache is kept"),
    ("low_cpu_mem_usage", "weights are memory-mapped"),
    ("use_fast_tokenizer", "the tokenizers crate is always used"),
    ("trust_remote_code", "no remote code is run"),
    ("report_to", "metrics are written to the log"),
    ("ddp_find_unused_parameters", "training runs on one device"),
    ("model_type", "the architecture is read from the model's config.json"),
    ("config_name", "the model's own config.json is used"),
    ("config_overrides", "training from scratch is not supported"),
    ("model_revision", "models are loaded from local paths or the default revision"),
    ("token", "no Hugging Face token is used"),
    ("use_auth_token", "no Hugging Face token is used"),
    ("pad_to_max_length", "batches are padded to their longest sequence"),
    ("max_eval_samples", "evaluation uses the whole validation set"),
    ("streaming", "data files are read whole"),
    ("experiment_id", "the output directory names the run"),
    ("loss_class", "the loss is always HardNegativeNLLLoss"),
    ("save_total_limit", "every checkpoint is kept"),
    ("dataloader_num_workers", "batches are built in-process"),
    ("logging_dir", "logs go to the output directory"),
    ("run_name", "the output directory names the run"),
];

/// A parsed config with the notes about ignored fields.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: TrainConfig,
    pub notes: Vec<String>,
}

/// Reads and parses a config file.
pub fn load(path: &Path) -> Result<LoadedConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    parse(&text, path)
}

/// Parses config JSON; `file` names the source in errors.
pub fn parse(text: &str, file: &Path) -> Result<LoadedConfig> {
    let value: Value = serde_json::from_str(text).map_err(|e| config_err(file, e))?;
    let Value::Object(map) = value else {
        return Err(config_err(file, "a config must be a JSON object"));
    };
    let (known, notes) = split_fields(map, file)?;
    let config = serde_json::from_value(Value::Object(known)).map_err(|e| config_err(file, e))?;
    Ok(LoadedConfig { config, notes })
}

fn config_err(file: &Path, msg: impl std::fmt::Display) -> TrainError {
    TrainError::Config { file: file.to_path_buf(), msg: msg.to_string() }
}

fn split_fields(map: Map<String, Value>, file: &Path) -> Result<(Map<String, Value>, Vec<String>)> {
    let mut known = Map::new();
    let mut notes = Vec::new();
    for (key, value) in map {
        if KNOWN.contains(&key.as_str()) {
            known.insert(key, value);
        } else if let Some((_, why)) = IGNORED.iter().find(|(k, _)| *k == key) {
            notes.push(format!("{}: `{key}` is ignored: {why}", file.display()));
        } else {
            let closest = closest_field(&key).map(str::to_string);
            return Err(TrainError::UnknownField { file: file.to_path_buf(), field: key, closest });
        }
    }
    Ok((known, notes))
}

/// The known or ignored field nearest to `name` by edit distance, if reasonably near.
pub fn closest_field(name: &str) -> Option<&'static str> {
    let all = KNOWN.iter().copied().chain(IGNORED.iter().map(|(k, _)| *k));
    let (best, dist) = all.map(|k| (k, edit_distance(name, k))).min_by_key(|&(_, d)| d)?;
    (dist <= name.len().max(3) / 2).then_some(best)
}

/// Levenshtein distance over chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

impl TrainConfig {
    /// The base model; required by every stage.
    pub fn model(&self, file: &Path) -> Result<&str> {
        self.model_name_or_path.as_deref().ok_or_else(|| missing(file, "model_name_or_path"))
    }

    /// The local training data: `train_file`, else `dataset_file_path`.
    pub fn data_file(&self, file: &Path) -> Result<&Path> {
        if let Some(p) = self.train_file.as_deref().or(self.dataset_file_path.as_deref()) {
            return Ok(p);
        }
        match &self.dataset_name {
            Some(name) => Err(config_err(
                file,
                format!("dataset_name `{name}` is a Hub dataset; download it and set train_file or dataset_file_path"),
            )),
            None => Err(missing(file, "train_file")),
        }
    }

    /// LoRA alpha as the reference sets it: twice the rank.
    pub fn lora_alpha(&self) -> f64 {
        2.0 * self.lora_r as f64
    }

    /// Checks what `stage` needs: model, data, output directory and sane numbers.
    pub fn validate(&self, stage: Stage, file: &Path) -> Result<()> {
        self.model(file)?;
        self.data_file(file)?;
        self.output_dir.as_ref().ok_or_else(|| missing(file, "output_dir"))?;
        let positive = [
            ("per_device_train_batch_size", self.per_device_train_batch_size),
            ("gradient_accumulation_steps", self.gradient_accumulation_steps),
            ("lora_r", self.lora_r),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(config_err(file, format!("`{name}` must be positive")));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(config_err(file, format!("`learning_rate` must be positive, got {}", self.learning_rate)));
        }
        let probability = match stage {
            Stage::Mntp => ("mlm_probability", self.mlm_probability),
            Stage::SimCse => ("simcse_dropout", self.simcse_dropout),
            Stage::Supervised => ("lora_dropout", self.lora_dropout),
        };
        if !(0.0..1.0).contains(&probability.1) {
            return Err(config_err(file, format!("`{}` must be in [0, 1)", probability.0)));
        }
        Ok(())
    }
}

fn missing(file: &Path, field: &str) -> TrainError {
    TrainError::MissingField { file: file.to_path_buf(), field: field.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_list_matches_the_struct() {
        let Value::Object(map) = serde_json::to_value(TrainConfig::default()).unwrap() else {
            panic!("a struct serializes to an object");
        };
        let mut fields: Vec<&str> = map.keys().map(String::as_str).collect();
        let mut known = KNOWN.to_vec();
        fields.sort_unstable();
        known.sort_unstable();
        assert_eq!(fields, known);
        assert!(IGNORED.iter().all(|(k, _)| !KNOWN.contains(k)));
    }
}
