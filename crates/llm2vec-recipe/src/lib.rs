//! The LLM2Vec recipe end to end on one model: evaluate the untouched model (causal and bidirectional),
//! train MNTP, then SimCSE and supervised contrastive learning on top of the MNTP model, evaluate each
//! stage, and write the results page. A finished stage leaves `stage.json` in its folder and is skipped
//! when the recipe runs again; an unfinished training resumes from its latest checkpoint.

pub mod error;
pub mod profile;
pub mod report;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use llm2vec::{AttentionMode, DType, Device, Options, Pooling};
use llm2vec_train::config::Stage;
use llm2vec_train::trainer::{self, RunOptions};
use serde::{Deserialize, Serialize};

pub use error::{RecipeError, Result};
pub use profile::Profile;

/// Everything `llm2vec recipe` needs.
#[derive(Debug, Clone)]
pub struct RecipeOptions {
    pub profile: Profile,
    /// Folder of the evaluation tasks and of `train/` (the layout of `../shared/data`).
    pub data_dir: PathBuf,
    /// Folder of the reference-format training configs: `<configs>/{mntp,simcse,supervised}/<config_name>`.
    pub configs: PathBuf,
    pub config_name: String,
    /// Work folder: one sub-folder per stage (adapters, checkpoints, evaluations, `stage.json`).
    pub output_dir: PathBuf,
    /// The results page (markdown); its pictures go to a folder named after it.
    pub results: PathBuf,
    /// Redo every stage (training from scratch).
    pub restart: bool,
    /// Device for training and evaluation.
    pub device: Device,
    /// Training dtype (f32 or bf16, see `RunOptions::dtype`); evaluation runs in f32.
    pub dtype: DType,
    /// Where evaluations keep their embeddings.
    pub cache: llm2vec_eval::CacheDir,
    /// Set by a Ctrl-C handler: the running training saves a checkpoint and stops.
    pub stop: Arc<AtomicBool>,
    pub progress: bool,
    /// The command line, for the results page.
    pub command: String,
}

/// One row of the results table: an evaluation setting, and the training stage that precedes it, if any.
#[derive(Debug, Clone, Copy)]
struct Row {
    slug: &'static str,
    title: &'static str,
    attention: AttentionMode,
    pooling: Pooling,
    train: Option<Stage>,
    /// Earlier rows whose adapters this one trains on top of (merged into the base).
    on_top_of: Option<&'static str>,
}

const fn baseline(slug: &'static str, title: &'static str, attention: AttentionMode, pooling: Pooling) -> Row {
    Row { slug, title, attention, pooling, train: None, on_top_of: None }
}

const fn trained(slug: &'static str, title: &'static str, train: Stage, on_top_of: Option<&'static str>) -> Row {
    Row { slug, title, attention: AttentionMode::Bidirectional, pooling: Pooling::Mean, train: Some(train), on_top_of }
}

const ROWS: [Row; 7] = [
    baseline("causal-mean", "causal, mean", AttentionMode::Causal, Pooling::Mean),
    baseline("causal-weighted-mean", "causal, weighted mean", AttentionMode::Causal, Pooling::WeightedMean),
    baseline("causal-eos", "causal, eos token", AttentionMode::Causal, Pooling::EosToken),
    baseline("bidirectional-mean", "bidirectional, mean (untrained)", AttentionMode::Bidirectional, Pooling::Mean),
    trained("mntp", "bidirectional + MNTP", Stage::Mntp, None),
    trained("mntp-simcse", "MNTP + SimCSE (unsupervised)", Stage::SimCse, Some("mntp")),
    trained("mntp-supervised", "MNTP + supervised", Stage::Supervised, Some("mntp")),
];

/// What a finished stage recorded (`stage.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    pub slug: String,
    pub title: String,
    pub profile: String,
    pub scores: Vec<TaskScore>,
    pub eval_seconds: f64,
    /// The command that reproduces the evaluation.
    pub eval_command: String,
    pub training: Option<TrainingRecord>,
}

/// One task's main score.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskScore {
    pub task: String,
    pub kind: String,
    pub metric: String,
    pub score: f64,
}

/// What a training stage cost and how its loss went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingRecord {
    pub steps: usize,
    pub batch_size: usize,
    pub max_seq_length: usize,
    pub learning_rate: f64,
    pub tokens: usize,
    pub seconds: f64,
    pub losses: Vec<f64>,
    /// Evaluations during training (MNTP accuracy, STS dev Spearman), as (step, metric, value).
    pub evals: Vec<(usize, String, f64)>,
    /// The command that reproduces the training, and the adapter it wrote.
    pub command: String,
    pub adapter: PathBuf,
    pub loss_svg: PathBuf,
}

