//! The error type of llm2vec-recipe.

use std::path::PathBuf;

/// Errors from the stages the recipe runs, its files, and its own checks.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error(transparent)]
    Train(#[from] llm2vec_train::TrainError),
    #[error(transparent)]
    Eval(#[from] llm2vec_eval::Error),
    #[error(transparent)]
    Llm2vec(#[from] llm2vec::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error("the loss did not fall in: {0} (the quick profile checks that every stage learns)")]
    LossDidNotFall(String),
}

impl RecipeError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RecipeError::Io { path: path.into(), source }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, msg: impl std::fmt::Display) -> Self {
        RecipeError::Format { path: path.into(), msg: msg.to_string() }
    }
}

/// Result alias for this crate.
pub type Result<T, E = RecipeError> = std::result::Result<T, E>;
