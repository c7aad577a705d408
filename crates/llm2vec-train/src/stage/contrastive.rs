//! The contrastive objectives. Unsupervised SimCSE: each sentence twice in one batch, with
//! independent dropout masks; the two views are positives, the other sentences' views negatives.
//! Supervised: queries (with their instruction, which is attended to but not pooled) against
//! positives, hard negatives and the in-batch negatives. Both pool over the real tokens only.

use super::{batch_items, pool, pooled_batch, start_dropout, Objective, StsDev, Trainee};
use crate::backprop::{loss_and_grads, Batch, LossAndGrads};
use crate::config::TrainConfig;
use crate::data::{self, SupervisedExample};
use crate::rng::{Purpose, Rng};
use crate::{loss, Result, TrainError};
use candle_core::Tensor;
use llm2vec::tokenize::Tokenized;
use llm2vec::Input;
use std::path::{Path, PathBuf};

/// Rows per forward chunk: the batch's rows are run in length-sorted chunks of this many, so that short
/// texts are not padded to the longest of the whole batch (the embeddings are the same).
const CHUNK_ROWS: usize = 8;

/// Pools every row of `items` and hands the embeddings (in `items` order) to `loss_fn`.
fn pooled_loss(
    model: &Trainee,
    items: &[&Tokenized],
    index: usize,
    loss_fn: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<(LossAndGrads, usize)> {
    let lengths: Vec<usize> = items.iter().map(|t| t.ids.len()).collect();
    let order = llm2vec::batch::longest_first(&lengths);
    let mut batches = Vec::new();
    let mut weights = Vec::new();
    for chunk in order.chunks(CHUNK_ROWS) {
        let rows: Vec<&Tokenized> = chunk.iter().map(|&i| items[i]).collect();
        let (batch, w) = pooled_batch(model, &rows)?;
        batches.push(batch);
        weights.push(w);
    }
    let tokens = batches.iter().map(Batch::tokens).sum();
    // Row k of the sorted embeddings is item order[k]: `position[i]` finds item i again.
    let position: Vec<u32> = llm2vec::batch::positions(&order).into_iter().map(|k| k as u32).collect();
    start_dropout(model, index);
    let backbone = model.encoder.backbone();
    let out = loss_and_grads(backbone, &model.lora, &batches, model.mode, model.checkpoint, |hidden| {
        let pooled = hidden.iter().zip(&weights).map(|(h, w)| pool(h, w)).collect::<Result<Vec<_>>>()?;
        let sorted = Tensor::cat(&pooled, 0)?;
        let position = Tensor::from_vec(position, items.len(), sorted.device())?;
        loss_fn(&sorted.index_select(&position, 0)?)
    })?;
    Ok((out, tokens))
}

fn tokenize_all(model: &Trainee, inputs: &[Input], file: &Path) -> Result<Vec<Tokenized>> {
    inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            model.encoder.tokenize(input).map_err(|e| TrainError::Data {
                file: file.into(),
                line: i + 1,
                msg: e.to_string(),
            })
        })
        .collect()
}

pub struct SimCse {
    sentences: Vec<Tokenized>,
    batch_size: usize,
    scale: f64,
    dev: Option<StsDev>,
}

impl SimCse {
    pub fn new(config: &TrainConfig, config_path: &Path, model: &Trainee, dev: Option<StsDev>) -> Result<Self> {
        let file = config.data_file(config_path)?;
        let mut texts = data::load_sentences(file)?;
        if let Some(n) = config.max_train_samples {
            texts.truncate(n);
        }
        let inputs: Vec<Input> = texts.into_iter().map(Input::text).collect();
        let sentences = tokenize_all(model, &inputs, file)?;
        if sentences.len() < config.per_device_train_batch_size.max(2) {
            return Err(TrainError::Data {
                file: file.into(),
                line: 1,
                msg: format!("{} sentences, fewer than one batch", sentences.len()),
            });
        }
        Ok(Self { sentences, batch_size: config.per_device_train_batch_size.max(2), scale: config.loss_scale, dev })
    }
}

impl Objective for SimCse {
    fn batches_per_epoch(&self) -> usize {
        self.sentences.len() / self.batch_size
    }

    fn step(&self, model: &Trainee, index: usize) -> Result<(LossAndGrads, usize)> {
        let picked: Vec<&Tokenized> = batch_items(self.sentences.len(), self.batch_size, model.seed, index)
            .into_iter()
            .map(|i| &self.sentences[i])
            .collect();
        let items: Vec<&Tokenized> = picked.iter().chain(picked.iter()).copied().collect();
        let n = picked.len();
        pooled_loss(model, &items, index, |emb| {
            loss::simcse_loss(&emb.narrow(0, 0, n)?, &emb.narrow(0, n, n)?, self.scale)
        })
    }

    fn evaluate(&self, model: &Trainee) -> Result<Option<(String, f64)>> {
        self.dev.as_ref().map(|d| Ok(("sts_dev_spearman".to_string(), d.spearman(model)?))).transpose()
    }
}