/// Runs every stage not yet finished, writing the results page after each (the rows still to run named
/// on it), so an interrupted run leaves a page of what it finished. Returns the stages' records.
pub fn run(opts: &RecipeOptions) -> Result<Vec<StageRecord>> {
    let started = Instant::now();
    std::fs::create_dir_all(&opts.output_dir).map_err(|e| RecipeError::io(&opts.output_dir, e))?;
    let (eval_data, sts_dev) = profile::eval_data(opts.profile, &opts.data_dir, &opts.output_dir)?;
    let model = base_model(opts)?;
    let mut records: Vec<StageRecord> = Vec::new();
    for (i, row) in ROWS.iter().enumerate() {
        let record = stage(opts, *row, &records, &model, &eval_data, &sts_dev)?;
        records.push(record);
        let pending: Vec<&str> = ROWS[i + 1..].iter().map(|r| r.title).collect();
        report::write(opts, &records, &pending, started.elapsed().as_secs_f64())?;
    }
    if opts.profile == Profile::Quick {
        report::check_losses_fall(&records)?;
    }
    Ok(records)
}

/// One row: read from its `stage.json` if an earlier run finished it, else trained (if it has a training
/// stage), evaluated and recorded.
fn stage(
    opts: &RecipeOptions,
    row: Row,
    records: &[StageRecord],
    model: &str,
    eval_data: &Path,
    sts_dev: &Path,
) -> Result<StageRecord> {
    let dir = opts.output_dir.join(row.slug);
    let record_path = dir.join("stage.json");
    if !opts.restart && record_path.exists() {
        let record = read_record(&record_path)?;
        if record.profile != opts.profile.name() {
            return Err(RecipeError::format(
                &record_path,
                format!("a stage of the {} profile; use another output folder, or --restart", record.profile),
            ));
        }
        note(opts, &format!("{}: finished earlier ({})", row.slug, record_path.display()));
        return Ok(record);
    }
    let base: Vec<PathBuf> = match row.on_top_of {
        Some(slug) => vec![adapter_of(records, slug)?],
        None => Vec::new(),
    };
    let training = match row.train {
        Some(stage) => Some(train(opts, row, stage, &dir, base.first(), sts_dev)?),
        None => None,
    };
    let mut adapters = base;
    adapters.extend(training.as_ref().map(|t| t.adapter.clone()));
    let (scores, eval_seconds, eval_command) = evaluate(opts, row, model, &adapters, eval_data, &dir)?;
    let record = StageRecord {
        slug: row.slug.into(),
        title: row.title.into(),
        profile: opts.profile.name().into(),
        scores,
        eval_seconds,
        eval_command,
        training,
    };
    let json = serde_json::to_string_pretty(&record).map_err(|e| RecipeError::format(&record_path, e))?;
    llm2vec::fs::write_atomic(&record_path, json.as_bytes())?;
    Ok(record)
}

/// The base model: the MNTP config's `model_name_or_path`.
fn base_model(opts: &RecipeOptions) -> Result<String> {
    let path = config_path(opts, Stage::Mntp);
    let loaded = llm2vec_train::config::load(&path)?;
    Ok(loaded.config.model(&path)?.to_string())
}

fn config_path(opts: &RecipeOptions, stage: Stage) -> PathBuf {
    opts.configs.join(trainer::stage_name(stage)).join(&opts.config_name)
}

fn adapter_of(records: &[StageRecord], slug: &str) -> Result<PathBuf> {
    records
        .iter()
        .find(|r| r.slug == slug)
        .and_then(|r| r.training.as_ref())
        .map(|t| t.adapter.clone())
        .ok_or_else(|| RecipeError::format(slug, "the stage this one builds on has no adapter"))
}

fn read_record(path: &Path) -> Result<StageRecord> {
    let text = std::fs::read_to_string(path).map_err(|e| RecipeError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| RecipeError::format(path, e))
}

