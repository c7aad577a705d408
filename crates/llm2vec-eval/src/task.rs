//! Tasks: the folders of a data directory that hold a `task.json` (`name`, `type`, `main_score`,
//! `splits`, optional `eval_split`, `train_split`, `instruction_hint`, `samples_per_label`,
//! `n_experiments`, `languages`), looked up by folder or task name.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The task types MTEB defines that this crate evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskType {
    Sts,
    PairClassification,
    Classification,
    Clustering,
    Retrieval,
    Reranking,
    Summarization,
}

impl TaskType {
    pub const ALL: [TaskType; 7] = [
        TaskType::Sts,
        TaskType::PairClassification,
        TaskType::Classification,
        TaskType::Clustering,
        TaskType::Retrieval,
        TaskType::Reranking,
        TaskType::Summarization,
    ];

    /// The name used in `task.json` and MTEB.
    pub fn name(self) -> &'static str {
        match self {
            TaskType::Sts => "STS",
            TaskType::PairClassification => "PairClassification",
            TaskType::Classification => "Classification",
            TaskType::Clustering => "Clustering",
            TaskType::Retrieval => "Retrieval",
            TaskType::Reranking => "Reranking",
            TaskType::Summarization => "Summarization",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A task as described by its `task.json`.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub name: String,
    pub kind: TaskType,
    pub main_score: String,
    pub dir: PathBuf,
    pub splits: Vec<String>,
    pub eval_split: Option<String>,
    pub train_split: Option<String>,
    pub instruction_hint: Option<String>,
    pub samples_per_label: Option<usize>,
    pub n_experiments: Option<usize>,
    pub languages: Vec<String>,
}

/// Split choices MTEB makes that differ from the task's default: its SICK-R scores all 9,927 pairs.
const MTEB_SPLITS: &[(&str, &str)] = &[("SICK-R", "train+dev+test")];

impl TaskSpec {
    /// Reads `dir/task.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("task.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let json: Value = serde_json::from_str(&text).map_err(|source| Error::json(&path, source))?;
        let obj = json.as_object().ok_or_else(|| Error::field(&path, "(root)", "expected a JSON object"))?;
        let folder = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let kind_name = required_str(obj, &path, "type")?;
        let kind = TaskType::parse(&kind_name).ok_or_else(|| {
            let known: Vec<&str> = TaskType::ALL.iter().map(|t| t.name()).collect();
            Error::field(&path, "type", format!("unknown type `{kind_name}`; known: {}", known.join(", ")))
        })?;
        Ok(Self {
            name: optional_str(obj, &path, "name")?.unwrap_or(folder),
            kind,
            main_score: required_str(obj, &path, "main_score")?,
            dir: dir.to_path_buf(),
            splits: string_list(obj, &path, "splits")?,
            eval_split: optional_str(obj, &path, "eval_split")?,
            train_split: optional_str(obj, &path, "train_split")?,
            instruction_hint: optional_str(obj, &path, "instruction_hint")?,
            samples_per_label: optional_count(obj, &path, "samples_per_label")?,
            n_experiments: optional_count(obj, &path, "n_experiments")?,
            languages: string_list(obj, &path, "languages")?,
        })
    }

    /// The split to score: the override, else MTEB's choice for this task, else `eval_split`, else `test`.
    /// `a+b` concatenates splits.
    pub fn eval_split(&self, overrides: &BTreeMap<String, String>) -> String {
        overrides
            .get(&self.name)
            .cloned()
            .or_else(|| MTEB_SPLITS.iter().find(|(n, _)| *n == self.name).map(|(_, s)| s.to_string()))
            .or_else(|| self.eval_split.clone())
            .unwrap_or_else(|| "test".to_string())
    }

    pub fn train_split(&self) -> String {
        self.train_split.clone().unwrap_or_else(|| "train".to_string())
    }
}

fn required_str(obj: &Map<String, Value>, path: &Path, field: &str) -> Result<String> {
    optional_str(obj, path, field)?.ok_or_else(|| Error::field(path, field, "missing"))
}

fn optional_str(obj: &Map<String, Value>, path: &Path, field: &str) -> Result<Option<String>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(Error::field(path, field, "empty string")),
        Some(_) => Err(Error::field(path, field, "expected a string")),
    }
}

fn optional_count(obj: &Map<String, Value>, path: &Path, field: &str) -> Result<Option<usize>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Ok(Some(n as usize)),
            _ => Err(Error::field(path, field, "expected a positive integer")),
        },
    }
}

fn string_list(obj: &Map<String, Value>, path: &Path, field: &str) -> Result<Vec<String>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| Error::field(path, field, "expected a list of strings"))
            })
            .collect(),
        Some(_) => Err(Error::field(path, field, "expected a list of strings")),
    }
}

/// The task folders of `data_dir` (those with a `task.json`), by folder name.
pub fn discover(data_dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let entries = std::fs::read_dir(data_dir).map_err(|e| Error::io(data_dir, e))?;
    let mut tasks = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(data_dir, e))?;
        let dir = entry.path();
        if dir.join("task.json").is_file() {
            tasks.insert(entry.file_name().to_string_lossy().into_owned(), dir);
        }
    }
    Ok(tasks)
}

/// Finds each named task (folder name or `task.json` name) in `data_dir`; an unknown name is an error
/// listing the tasks there.
pub fn find(data_dir: &Path, names: &[String]) -> Result<Vec<TaskSpec>> {
    let known = discover(data_dir)?;
    let mut specs = Vec::with_capacity(names.len());
    for name in names {
        let spec = match known.get(name) {
            Some(dir) => TaskSpec::load(dir)?,
            None => find_by_task_name(&known, name).ok_or_else(|| Error::UnknownTask {
                name: name.clone(),
                data_dir: data_dir.to_path_buf(),
                known: if known.is_empty() {
                    "none (no folder with a task.json)".to_string()
                } else {
                    known.keys().cloned().collect::<Vec<_>>().join(", ")
                },
            })?,
        };
        specs.push(spec);
    }
    Ok(specs)
}

/// A task whose `task.json` names it `name` (folders whose task.json does not read are skipped here;
/// asking for them by folder name reports the problem).
fn find_by_task_name(known: &BTreeMap<String, PathBuf>, name: &str) -> Option<TaskSpec> {
    known.values().filter_map(|dir| TaskSpec::load(dir).ok()).find(|spec| spec.name == name)
}
