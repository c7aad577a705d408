//! llm2vec-eval: the MTEB evaluation protocol, natively, on local data.
//!
//! [`run`] reads the named tasks from a data folder (layout of `shared/data/README.md`), checks all
//! their data, encodes what is needed through an on-disk embedding cache, scores each task as MTEB's
//! evaluator for its type does, and writes one MTEB-shaped result JSON per task plus `summary.md`.
//! The pieces are public for reuse: [`metrics`], [`trec`] (ranking metrics), [`logreg`] (logistic
//! regression on [`lbfgs`]), [`kmeans`], [`rng`] (NumPy's legacy generator), [`cache`].

pub mod cache;
pub mod data;
pub mod embed;
pub mod error;
pub mod evaluate;
pub mod instructions;
pub mod kmeans;
pub mod lbfgs;
pub mod logreg;
pub mod metrics;
pub mod report;
pub mod rng;
pub mod task;
pub mod trec;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

pub use embed::{Embedder, LlmEncoder, TextEncoder};
pub use error::{Error, Result};
pub use report::TaskResult;
pub use task::{TaskSpec, TaskType};

use evaluate::{Context, Protocol, TaskData};
use instructions::AppliesTo;

/// Where the embedding cache lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheDir {
    /// `$XDG_CACHE_HOME/llm2vec/embeddings` or `~/.cache/llm2vec/embeddings`.
    Default,
    At(PathBuf),
    /// Embeddings live for one run only.
    Off,
}

/// Everything `llm2vec eval` needs.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Model (short name, directory, `.gguf` file or hub id) and how to load and run it.
    pub model: String,
    pub encoder: llm2vec::Options,
    /// Further pooling modes computed from the same forward passes and kept in the cache under their own
    /// fingerprints, so that evaluating them later encodes nothing (`eos_token` cannot share passes).
    pub also_poolings: Vec<llm2vec::Pooling>,
    /// Task names (folder names or `task.json` names).
    pub tasks: Vec<String>,
    pub data_dir: PathBuf,
    pub output_dir: PathBuf,
    pub cache: CacheDir,
    /// Instruction per task name, replacing the default ("" for none).
    pub instructions: BTreeMap<String, String>,
    /// False to encode every text without an instruction (as MTEB runs sentence-transformers models).
    pub use_instructions: bool,
    /// Split per task name (`a+b` concatenates), replacing the default.
    pub splits: BTreeMap<String, String>,
    pub seed: u32,
    /// Classification: replace the task's (or MTEB's default 10) number of experiments.
    pub n_experiments: Option<usize>,
    /// Classification: replace the task's (or MTEB's default 8) training samples per label.
    pub samples_per_label: Option<usize>,
    /// Progress lines on stderr.
    pub verbose: bool,
}

impl EvalOptions {
    /// MTEB's defaults for the given model, tasks and folders.
    pub fn new(
        model: impl Into<String>,
        tasks: Vec<String>,
        data_dir: impl Into<PathBuf>,
        output_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            model: model.into(),
            encoder: llm2vec::Options::default(),
            also_poolings: Vec::new(),
            tasks,
            data_dir: data_dir.into(),
            output_dir: output_dir.into(),
            cache: CacheDir::Default,
            instructions: BTreeMap::new(),
            use_instructions: true,
            splits: BTreeMap::new(),
            seed: 42,
            n_experiments: None,
            samples_per_label: None,
            verbose: false,
        }
    }
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Summary {
    pub results: Vec<TaskResult>,
    /// The content of `summary.md`.
    pub markdown: String,
    pub markdown_path: PathBuf,
    /// Distinct texts encoded in this run, and served from the cache, over all tasks.
    pub encoded: usize,
    pub cached: usize,
}

/// Evaluates `opts.model` on `opts.tasks`. Task names and data are checked before the model is loaded.
pub fn run(opts: &EvalOptions) -> Result<Summary> {
    let tasks = prepare(opts)?;
    let encoder = LlmEncoder::load(&opts.model, opts.encoder.clone(), &opts.also_poolings)?;
    evaluate_all(opts, tasks, &encoder)
}

