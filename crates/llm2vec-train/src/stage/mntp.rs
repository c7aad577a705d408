//! Masked next-token prediction: blocks of text with some tokens masked; the token at position i is
//! predicted from the output at position i-1. Only the rows that predict a masked token go through
//! the language-model head (the loss is the same as over all rows, at a fraction of the cost).

use super::{batch_items, start_dropout, Objective, Trainee};
use crate::backprop::{loss_and_grads, Batch, LossAndGrads};
use crate::config::TrainConfig;
use crate::mask::{mask_token_id, Masked, Masker, IGNORE_INDEX};
use crate::rng::{Purpose, Rng};
use crate::{data, loss, Result, TrainError};
use candle_core::{Tensor, D};
use llm2vec::model::ops::widened;
use llm2vec::model::Pass;
use std::path::Path;

/// Held-back blocks evaluated at most (the first of the validation split).
const MAX_EVAL_BLOCKS: usize = 64;

pub struct Mntp {
    train: Vec<Vec<u32>>,
    eval: Vec<Vec<u32>>,
    masker: Masker,
    batch_size: usize,
    eval_batch_size: usize,
}

impl Mntp {
    /// Reads, splits (the first `validation_split_percentage` % of the texts are held back, as the
    /// reference), tokenizes and groups the training text.
    pub fn new(config: &TrainConfig, config_path: &Path, model: &Trainee) -> Result<Self> {
        let file = config.data_file(config_path)?;
        let mut texts = data::load_mntp_texts(file)?;
        if texts.is_empty() {
            return Err(TrainError::Data { file: file.into(), line: 1, msg: "no text records".into() });
        }
        let held = texts.len() * config.validation_split_percentage.min(100) / 100;
        let train_texts = texts.split_off(held);
        let tokenizer = model.encoder.tokenizer();
        let block =
            config.max_seq_length.unwrap_or(llm2vec::DEFAULT_MAX_LENGTH).min(model.encoder.settings().max_length);
        let prepare = |texts: &[String]| -> Result<Vec<Vec<u32>>> {
            let seqs = data::tokenize_all(tokenizer.inner(), texts)?;
            if config.line_by_line {
                Ok(data::line_by_line(seqs, block))
            } else {
                data::group_texts(&seqs, block)
            }
        };
        let mut train = prepare(&train_texts)?;
        if let Some(n) = config.max_train_samples {
            train.truncate(n);
        }
        if train.len() < config.per_device_train_batch_size {
            return Err(TrainError::Data {
                file: file.into(),
                line: 1,
                msg: format!(
                    "{} training blocks of {block} tokens, fewer than one batch of {}",
                    train.len(),
                    config.per_device_train_batch_size
                ),
            });
        }
        let mut eval = prepare(&texts)?;
        eval.truncate(MAX_EVAL_BLOCKS);
        let special_ids: Vec<u32> = tokenizer.inner().get_added_vocabulary().get_vocab().values().copied().collect();
        let masker = Masker {
            probability: config.mlm_probability,
            collator: config.data_collator_type,
            mask_id: mask_token_id(config.mask_token_type, tokenizer.inner(), tokenizer.eos_id())?,
            vocab_size: tokenizer.inner().get_vocab_size(true) as u32,
            special_ids,
        };
        Ok(Self {
            train,
            eval,
            masker,
            batch_size: config.per_device_train_batch_size,
            eval_batch_size: config.per_device_eval_batch_size.max(1),
        })
    }

    fn masked_batch(&self, model: &Trainee, blocks: &[&Vec<u32>], rng: &mut Rng) -> Result<(Batch, Vec<Masked>)> {
        let masked: Vec<Masked> = blocks.iter().map(|b| self.masker.mask(b, rng)).collect();
        let rows: Vec<&[u32]> = masked.iter().map(|m| m.input_ids.as_slice()).collect();
        Ok((Batch::new(&rows, model.encoder.backbone().device())?, masked))
    }
}

