//! What several test files share: a LoRA linear layer for the layer-level tests (the model code's fused
//! training op over a frozen weight), and the sentences and triplets of the tiny training runs.
#![allow(dead_code)] // each test file uses part of it

use candle_core::{Tensor, Var};
use llm2vec::model::ops::{frozen_matmul, lora_linear, Part};
use llm2vec_train::lora::{Lora, LoraSettings};
use llm2vec_train::rng::Rng;
use std::path::{Path, PathBuf};

pub const SENTENCES: &[&str] = &[
    "a man is playing a guitar .",
    "a woman is slicing an onion .",
    "the kids are playing outdoors near a man .",
    "a dog runs across the green field .",
    "two men are riding horses on the beach .",
    "a cat is sleeping on the warm sofa .",
    "the woman is cutting a tomato .",
    "a boy is jumping into the pool .",
];

/// A supervised data folder in `dir`: triplets of [`SENTENCES`] (the next sentence positive, the fourth
/// after it negative) with an instruction.
pub fn triplets_folder(dir: &Path) -> PathBuf {
    let folder = dir.join("sup");
    std::fs::create_dir_all(&folder).unwrap();
    let records: Vec<String> = (0..8)
        .map(|i| {
            let (q, p, n) = (SENTENCES[i], SENTENCES[(i + 1) % 8], SENTENCES[(i + 4) % 8]);
            serde_json::json!({"query": q, "positive": p, "negative": n}).to_string()
        })
        .collect();
    std::fs::write(folder.join("triplets.jsonl"), records.join("\n")).unwrap();
    std::fs::write(folder.join("instructions.json"), "{\"triplets.jsonl\": \"Retrieve the next sentence:\"}").unwrap();
    folder
}

/// `x W^T` with no gradient for `w: [out, in]`.
pub fn frozen_linear(x: &Tensor, w: &Tensor) -> llm2vec::Result<Tensor> {
    frozen_matmul(x, &w.t()?)
}

pub struct LoraLinear {
    weight: Tensor,
    lora: Lora,
}

impl LoraLinear {
    pub fn new(weight: Tensor, s: &LoraSettings, rng: &mut Rng) -> llm2vec_train::Result<Self> {
        let (out, inp) = weight.dims2()?;
        let lora = Lora::new(inp, out, s, rng, weight.dtype(), weight.device())?;
        Ok(Self { weight, lora })
    }

    pub fn from_parts(weight: Tensor, a: Tensor, b: Tensor, s: &LoraSettings) -> llm2vec_train::Result<Self> {
        let (out, inp) = weight.dims2()?;
        if a.dims2()?.1 != inp || b.dims2()?.0 != out {
            return Err(llm2vec_train::TrainError::Invalid("A/B do not fit W".into()));
        }
        Ok(Self { weight, lora: Lora::from_parts(a, b, s)? })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn vars(&self) -> [&Var; 2] {
        self.lora.vars()
    }

    /// Forward; a dropout seed means training.
    pub fn forward(&self, x: &Tensor, seed: Option<u64>) -> llm2vec::Result<Tensor> {
        let part = Part { width: self.weight.dim(0)?, update: Some((self.lora.low_rank(), seed)) };
        lora_linear(x, &self.weight.t()?, None, &[part])
    }
}
