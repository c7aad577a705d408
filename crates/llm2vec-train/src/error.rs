//! The error type of llm2vec-train: every failure names the file, field or line at fault.

use std::path::PathBuf;

/// Errors from configuration, data loading, losses and adapters.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{file}: unknown field `{field}`{}", closest.as_ref().map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default())]
    UnknownField { file: PathBuf, field: String, closest: Option<String> },
    #[error("{file}: missing required field `{field}`")]
    MissingField { file: PathBuf, field: String },
    #[error("{file}: {msg}")]
    Config { file: PathBuf, msg: String },
    #[error("{file}:{line}: {msg}")]
    Data { file: PathBuf, line: usize, msg: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("adapter: {0}")]
    Adapter(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("the loss is {loss} at step {step}: training stopped; {}", last_good.as_ref().map_or_else(|| "no checkpoint was saved yet".into(), |p| format!("the last good checkpoint is {}", p.display())))]
    NonFiniteLoss { step: usize, loss: f64, last_good: Option<PathBuf> },
    #[error("interrupted after step {step}; saved {}; to resume, run the same command again{}", checkpoint.display(), if *restarted { " without --restart" } else { "" })]
    Interrupted {
        step: usize,
        checkpoint: PathBuf,
        /// The run was started with `--restart` (which must not be repeated to resume it).
        restarted: bool,
    },
    #[error("{path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error("{} was trained with other settings: {}; resuming would mix two runs: put the settings back to resume, or start over with --restart (it moves the old run to {}/{})", checkpoint.display(), changes.join("; "), checkpoint.parent().unwrap_or(checkpoint).display(), crate::checkpoint::PREVIOUS_RUN)]
    OtherRun { checkpoint: PathBuf, changes: Vec<String> },
    #[error("no usable checkpoint in {}: {}; start over with --restart (it moves them to {}/{})", output_dir.display(), problems.join("; "), output_dir.display(), crate::checkpoint::PREVIOUS_RUN)]
    NoUsableCheckpoint { output_dir: PathBuf, problems: Vec<String> },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Llm2vec(#[from] llm2vec::Error),
}

/// Result alias for this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

impl TrainError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }
}
