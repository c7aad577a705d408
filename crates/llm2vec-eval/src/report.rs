//! Outputs: one result JSON per task in the shape MTEB writes (`task_name`, `dataset_revision`,
//! `mteb_version`, `evaluation_time`, `kg_co2_emissions`, `scores: {split: [{..., main_score,
//! hf_subset, languages}]}`) plus the model, settings, instruction and cache counts used; and a
//! markdown summary with per-type averages and the overall average over data sets, as MTEB averages.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::task::TaskType;

/// The result of one task.
#[derive(Debug, Clone)]
pub struct TaskResult {
    pub name: String,
    pub kind: TaskType,
    pub split: String,
    pub main_metric: String,
    pub main_score: f64,
    /// All scores, MTEB's keys for the type (`main_score`, `hf_subset` and `languages` added in the file).
    pub scores: serde_json::Map<String, Value>,
    pub seconds: f64,
    /// Distinct texts encoded for this task, and served from the cache.
    pub encoded: usize,
    pub cached: usize,
    pub instruction: String,
    pub warnings: Vec<String>,
    pub dataset_revision: String,
    pub languages: Vec<String>,
    pub path: PathBuf,
}

impl TaskResult {
    /// The file's JSON.
    pub fn to_json(&self, model: &Value, instruction_applies_to: &str) -> Value {
        let mut entry = self.scores.clone();
        entry.insert("main_score".into(), json!(self.main_score));
        entry.insert("hf_subset".into(), json!("default"));
        entry.insert("languages".into(), json!(self.languages));
        json!({
            "dataset_revision": self.dataset_revision,
            "task_name": self.name,
            "mteb_version": concat!("llm2vec-eval ", env!("CARGO_PKG_VERSION")),
            "scores": { self.split.clone(): [Value::Object(entry)] },
            "evaluation_time": self.seconds,
            "kg_co2_emissions": Value::Null,
            "model": model,
            "instruction": { "text": self.instruction, "applies_to": instruction_applies_to },
            "encoding": { "encoded": self.encoded, "from_cache": self.cached },
            "warnings": self.warnings,
        })
    }
}

/// Writes `value` to `path` (pretty JSON), atomically.
pub fn write_json(path: &Path, value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| Error::json(path, source))?;
    Ok(llm2vec::fs::write_atomic(path, text.as_bytes())?)
}

/// Score as MTEB tables show it: x100, two decimals.
fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.2}", v * 100.0)
    } else {
        "n/a".into()
    }
}

fn average(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Results from earlier runs into the same folder, for the summary.
#[derive(Debug, Clone)]
pub struct Earlier {
    /// Made with the same model and settings, for tasks the current run did not evaluate.
    pub results: Vec<TaskResult>,
    /// Result files made otherwise (or unreadable), left out.
    pub left_out: usize,
}

/// The markdown summary: one row per task (this run's, then the earlier ones), then the mean main score
/// per type and over all data sets.
pub fn markdown(current: &[TaskResult], earlier: &Earlier, model: &Value) -> String {
    let results: Vec<&TaskResult> = current.iter().chain(&earlier.results).collect();
    let mut out = String::new();
    let name = model.get("name").and_then(Value::as_str).unwrap_or("?");
    let _ = writeln!(out, "# Evaluation: {name}\n");
    if let Some(settings) = model.get("settings") {
        let _ = writeln!(out, "Settings: `{settings}`\n");
    }
    out.push_str("| Task | Type | Split | Metric | Score | Encoded | From cache | Time (s) |\n");
    out.push_str("|---|---|---|---|---:|---:|---:|---:|\n");
    for r in &results {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} |",
            r.name,
            r.kind,
            r.split,
            r.main_metric,
            pct(r.main_score),
            r.encoded,
            r.cached,
            r.seconds
        );
    }
    let mut by_type: BTreeMap<TaskType, Vec<f64>> = BTreeMap::new();
    results.iter().for_each(|r| by_type.entry(r.kind).or_default().push(r.main_score));
    out.push_str("\n| Average | Data sets | Score |\n|---|---:|---:|\n");
    for (kind, scores) in &by_type {
        let _ = writeln!(out, "| {kind} | {} | {} |", scores.len(), pct(average(scores)));
    }
    let all: Vec<f64> = results.iter().map(|r| r.main_score).collect();
    if !all.is_empty() {
        let _ = writeln!(out, "| **Overall** (mean over data sets) | {} | **{}** |", all.len(), pct(average(&all)));
    }
    if !earlier.results.is_empty() {
        let names: Vec<&str> = earlier.results.iter().map(|r| r.name.as_str()).collect();
        let _ = writeln!(
            out,
            "\nFrom earlier runs into this folder with the same model and settings: {}.",
            names.join(", ")
        );
    }
    if earlier.left_out > 0 {
        let _ = writeln!(
            out,
            "\nLeft out: {} result file(s) in this folder made with another model or settings.",
            earlier.left_out
        );
    }
    let notes: Vec<String> =
        current.iter().flat_map(|r| r.warnings.iter().map(move |w| format!("- {}: {w}", r.name))).collect();
    if !notes.is_empty() {
        let _ = writeln!(out, "\nNotes:\n\n{}", notes.join("\n"));
    }
    out
}

/// Results that earlier runs left in `dir` for tasks other than `skip`: those made with `model` (the same
/// model and settings) come back for the summary, read from their files; the rest are counted. A task
/// is recognised by its name among the tasks of `data_dir`; files that do not read as results count as
/// made otherwise.
pub fn earlier_results(dir: &Path, data_dir: &Path, model: &Value, skip: &[String]) -> Result<Earlier> {
    let tasks = crate::task::discover(data_dir)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let (mut same, mut other) = (Vec::new(), 0);
    for path in files {
        let Some(file) = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok())
        else {
            other += 1;
            continue;
        };
        let name = file["task_name"].as_str().unwrap_or_default();
        if skip.iter().any(|s| s == name) {
            continue;
        }
        let Some(spec) = tasks.get(name).and_then(|dir| crate::task::TaskSpec::load(dir).ok()) else {
            other += 1;
            continue;
        };
        match read_result(&file, &path, spec) {
            Some(result) if &file["model"] == model => same.push(result),
            _ => other += 1,
        }
    }
    Ok(Earlier { results: same, left_out: other })
}

/// The fields of a result file that the summary shows (the type and metric names come from the task).
fn read_result(file: &Value, path: &Path, spec: crate::task::TaskSpec) -> Option<TaskResult> {
    let (split, entries) = file["scores"].as_object()?.iter().next()?;
    Some(TaskResult {
        name: spec.name,
        kind: spec.kind,
        split: split.clone(),
        main_metric: spec.main_score,
        main_score: entries.as_array()?.first()?["main_score"].as_f64()?,
        scores: serde_json::Map::new(),
        seconds: file["evaluation_time"].as_f64().unwrap_or(f64::NAN),
        encoded: file["encoding"]["encoded"].as_u64().unwrap_or(0) as usize,
        cached: file["encoding"]["from_cache"].as_u64().unwrap_or(0) as usize,
        instruction: String::new(),
        warnings: Vec::new(),
        dataset_revision: file["dataset_revision"].as_str().unwrap_or_default().to_string(),
        languages: Vec::new(),
        path: path.to_path_buf(),
    })
}
