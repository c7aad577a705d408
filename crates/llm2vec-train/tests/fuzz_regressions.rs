//! Checkpoints the `checkpoint` fuzz target (fuzz/) found or was written to reach, in
//! fuzz/regressions/checkpoint/: each must fail to load with an error that names the file at fault, without
//! a panic, into the target's model (rank-2 LoRA on layer 0's q_proj, 8 -> 8, and down_proj, 16 -> 8).
//!
//! Input layout (as the target's): three little-endian `u16` lengths (trainer state, adapter config, adapter
//! weights), those parts, then the optimizer state.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use llm2vec::model::{Projection, Site};
use llm2vec_train::checkpoint;
use llm2vec_train::lora::{LoraModel, LoraSettings};
use llm2vec_train::optim::{AdamW, AdamWConfig};

#[path = "../../llm2vec/tests/common/regressions.rs"]
mod regressions;
use regressions::regressions;

const FILES: [&str; 4] =
    ["trainer_state.json", "adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors"];

/// Writes the four files of a target input into `dir`.
fn write_checkpoint(data: &[u8], dir: &Path) {
    let len = |i: usize| u16::from_le_bytes([data[2 * i], data[2 * i + 1]]) as usize;
    let mut rest = &data[6..];
    for (i, name) in FILES.iter().enumerate() {
        let (part, tail) = if i < 3 { rest.split_at(len(i).min(rest.len())) } else { (rest, &[][..]) };
        std::fs::write(dir.join(name), part).unwrap();
        rest = tail;
    }
}

#[test]
fn hostile_checkpoints_are_errors_that_name_the_file() {
    let accepted: Vec<PathBuf> = regressions("checkpoint").into_iter().filter(|p| !refused(p)).collect();
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
}

/// Loads the checkpoint of `path`; true when it is refused (an error that names a file).
fn refused(path: &Path) -> bool {
    let tmp = tempfile::tempdir().unwrap();
    write_checkpoint(&std::fs::read(path).unwrap(), tmp.path());
    let settings = LoraSettings { r: 2, lora_alpha: 4.0, lora_dropout: 0.0 };
    let sites = [(Site { layer: 0, proj: Projection::Q }, 8, 8), (Site { layer: 0, proj: Projection::Down }, 16, 8)];
    let mut lora = LoraModel::new(&sites, &Projection::ALL, &settings, 0, DType::F32, &Device::Cpu).unwrap();
    let mut optimizer = AdamW::new(&lora.vars(), AdamWConfig::default()).unwrap();
    let dir = tmp.path();
    let loaded = checkpoint::read_state(dir).and_then(|_| checkpoint::restore(dir, &mut lora, &mut optimizer));
    let Err(err) = loaded else { return false };
    let err = err.to_string();
    eprintln!("{}: {err}", path.display());
    assert!(FILES.iter().any(|f| err.contains(f)), "{}: the error names no file: {err}", path.display());
    true
}
