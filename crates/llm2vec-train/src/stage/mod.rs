//! The three training objectives behind one trait: each turns a global micro-batch index into a
//! loss and LoRA gradients (all randomness derived from the seed and that index, so a resumed run
//! replays the same batches, masks and dropout), and evaluates the model being trained.

pub mod contrastive;
pub mod mntp;

use crate::backprop::{Batch, LossAndGrads};
use crate::lora::LoraModel;
use crate::rng::{Purpose, Rng};
use crate::{Result, TrainError};
use candle_core::{DType, Tensor, D};
use llm2vec::model::ops::widened;
use llm2vec::model::{AttentionMode, Pass};
use llm2vec::tokenize::Tokenized;
use llm2vec::Encoder;
use std::path::Path;

/// The model being trained: the frozen encoder (earlier adapters merged) and the LoRA updates.
pub struct Trainee {
    pub encoder: Encoder,
    pub lora: LoraModel,
    pub mode: AttentionMode,
    pub checkpoint: bool,
    pub seed: u64,
}

/// One training objective.
pub trait Objective {
    /// Micro-batches in one pass over the training data.
    fn batches_per_epoch(&self) -> usize;
    /// Loss and gradients of micro-batch `index` (counted over the whole run), and its real tokens.
    fn step(&self, model: &Trainee, index: usize) -> Result<(LossAndGrads, usize)>;
    /// The objective's evaluation (name, value), if it has data for one.
    fn evaluate(&self, model: &Trainee) -> Result<Option<(String, f64)>>;
}

/// The items of micro-batch `index` when `n` items are drawn in batches of `batch_size`, freshly
/// shuffled every epoch (a partial last batch is dropped).
pub fn batch_items(n: usize, batch_size: usize, seed: u64, index: usize) -> Vec<usize> {
    let per_epoch = n / batch_size;
    let mut order: Vec<usize> = (0..n).collect();
    Rng::derived(seed, Purpose::Order, (index / per_epoch) as u64).shuffle(&mut order);
    let start = (index % per_epoch) * batch_size;
    order[start..start + batch_size].to_vec()
}

/// Sets the dropout stream of micro-batch `index` (training mode).
pub fn start_dropout(model: &Trainee, index: usize) {
    model.lora.set_rng(Some(Rng::derived(model.seed, Purpose::Dropout, index as u64)));
}

/// A batch of tokenized inputs and their pooling weights `[b, t]`.
pub fn pooled_batch(model: &Trainee, items: &[&Tokenized]) -> Result<(Batch, Tensor)> {
    let device = model.encoder.backbone().device();
    let rows: Vec<&[u32]> = items.iter().map(|t| t.ids.as_slice()).collect();
    let batch = Batch::new(&rows, device)?;
    let t = batch.ids.dim(1)?;
    let settings = model.encoder.settings();
    let bos = model.encoder.tokenizer().bos_id();
    let mut w = Vec::with_capacity(items.len() * t);
    for item in items {
        w.extend(llm2vec::pool::weights(settings.pooling, item, settings.skip_instruction, bos, t)?);
    }
    Ok((batch, Tensor::from_vec(w, (items.len(), t), device)?))
}

/// Pooled embeddings `[b, d]` from hidden states `[b, t, d]` and weights `[b, t]`, recording gradients;
/// in f32 for a half-precision model (the loss runs in f32).
pub fn pool(hidden: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let hidden = widened(hidden)?;
    Ok(hidden.broadcast_mul(&weights.unsqueeze(D::Minus1)?.to_dtype(hidden.dtype())?)?.sum(1)?)
}

/// Rows per forward pass when evaluating.
const EVAL_BATCH_SIZE: usize = 32;

/// STS-B-style dev data: sentence pairs with gold scores.
pub struct StsDev {
    pub pairs: Vec<(Tokenized, Tokenized)>,
    pub scores: Vec<f64>,
}

impl StsDev {
    /// Reads a JSONL file of `{"sentence1", "sentence2", "score"}` (the layout of ../shared/data).
    pub fn load(path: &Path, encoder: &Encoder) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let (mut pairs, mut scores) = (Vec::new(), Vec::new());
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let err = |msg: String| TrainError::Data { file: path.into(), line: n + 1, msg };
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| err(e.to_string()))?;
            let field =
                |k: &str| v.get(k).and_then(|x| x.as_str()).ok_or_else(|| err(format!("missing text field `{k}`")));
            let score = v
                .get("score")
                .and_then(serde_json::Value::as_f64)
                .ok_or_else(|| err("missing number `score`".into()))?;
            let tok = |s: &str| encoder.tokenize(&llm2vec::Input::text(s)).map_err(|e| err(e.to_string()));
            pairs.push((tok(field("sentence1")?)?, tok(field("sentence2")?)?));
            scores.push(score);
        }
        if pairs.len() < 2 {
            return Err(TrainError::Data { file: path.into(), line: 1, msg: "fewer than two sentence pairs".into() });
        }
        Ok(Self { pairs, scores })
    }

    /// Spearman correlation of cosine similarity with the gold scores for the model as it is now: the
    /// trainee's own forward pass in evaluation mode (no dropout, no graph), pooled as its encoder pools.
    pub fn spearman(&self, model: &Trainee) -> Result<f64> {
        model.lora.set_rng(None);
        let items: Vec<&Tokenized> = self.pairs.iter().flat_map(|(a, b)| [a, b]).collect();
        let lengths: Vec<usize> = items.iter().map(|t| t.ids.len()).collect();
        let dim = model.encoder.dim();
        let mut embeddings = vec![0f32; items.len() * dim];
        for batch in llm2vec::batch::longest_first(&lengths).chunks(EVAL_BATCH_SIZE) {
            let rows: Vec<&Tokenized> = batch.iter().map(|&i| items[i]).collect();
            let (ids, weights) = pooled_batch(model, &rows)?;
            let pass = Pass::Train(&model.lora);
            let hidden = model.encoder.backbone().forward_pass(&ids.ids, &ids.lengths, model.mode, pass)?.detach();
            let pooled: Vec<f32> = pool(&hidden, &weights)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
            if let Some(k) = pooled.chunks(dim).position(|row| row.iter().any(|v| !v.is_finite())) {
                return Err(llm2vec::Error::NonFinite { input: batch[k] }.into());
            }
            llm2vec::batch::scatter(&pooled, batch, dim, &mut embeddings);
        }
        let cosines: Vec<f64> = (0..self.pairs.len())
            .map(|i| {
                llm2vec_eval::metrics::cosine(
                    &embeddings[2 * i * dim..(2 * i + 1) * dim],
                    &embeddings[(2 * i + 1) * dim..(2 * i + 2) * dim],
                )
            })
            .collect();
        Ok(llm2vec_eval::metrics::spearman(&cosines, &self.scores))
    }
}