/// One supervised example, tokenized.
struct Example {
    query: Tokenized,
    positive: Tokenized,
    negative: Option<Tokenized>,
    source: usize,
}

pub struct Supervised {
    examples: Vec<Example>,
    batch_size: usize,
    per_epoch: usize,
    scale: f64,
    dev: Option<StsDev>,
}

/// The supervised files: `dataset_file_path` (or `train_file`) is one JSONL file or a folder of them, each
/// a source; an `instructions.json` beside them (`{"file.jsonl": "instruction"}`) gives per-file query
/// instructions, which a record's own `instruction` overrides.
pub fn supervised_files(path: &Path) -> Result<Vec<(PathBuf, String)>> {
    let (dir, mut files) = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| TrainError::io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        files.sort();
        (path.to_path_buf(), files)
    } else {
        (path.parent().unwrap_or(Path::new(".")).to_path_buf(), vec![path.to_path_buf()])
    };
    if files.is_empty() {
        return Err(TrainError::Data { file: path.into(), line: 1, msg: "no .jsonl files in the folder".into() });
    }
    let table_path = dir.join("instructions.json");
    let table: serde_json::Map<String, serde_json::Value> = if table_path.exists() {
        let text = std::fs::read_to_string(&table_path).map_err(|e| TrainError::io(&table_path, e))?;
        serde_json::from_str(&text).map_err(|e| TrainError::Config { file: table_path.clone(), msg: e.to_string() })?
    } else {
        Default::default()
    };
    Ok(files
        .drain(..)
        .map(|f| {
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let instruction = table.get(&name).and_then(|v| v.as_str()).unwrap_or_default().to_string();
            (f, instruction)
        })
        .collect())
}

impl Supervised {
    pub fn new(config: &TrainConfig, config_path: &Path, model: &Trainee, dev: Option<StsDev>) -> Result<Self> {
        let path = config.data_file(config_path)?;
        let files = supervised_files(path)?;
        let mut records: Vec<SupervisedExample> = data::load_supervised(&files)?;
        if let Some(n) = config.max_train_samples {
            records.truncate(n);
        }
        let examples = records
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let file = &files[r.source].0;
                let tok = |input: Input| {
                    model.encoder.tokenize(&input).map_err(|e| TrainError::Data {
                        file: file.clone(),
                        line: i + 1,
                        msg: e.to_string(),
                    })
                };
                Ok(Example {
                    query: tok(Input::new(r.instruction, r.query))?,
                    positive: tok(Input::text(r.positive))?,
                    negative: r.negative.map(|n| tok(Input::text(n))).transpose()?,
                    source: r.source,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut this = Self {
            examples,
            batch_size: config.per_device_train_batch_size,
            per_epoch: 0,
            scale: config.loss_scale,
            dev,
        };
        this.per_epoch = this.batches(0, 0)?.len();
        if this.per_epoch == 0 {
            return Err(TrainError::Data {
                file: path.into(),
                line: 1,
                msg: format!("no source has a full batch of {}", this.batch_size),
            });
        }
        Ok(this)
    }

    /// The batches of one epoch, each from one source file (as the reference draws them).
    fn batches(&self, seed: u64, epoch: usize) -> Result<Vec<Vec<usize>>> {
        let sources: Vec<SupervisedExample> =
            self.examples.iter().map(|e| SupervisedExample { source: e.source, ..Default::default() }).collect();
        data::source_batches(&sources, self.batch_size, &mut Rng::derived(seed, Purpose::Order, epoch as u64))
    }
}

impl Objective for Supervised {
    fn batches_per_epoch(&self) -> usize {
        self.per_epoch
    }

    fn step(&self, model: &Trainee, index: usize) -> Result<(LossAndGrads, usize)> {
        let batches = self.batches(model.seed, index / self.per_epoch)?;
        let batch: Vec<&Example> = batches[index % self.per_epoch].iter().map(|&i| &self.examples[i]).collect();
        let n = batch.len();
        let with_negatives = batch.iter().all(|e| e.negative.is_some());
        let mut items: Vec<&Tokenized> =
            batch.iter().map(|e| &e.query).chain(batch.iter().map(|e| &e.positive)).collect();
        if with_negatives {
            items.extend(batch.iter().filter_map(|e| e.negative.as_ref()));
        }
        pooled_loss(model, &items, index, |emb| {
            let negatives = if with_negatives { Some(emb.narrow(0, 2 * n, n)?) } else { None };
            loss::contrastive_loss(&emb.narrow(0, 0, n)?, &emb.narrow(0, n, n)?, negatives.as_ref(), self.scale)
        })
    }

    fn evaluate(&self, model: &Trainee) -> Result<Option<(String, f64)>> {
        self.dev.as_ref().map(|d| Ok(("sts_dev_spearman".to_string(), d.spearman(model)?))).transpose()
    }
}
