//! Checkpoints: `<output_dir>/checkpoint-<step>/` holds the adapter (PEFT format), the optimizer
//! moments and the trainer state (with the run's [`Fingerprint`]). A checkpoint is written under a
//! temporary name and renamed into place, so a failed save (a full disk) leaves the previous checkpoints
//! intact. A restart moves the previous run's files to `<output_dir>/previous-run/`, where resume never
//! looks.

use crate::fingerprint::Fingerprint;
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
    /// The run's identity; absent in checkpoints of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
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
const ADAPTER: &str = "adapter_model.safetensors";

/// Writes `<output_dir>/checkpoint-<step>/` and returns its path.
pub fn save(
    output_dir: &Path,
    lora: &LoraModel,
    optimizer: &AdamW,
    state: &TrainerState,
    extra: &[(&str, Vec<u8>)],
) -> Result<PathBuf> {
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

fn write_all(
    dir: &Path,
    lora: &LoraModel,
    optimizer: &AdamW,
    state: &TrainerState,
    extra: &[(&str, Vec<u8>)],
) -> Result<()> {
    lora.save(dir, None)?;
    optimizer.save(&dir.join(OPTIMIZER))?;
    for (name, bytes) in extra {
        llm2vec::fs::write_atomic(&dir.join(name), bytes)?;
    }
    let json = serde_json::to_vec_pretty(state).map_err(|e| TrainError::Invalid(e.to_string()))?;
    llm2vec::fs::write_atomic(&dir.join(STATE), &json)?;
    Ok(())
}

/// The complete checkpoint with the highest step in `output_dir`, if any.
pub fn latest(output_dir: &Path) -> Option<PathBuf> {
    complete(output_dir).into_iter().next()
}

/// The complete checkpoints in `output_dir` (those with a trainer state), highest step first.
pub fn complete(output_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(output_dir) else { return Vec::new() };
    let mut found: Vec<(usize, PathBuf)> = entries
        .filter_map(std::result::Result::ok)
        .filter_map(|e| {
            let step: usize = e.file_name().to_str()?.strip_prefix("checkpoint-")?.parse().ok()?;
            e.path().join(STATE).is_file().then(|| (step, e.path()))
        })
        .collect();
    found.sort_by_key(|(step, _)| std::cmp::Reverse(*step));
    found.into_iter().map(|(_, path)| path).collect()
}

/// The trainer state saved in checkpoint `dir`.
pub fn read_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join(STATE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let state: TrainerState =
        serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint { path: path.clone(), msg: e.to_string() })?;
    if state.steps.iter().try_fold(0usize, |sum, r| sum.checked_add(r.tokens)).is_none() {
        let msg = "the `tokens` of `steps` add up to more than a token count can hold".to_string();
        return Err(TrainError::Checkpoint { path, msg });
    }
    Ok(state)
}

/// Restores LoRA weights and optimizer moments from checkpoint `dir`; every error names its file.
pub fn restore(dir: &Path, lora: &mut LoraModel, optimizer: &mut AdamW) -> Result<()> {
    let in_file = |path: PathBuf| {
        move |e: TrainError| match e {
            TrainError::Candle(e) => TrainError::Checkpoint { path, msg: e.to_string() },
            other => other,
        }
    };
    lora.load_weights(dir).map_err(in_file(dir.join(ADAPTER)))?;
    optimizer.load(&dir.join(OPTIMIZER)).map_err(in_file(dir.join(OPTIMIZER)))
}

/// Where a restart moves the previous run's files.
pub const PREVIOUS_RUN: &str = "previous-run";
/// Written before a restart moves anything and removed after: while it exists the move is unfinished.
const RESTART_MARK: &str = ".restart-pending";
/// The files of a run in `output_dir` besides its checkpoints.
const RUN_FILES: &[&str] =
    &["adapter_config.json", ADAPTER, "llm2vec_config.json", "metrics.jsonl", "loss.svg", "merged"];

/// Moves the run in `output_dir` (checkpoints, final adapter, logs, merged model) to
/// `<output_dir>/previous-run/`, replacing what an earlier restart left there. Returns that folder, or
/// `None` when there was no run. The mark written first makes the move all-or-nothing: once it exists
/// the old run is never resumed, and [`finish_restart`] completes a move that was cut short.
pub fn set_aside(output_dir: &Path) -> Result<Option<PathBuf>> {
    if run_entries(output_dir).is_empty() {
        return Ok(None);
    }
    let previous = output_dir.join(PREVIOUS_RUN);
    if previous.exists() {
        std::fs::remove_dir_all(&previous).map_err(|e| TrainError::io(&previous, e))?;
    }
    llm2vec::fs::write_atomic(&output_dir.join(RESTART_MARK), b"")?;
    finish_restart(output_dir)?;
    Ok(Some(previous))
}

/// Completes a restart that was cut short, if any; returns whether there was one.
pub fn finish_restart(output_dir: &Path) -> Result<bool> {
    let mark = output_dir.join(RESTART_MARK);
    if !mark.exists() {
        return Ok(false);
    }
    let previous = output_dir.join(PREVIOUS_RUN);
    std::fs::create_dir_all(&previous).map_err(|e| TrainError::io(&previous, e))?;
    for from in run_entries(output_dir) {
        let to = previous.join(from.file_name().unwrap_or_default());
        std::fs::rename(&from, &to).map_err(|e| TrainError::io(&from, e))?;
    }
    std::fs::remove_file(&mark).map_err(|e| TrainError::io(&mark, e))?;
    Ok(true)
}

/// The checkpoint folders (complete or not) and run files in `output_dir`.
fn run_entries(output_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(output_dir) else { return Vec::new() };
    entries
        .filter_map(std::result::Result::ok)
        .filter(|e| {
            e.file_name().to_str().is_some_and(|n| {
                n.strip_prefix("checkpoint-").is_some_and(|step| step.parse::<usize>().is_ok())
                    || RUN_FILES.contains(&n)
            })
        })
        .map(|e| e.path())
        .collect()
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
            .map(|step| StepRecord {
                step,
                loss: next(),
                learning_rate: next() * 1e-4,
                grad_norm: next(),
                tokens: step,
                elapsed_seconds: next(),
            })
            .chain([StepRecord {
                step: 1000,
                loss: 3.876_888_513_565_063_5,
                learning_rate: 0.0,
                grad_norm: 0.0,
                tokens: 0,
                elapsed_seconds: 0.0,
            }])
            .collect();
        let state = TrainerState {
            stage: "mntp".into(),
            step: 1001,
            planned_steps: 1001,
            steps,
            evals: vec![],
            fingerprint: None,
        };
        let back: TrainerState = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        for (a, b) in state.steps.iter().zip(&back.steps) {
            for (x, y) in [
                (a.loss, b.loss),
                (a.learning_rate, b.learning_rate),
                (a.grad_norm, b.grad_norm),
                (a.elapsed_seconds, b.elapsed_seconds),
            ] {
                assert_eq!(x.to_bits(), y.to_bits(), "step {}: wrote {x:?}, read {y:?}", a.step);
            }
        }
    }
}
