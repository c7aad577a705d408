//! Task evaluation: load a task's data (all tasks are read and checked before anything is encoded),
//! then score it by its type, as MTEB's evaluator for that type does.

mod classification;
mod clustering;
mod pairs;
mod ranking;
mod retrieval;
mod sts;

use std::collections::HashSet;

use llm2vec::Input;
use serde_json::{Map, Value};

use crate::data::{self, Beir, Labeled, Pairs, RerankSample, Sources, SummarySample};
use crate::embed::{Embedder, Vectors};
use crate::error::{Error, Result};
use crate::task::{TaskSpec, TaskType};

pub use classification::undersample;

/// A task's data, read and checked.
pub enum TaskData {
    Sts(Pairs<f64>),
    PairClassification(Pairs<bool>),
    Classification { train: Labeled, test: Labeled },
    Clustering(Vec<Labeled>),
    Retrieval(Beir),
    Reranking(Vec<RerankSample>),
    Summarization(Vec<SummarySample>),
}

impl TaskData {
    /// Reads the data of `spec` for `split` (and the train split for classification).
    pub fn load(spec: &TaskSpec, split: &str, sources: &mut Sources) -> Result<Self> {
        Ok(match spec.kind {
            TaskType::Sts => TaskData::Sts(data::sts(spec, split, sources)?),
            TaskType::PairClassification => {
                let pairs = data::pair_classification(spec, split, sources)?;
                if pairs.targets.iter().collect::<HashSet<_>>().len() < 2 {
                    return Err(Error::task(&spec.name, format!("split `{split}`: labels with one class only")));
                }
                TaskData::PairClassification(pairs)
            }
            TaskType::Classification => {
                let train_split = spec.train_split();
                let train = data::classification(spec, &train_split, sources)?;
                if train.labels.iter().collect::<HashSet<_>>().len() < 2 {
                    return Err(Error::task(&spec.name, format!("split `{train_split}`: labels with one class only")));
                }
                TaskData::Classification { train, test: data::classification(spec, split, sources)? }
            }
            TaskType::Clustering => TaskData::Clustering(data::clustering(spec, split, sources)?),
            TaskType::Retrieval => TaskData::Retrieval(data::retrieval(spec, split, sources)?),
            TaskType::Reranking => TaskData::Reranking(data::reranking(spec, split, sources)?),
            TaskType::Summarization => TaskData::Summarization(data::summarization(spec, split, sources)?),
        })
    }

    /// What a reader should know about the data (judgements of unknown documents, ...).
    pub fn warnings(&self) -> Vec<String> {
        let TaskData::Retrieval(beir) = self else { return Vec::new() };
        let mut out = Vec::new();
        if beir.unknown_doc_judgements > 0 {
            out.push(format!(
                "{} judgements in the qrels name documents that are not in corpus.jsonl; they are kept (they count as relevant and never retrieved, as in pytrec_eval)",
                beir.unknown_doc_judgements
            ));
        }
        if !beir.missing_queries.is_empty() {
            let shown: Vec<&str> = beir.missing_queries.iter().take(5).map(String::as_str).collect();
            out.push(format!(
                "{} judged queries have no text in queries.jsonl and are left out (e.g. {})",
                beir.missing_queries.len(),
                shown.join(", ")
            ));
        }
        out
    }
}

/// The random parts of the protocol: MTEB's seed (42), and for classification its 10 experiments of
/// 8 training samples per label (unless the task says otherwise).
#[derive(Debug, Clone, Copy)]
pub struct Protocol {
    pub seed: u32,
    pub n_experiments: usize,
    pub samples_per_label: usize,
}

/// What an evaluation needs besides the data.
pub struct Context<'e, 'a> {
    pub embedder: &'e mut Embedder<'a>,
    pub instruction: String,
    /// Label for progress lines.
    pub label: String,
    pub protocol: Protocol,
}

impl Context<'_, '_> {
    /// Embeds texts, all with the task's instruction (`instructed`) or none.
    fn embed<'t>(&mut self, texts: impl IntoIterator<Item = &'t String>, instructed: bool) -> Result<Vectors> {
        let instruction = if instructed { self.instruction.as_str() } else { "" };
        let inputs: Vec<Input> = texts.into_iter().map(|t| Input::new(instruction, t.as_str())).collect();
        self.embedder.embed(&self.label, &inputs)
    }
}

/// Scores of one task: MTEB's keys for its type.
pub type Scores = Map<String, Value>;

pub fn evaluate(data: &TaskData, ctx: &mut Context) -> Result<Scores> {
    match data {
        TaskData::Sts(pairs) => sts::evaluate(pairs, ctx),
        TaskData::PairClassification(pairs) => pairs::evaluate(pairs, ctx),
        TaskData::Classification { train, test } => classification::evaluate(train, test, ctx),
        TaskData::Clustering(sets) => clustering::evaluate(sets, ctx),
        TaskData::Retrieval(beir) => retrieval::evaluate(beir, ctx),
        TaskData::Reranking(samples) => ranking::reranking(samples, ctx),
        TaskData::Summarization(samples) => ranking::summarization(samples, ctx),
    }
}

/// A JSON number (NaN becomes null).
fn num(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        f64::NAN
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}