/// Trains one stage from its reference config with the profile's settings; the effective config is
/// written to `<dir>/config.json` so that `llm2vec train` can rerun it.
fn train(
    opts: &RecipeOptions,
    row: Row,
    stage: Stage,
    dir: &Path,
    on_top_of: Option<&PathBuf>,
    sts_dev: &Path,
) -> Result<TrainingRecord> {
    let source = config_path(opts, stage);
    let loaded = llm2vec_train::config::load(&source)?;
    let mut config = loaded.config;
    let settings = opts.profile.training(stage);
    settings.apply(stage, opts.data_dir.join(opts.profile.train_data(stage)), &mut config);
    config.output_dir = Some(dir.join("adapter"));
    config.peft_model_name_or_path = on_top_of.map(|p| p.to_string_lossy().into_owned());
    let config_file = dir.join("config.json");
    std::fs::create_dir_all(dir).map_err(|e| RecipeError::io(dir, e))?;
    let json = serde_json::to_string_pretty(&config).map_err(|e| RecipeError::format(&config_file, e))?;
    llm2vec::fs::write_atomic(&config_file, json.as_bytes())?;
    note(opts, &format!("{}: training ({} steps) from {}", row.slug, settings.steps, config_file.display()));
    let run_opts = RunOptions {
        restart: opts.restart,
        sts_dev: Some(sts_dev.to_path_buf()),
        stop: opts.stop.clone(),
        progress: opts.progress,
        device: opts.device.clone(),
        dtype: opts.dtype,
    };
    let outcome = trainer::run(stage, &config, &config_file, &run_opts)?;
    let state = &outcome.state;
    let sts = if stage == Stage::Mntp { String::new() } else { format!(" --sts-dev {}", sts_dev.display()) };
    Ok(TrainingRecord {
        steps: state.step,
        batch_size: settings.batch_size,
        max_seq_length: settings.max_seq_length,
        learning_rate: settings.learning_rate,
        tokens: state.tokens(),
        seconds: state.elapsed_seconds(),
        losses: state.steps.iter().map(|s| s.loss).collect(),
        evals: state.evals.iter().map(|e| (e.step, e.metric.clone(), e.value)).collect(),
        command: format!("llm2vec train {} {}{sts}", trainer::stage_name(stage), config_file.display()),
        loss_svg: outcome.output_dir.join("loss.svg"),
        adapter: outcome.output_dir,
    })
}

/// Evaluates one row's setting on the profile's tasks; returns the scores, the time and the command.
fn evaluate(
    opts: &RecipeOptions,
    row: Row,
    model: &str,
    adapters: &[PathBuf],
    data_dir: &Path,
    dir: &Path,
) -> Result<(Vec<TaskScore>, f64, String)> {
    let tasks: Vec<String> = opts.profile.tasks().iter().map(ToString::to_string).collect();
    let output = dir.join("eval");
    let mut eval = llm2vec_eval::EvalOptions::new(model, tasks.clone(), data_dir, &output);
    eval.also_poolings = shared_poolings(row);
    eval.encoder = Options {
        adapters: adapters.to_vec(),
        pooling: Some(row.pooling),
        attention: row.attention,
        device: opts.device.clone(),
        ..Options::default()
    };
    eval.cache = opts.cache.clone();
    eval.verbose = opts.progress;
    note(opts, &format!("{}: evaluating on {}", row.slug, tasks.join(", ")));
    let started = Instant::now();
    let summary = llm2vec_eval::run(&eval)?;
    let scores = summary
        .results
        .iter()
        .map(|r| TaskScore {
            task: r.name.clone(),
            kind: r.kind.to_string(),
            metric: r.main_metric.clone(),
            score: r.main_score,
        })
        .collect();
    let attention = match row.attention {
        AttentionMode::Causal => "causal",
        AttentionMode::Bidirectional => "bidirectional",
    };
    let adapter_args: String = adapters.iter().map(|a| format!(" --adapter {}", a.display())).collect();
    let also: Vec<&str> = eval.also_poolings.iter().map(|p| p.name()).collect();
    let also_arg = if also.is_empty() { String::new() } else { format!(" --also-pooling {}", also.join(",")) };
    let command = format!(
        "llm2vec eval --model {model}{adapter_args} --attention {attention} --pooling {}{also_arg} --tasks {} --data-dir {} --output {}",
        row.pooling.name(),
        tasks.join(","),
        data_dir.display(),
        output.display()
    );
    Ok((scores, started.elapsed().as_secs_f64(), command))
}

/// The pooling modes of the other untrained rows that can share this row's forward passes (same
/// attention, same tokenization): their evaluations then come from the cache.
fn shared_poolings(row: Row) -> Vec<Pooling> {
    let eos = |p: Pooling| p == Pooling::EosToken;
    if row.train.is_some() {
        return Vec::new();
    }
    ROWS.iter()
        .filter(|r| r.train.is_none() && r.attention == row.attention && r.pooling != row.pooling)
        .filter(|r| eos(r.pooling) == eos(row.pooling))
        .map(|r| r.pooling)
        .collect()
}

fn note(opts: &RecipeOptions, msg: &str) {
    if opts.progress {
        eprintln!("[recipe] {msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrained_rows_share_passes_where_tokenization_allows() {
        let shared = |slug: &str| shared_poolings(*ROWS.iter().find(|r| r.slug == slug).unwrap());
        assert_eq!(shared("causal-mean"), vec![Pooling::WeightedMean]);
        assert_eq!(shared("causal-weighted-mean"), vec![Pooling::Mean]);
        assert!(
            shared("causal-eos").is_empty() && shared("bidirectional-mean").is_empty() && shared("mntp").is_empty()
        );
    }
}
