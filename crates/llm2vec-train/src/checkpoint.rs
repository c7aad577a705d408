//! Checkpoints: `<output_dir>/checkpoint-<step>/` holds the adapter (PEFT format), the optimizer
//! moments and the trainer state. A checkpoint is written under a temporary name and renamed into
//! place, so a failed save (a full disk) leaves the previous checkpoints intact.

use crate::lora::LoraModel;
use crate::optim::AdamW;
use crate::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One optimizer step's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: usize,
    pub loss: f64,
    pub learning_rate: f64,
    pub grad_norm: f64,
    pub tokens: usize,
    pub elapsed_seconds: f64,
}

/// One evaluation's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalRecord {
    pub step: usize,
    pub metric: String,
    pub value: f64,
}

/// Everything besides weights and moments that a resumed run needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainerState {
    pub stage: String,
    /// Optimizer steps done.
    pub step: usize,
    pub planned_steps: usize,
    pub steps: Vec<StepRecord>,
    pub evals: Vec<EvalRecord>,
}

impl TrainerState {
    pub fn elapsed_seconds(&self) -> f64 {
        self.steps.last().map_or(0.0, |r| r.elapsed_seconds)
    }

    pub fn tokens(&self) -> usize {
        self.steps.iter().map(|r| r.tokens).sum()
    }
}

const STATE: &str = "trainer_state.json";
const OPTIMIZER: &str = "optimizer.safetensors";

/// Writes `<output_dir>/checkpoint-<step>/` and returns its path.
pub fn save(output_dir: &Path, lora: &LoraModel, optimizer: &AdamW, state: &TrainerState, extra: &[(&str, Vec<u8>)]) -> Result<PathBuf> {
    let dir = output_dir.join(format!("checkpoint-{}", state.step));
    let staging = output_dir.join(format!(".checkpoint-{}.partial", state.step));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| TrainError::io(&staging, e))?;
    }
    let written = write_all(&staging, lora, optimizer, state, extra);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    }
    std::fs::rename(&staging, &dir).map_err(|e| TrainError::io(&dir, e))?;
    Ok(dir)
}

fn write_all(dir: &Path, lora: &LoraModel, optimizer: &AdamW, state: &TrainerState, extra: &[(&str, Vec<u8>)]) -> Result<()> {
    lora.save(dir, None)?;
    optimizer.save(&dir.join(OPTIMIZER))?;
    for (name, bytes) in extra {
        llm2vec::io::write_atomic(&dir.join(name), bytes)?;
    }
    let json = serde_json::to_vec_pretty(state).map_err(|e| TrainError::Invalid(e.to_string()))?;
    llm2vec::io::write_atomic(&dir.join(STATE), &json)?;
    Ok(())
}

/// The complete checkpoint with the highest step in `output_dir`, if any.
pub fn latest(output_dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(output_dir).ok()?;
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let step: usize = e.file_name().to_str()?.strip_prefix("checkpoint-")?.parse().ok()?;
            e.path().join(STATE).is_file().then(|| (step, e.path()))
        })
        .max_by_key(|(step, _)| *step)
        .map(|(_, path)| path)
}

/// Restores LoRA weights and optimizer moments from `dir` and returns its trainer state.
pub fn load(dir: &Path, lora: &mut LoraModel, optimizer: &mut AdamW) -> Result<TrainerState> {
    let path = dir.join(STATE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let state: TrainerState = serde_json::from_str(&text).map_err(|e| TrainError::Config { file: path.clone(), msg: e.to_string() })?;
    if state.steps.iter().try_fold(0usize, |sum, r| sum.checked_add(r.tokens)).is_none() {
        let msg = "the `tokens` of `steps` add up to more than a token count can hold".to_string();
        return Err(TrainError::Config { file: path, msg });
    }
    lora.load_weights(dir)?;
    optimizer.load(&dir.join(OPTIMIZER))?;
    Ok(state)
}
