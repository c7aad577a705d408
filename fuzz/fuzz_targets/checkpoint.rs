//! `llm2vec_train::checkpoint::{read_state, restore}` on a checkpoint folder of fuzzed files, into a LoRA model with rank-2
//! updates on layer 0's q_proj (8 -> 8) and down_proj (16 -> 8) and its AdamW state. The loader reads a
//! folder, so each input is split into `trainer_state.json`, `adapter_config.json`,
//! `adapter_model.safetensors` and `optimizer.safetensors` under `/dev/shm/llm2vec-fuzz-checkpoint-<pid>/`.
//! A checkpoint that loads must be usable: its trainer state's summaries and one optimizer step work.
//!
//! Input layout: three little-endian `u16` lengths (state, adapter config, adapter weights), those parts in
//! that order, then the optimizer's safetensors (parts are cut short when the input is).

#![no_main]

#[path = "common.rs"]
mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use libfuzzer_sys::fuzz_target;
use llm2vec::model::{Projection, Site};
use llm2vec_train::checkpoint;
use llm2vec_train::lora::{LoraModel, LoraSettings};
use llm2vec_train::optim::{AdamW, AdamWConfig};

const FILES: [&str; 4] =
    ["trainer_state.json", "adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors"];

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(format!("/dev/shm/llm2vec-fuzz-checkpoint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the checkpoint folder");
        dir
    })
}

/// The four files' bytes.
fn split(data: &[u8]) -> Option<[&[u8]; 4]> {
    if data.len() < 6 {
        return None;
    }
    let len = |i: usize| u16::from_le_bytes([data[2 * i], data[2 * i + 1]]) as usize;
    let mut rest = &data[6..];
    let mut parts = [&[][..]; 4];
    for (i, part) in parts.iter_mut().take(3).enumerate() {
        let (head, tail) = rest.split_at(len(i).min(rest.len()));
        *part = head;
        rest = tail;
    }
    parts[3] = rest;
    Some(parts)
}

fuzz_target!(|data: &[u8]| {
    let Some(parts) = split(data) else { return };
    let dir = dir();
    for (name, bytes) in FILES.iter().zip(parts) {
        std::fs::write(dir.join(name), bytes).expect("write a checkpoint file");
    }
    let settings = LoraSettings { r: 2, lora_alpha: 4.0, lora_dropout: 0.0 };
    let sites = [(Site { layer: 0, proj: Projection::Q }, 8, 8), (Site { layer: 0, proj: Projection::Down }, 16, 8)];
    let mut lora =
        LoraModel::new(&sites, &Projection::ALL, &settings, 0, DType::F32, &Device::Cpu).expect("the LoRA model");
    let mut optimizer = AdamW::new(&lora.vars(), AdamWConfig::default()).expect("the optimizer");
    let state = match checkpoint::read_state(dir)
        .and_then(|s| checkpoint::restore(dir, &mut lora, &mut optimizer).map(|()| s))
    {
        Ok(s) => s,
        Err(e) => {
            debug!("rejected: {e}");
            return;
        }
    };
    debug!("loaded: stage {:?}, step {}, {} step records", state.stage, state.step, state.steps.len());
    let _ = (state.tokens(), state.elapsed_seconds());
    let vars = lora.vars();
    let grads: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().zeros_like().expect("zeros")).collect();
    if let Err(e) = optimizer.step(&vars, &grads, 1e-3) {
        panic!("a loaded checkpoint cannot take an optimizer step: {e}");
    }
});