/// Like [`run`] with an encoder already at hand (another backend, or a stand-in in tests).
pub fn run_with_encoder(opts: &EvalOptions, encoder: &dyn TextEncoder) -> Result<Summary> {
    evaluate_all(opts, prepare(opts)?, encoder)
}

/// A task with its data read and checked.
struct Prepared {
    spec: TaskSpec,
    split: String,
    data: TaskData,
    revision: String,
}

fn prepare(opts: &EvalOptions) -> Result<Vec<Prepared>> {
    if opts.tasks.is_empty() {
        return Err(Error::Option("no task named".into()));
    }
    let specs = task::find(&opts.data_dir, &opts.tasks)?;
    specs
        .into_iter()
        .map(|spec| {
            let split = spec.eval_split(&opts.splits);
            let mut sources = data::Sources::default();
            let data = TaskData::load(&spec, &split, &mut sources)?;
            Ok(Prepared { spec, split, data, revision: sources.revision() })
        })
        .collect()
}

fn evaluate_all(opts: &EvalOptions, tasks: Vec<Prepared>, encoder: &dyn TextEncoder) -> Result<Summary> {
    std::fs::create_dir_all(&opts.output_dir).map_err(|e| Error::io(&opts.output_dir, e))?;
    let cache_root = match &opts.cache {
        CacheDir::Default => Some(cache::default_root()),
        CacheDir::At(dir) => Some(dir.clone()),
        CacheDir::Off => None,
    };
    let mut embedder = Embedder::new(encoder, cache_root.as_deref(), opts.verbose)?;
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(evaluate_task(opts, task, &mut embedder)?);
    }
    let names: Vec<String> = results.iter().map(|r| r.name.clone()).collect();
    let earlier = report::earlier_results(&opts.output_dir, &opts.data_dir, encoder.description(), &names)?;
    let markdown = report::markdown(&results, &earlier, encoder.description());
    let markdown_path = opts.output_dir.join("summary.md");
    llm2vec::fs::write_atomic(&markdown_path, markdown.as_bytes())?;
    Ok(Summary { encoded: embedder.encoded, cached: embedder.cached, results, markdown, markdown_path })
}

fn evaluate_task(opts: &EvalOptions, task: Prepared, embedder: &mut Embedder) -> Result<TaskResult> {
    let Prepared { spec, split, data, revision } = task;
    let start = Instant::now();
    let (encoded0, cached0) = (embedder.encoded, embedder.cached);
    let instruction =
        if opts.use_instructions { instructions::resolve(&spec, &opts.instructions) } else { String::new() };
    let protocol = Protocol {
        seed: opts.seed,
        n_experiments: opts.n_experiments.or(spec.n_experiments).unwrap_or(10),
        samples_per_label: opts.samples_per_label.or(spec.samples_per_label).unwrap_or(8),
    };
    let mut ctx = Context { embedder, instruction: instruction.clone(), label: spec.name.clone(), protocol };
    let scores = evaluate::evaluate(&data, &mut ctx)?;
    let main_score = scores.get(&spec.main_score).and_then(serde_json::Value::as_f64).ok_or_else(|| {
        let keys: Vec<&str> = scores.keys().map(String::as_str).filter(|k| *k != "scores_per_experiment").collect();
        Error::field(
            spec.dir.join("task.json"),
            "main_score",
            format!("`{}` is not a score of a {} task; scores: {}", spec.main_score, spec.kind, keys.join(", ")),
        )
    })?;
    let result = TaskResult {
        name: spec.name.clone(),
        kind: spec.kind,
        split,
        main_metric: spec.main_score.clone(),
        main_score,
        scores,
        seconds: start.elapsed().as_secs_f64(),
        encoded: embedder.encoded - encoded0,
        cached: embedder.cached - cached0,
        instruction,
        warnings: data.warnings(),
        dataset_revision: revision,
        languages: if spec.languages.is_empty() { vec!["eng-Latn".to_string()] } else { spec.languages.clone() },
        path: opts.output_dir.join(format!("{}.json", spec.name)),
    };
    let json = result.to_json(embedder.description(), AppliesTo::of(spec.kind).describe());
    report::write_json(&result.path, &json)?;
    if opts.verbose {
        eprintln!("[{}] {} = {:.4} ({:.1} s)", result.name, result.main_metric, result.main_score, result.seconds);
    }
    Ok(result)
}
