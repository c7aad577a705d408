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
    lora.load_weights(dir)?;
    optimizer.load(&dir.join(OPTIMIZER))?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resumed run compares and continues from what a checkpoint's JSON says, so every float must read
    /// back bit for bit (serde_json does so only with its `float_roundtrip` feature).
    #[test]
    fn the_trainer_state_reads_back_bit_for_bit() {
        let mut bits = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            bits = bits.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            f64::from_bits(0x3FF0_0000_0000_0000 | bits >> 12) * 3.0
        };
        let steps = (0..1000)
            .map(|step| StepRecord { step, loss: next(), learning_rate: next() * 1e-4, grad_norm: next(), tokens: step, elapsed_seconds: next() })
            .chain([StepRecord { step: 1000, loss: 3.876_888_513_565_063_5, learning_rate: 0.0, grad_norm: 0.0, tokens: 0, elapsed_seconds: 0.0 }])
            .collect();
        let state = TrainerState { stage: "mntp".into(), step: 1001, planned_steps: 1001, steps, evals: vec![] };
        let back: TrainerState = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        for (a, b) in state.steps.iter().zip(&back.steps) {
            for (x, y) in [(a.loss, b.loss), (a.learning_rate, b.learning_rate), (a.grad_norm, b.grad_norm), (a.elapsed_seconds, b.elapsed_seconds)] {
                assert_eq!(x.to_bits(), y.to_bits(), "step {}: wrote {x:?}, read {y:?}", a.step);
            }
        }
    }
}