/// Rows of the flattened `[b * t]` outputs that predict a masked token, and those tokens.
fn prediction_rows(masked: &[Masked], t: usize) -> (Vec<u32>, Vec<u32>) {
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for (b, m) in masked.iter().enumerate() {
        for (i, &label) in m.labels.iter().enumerate().skip(1) {
            if label != IGNORE_INDEX {
                rows.push((b * t + i - 1) as u32);
                targets.push(label as u32);
            }
        }
    }
    (rows, targets)
}

/// Logits `[n, vocab]` of the selected rows of hidden states `[b, t, d]`, in f32 for a half-precision
/// model (the loss runs in f32).
fn head(model: &Trainee, hidden: &Tensor, rows: &[u32]) -> Result<Tensor> {
    let (b, t, d) = hidden.dims3()?;
    let rows = Tensor::from_slice(rows, rows.len(), hidden.device())?;
    let picked = hidden.reshape((b * t, d))?.index_select(&rows, 0)?;
    Ok(widened(&model.encoder.backbone().logits(&picked, Pass::Train(&model.lora))?)?)
}

impl Objective for Mntp {
    fn batches_per_epoch(&self) -> usize {
        self.train.len() / self.batch_size
    }

    fn step(&self, model: &Trainee, index: usize) -> Result<(LossAndGrads, usize)> {
        let blocks: Vec<&Vec<u32>> = batch_items(self.train.len(), self.batch_size, model.seed, index)
            .into_iter()
            .map(|i| &self.train[i])
            .collect();
        let (batch, masked) =
            self.masked_batch(model, &blocks, &mut Rng::derived(model.seed, Purpose::Mask, index as u64))?;
        let (rows, targets) = prediction_rows(&masked, batch.ids.dim(1)?);
        let tokens = batch.tokens();
        if rows.is_empty() {
            // Nothing was masked (tiny blocks): a zero loss with zero gradients.
            let grads =
                model.lora.vars().iter().map(|v| v.as_tensor().zeros_like()).collect::<candle_core::Result<_>>()?;
            return Ok((LossAndGrads { loss: 0.0, grads }, tokens));
        }
        start_dropout(model, index);
        let backbone = model.encoder.backbone();
        let out = loss_and_grads(backbone, &model.lora, &[batch], model.mode, model.checkpoint, |hidden| {
            loss::cross_entropy(&head(model, &hidden[0], &rows)?, &targets)
        })?;
        Ok((out, tokens))
    }

    /// Accuracy of the masked-token predictions on the held-back blocks (masks fixed by the seed).
    fn evaluate(&self, model: &Trainee) -> Result<Option<(String, f64)>> {
        if self.eval.is_empty() {
            return Ok(None);
        }
        model.lora.set_rng(None);
        let (mut right, mut total) = (0usize, 0usize);
        for (k, chunk) in self.eval.chunks(self.eval_batch_size).enumerate() {
            let blocks: Vec<&Vec<u32>> = chunk.iter().collect();
            let (batch, masked) =
                self.masked_batch(model, &blocks, &mut Rng::derived(model.seed, Purpose::Eval, k as u64))?;
            let (rows, targets) = prediction_rows(&masked, batch.ids.dim(1)?);
            if rows.is_empty() {
                continue;
            }
            let backbone = model.encoder.backbone();
            let hidden =
                backbone.forward_pass(&batch.ids, &batch.lengths, model.mode, Pass::Train(&model.lora))?.detach();
            let predicted: Vec<u32> = head(model, &hidden, &rows)?.argmax(D::Minus1)?.to_vec1()?;
            right += predicted.iter().zip(&targets).filter(|(p, t)| p == t).count();
            total += targets.len();
        }
        Ok((total > 0).then(|| ("mntp_accuracy".to_string(), right as f64 / total as f64)))
    }
}
