//! The evaluation error type: every failure names the task, file, line or field it concerns.

use std::path::PathBuf;

/// Errors raised while reading task data, encoding, scoring or writing results.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A problem at a given line of a data file (line counted from 1).
    #[error("{path}:{line}: {msg}")]
    Line { path: PathBuf, line: usize, msg: String },
    /// A missing or malformed field of a file as a whole (task.json).
    #[error("{path}: field `{field}`: {msg}")]
    Field { path: PathBuf, field: String, msg: String },
    #[error("unknown task `{name}`; tasks in {data_dir}: {known}")]
    UnknownTask { name: String, data_dir: PathBuf, known: String },
    /// Data that can be read but not evaluated (one class only, no pairs, ...).
    #[error("{task}: {msg}")]
    Task { task: String, msg: String },
    #[error("embedding cache {path}: {msg}")]
    Cache { path: PathBuf, msg: String },
    #[error("invalid option: {0}")]
    Option(String),
    /// From the library: encoding, and files that cannot be read, written or parsed.
    #[error(transparent)]
    Llm2vec(#[from] llm2vec::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        llm2vec::Error::io(path, source).into()
    }

    pub(crate) fn json(path: impl Into<PathBuf>, source: serde_json::Error) -> Self {
        llm2vec::Error::json(path, source).into()
    }

    pub(crate) fn line(path: impl Into<PathBuf>, line: usize, msg: impl Into<String>) -> Self {
        Error::Line { path: path.into(), line, msg: msg.into() }
    }

    pub(crate) fn field(path: impl Into<PathBuf>, field: &str, msg: impl Into<String>) -> Self {
        Error::Field { path: path.into(), field: field.to_string(), msg: msg.into() }
    }

    pub(crate) fn task(task: &str, msg: impl Into<String>) -> Self {
        Error::Task { task: task.to_string(), msg: msg.into() }
    }
}
