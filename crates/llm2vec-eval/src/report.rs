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

/// Writes `value` to `path` (pretty JSON), through a temporary file.
pub fn write_json(path: &Path, value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| Error::Json { path: path.to_path_buf(), source })?;
    write_text(path, &text)
}

pub fn write_text(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
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

/// The markdown summary: one row per task, then the mean main score per type and over all data sets.
pub fn markdown(results: &[TaskResult], model: &Value) -> String {
    let mut out = String::new();
    let name = model.get("name").and_then(Value::as_str).unwrap_or("?");
    let _ = writeln!(out, "# Evaluation: {name}\n");
    if let Some(settings) = model.get("settings") {
        let _ = writeln!(out, "Settings: `{settings}`\n");
    }
    out.push_str("| Task | Type | Split | Metric | Score | Encoded | From cache | Time (s) |\n");
    out.push_str("|---|---|---|---|---:|---:|---:|---:|\n");
    for r in results {
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
    let notes: Vec<String> = results.iter().flat_map(|r| r.warnings.iter().map(move |w| format!("- {}: {w}", r.name))).collect();
    if !notes.is_empty() {
        let _ = writeln!(out, "\nNotes:\n\n{}", notes.join("\n"));
    }
    out
}
