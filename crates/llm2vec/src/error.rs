//! The library's error type: every failure says what went wrong and where (file, field, line).

use std::path::PathBuf;

/// Errors raised while loading models, tokenizing, encoding or reading inputs (more kinds may come).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file that cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A file that is not valid JSON, or whose JSON does not have the expected fields and types.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What the parser said, with the line and column where it has them.
        #[source]
        source: serde_json::Error,
    },
    /// A file whose contents break its format (a GGUF or safetensors container, a tokenizer).
    #[error("{path}: {msg}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where in the file.
        msg: String,
    },
    /// A config field with a value that cannot be used.
    #[error("{path}: field `{field}`: {msg}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What is wrong with its value.
        msg: String,
    },
    /// A model of an architecture that cannot be built.
    #[error("unsupported architecture `{found}` in {path}; supported: {supported}")]
    UnsupportedArchitecture {
        /// The config file.
        path: PathBuf,
        /// The architecture it names.
        found: String,
        /// Those that can be built, comma-separated.
        supported: String,
    },
    /// A weight tensor that is missing or does not fit the model.
    #[error("{path}: tensor `{name}`: {msg}")]
    Weight {
        /// The weights file (or folder).
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A model name that names no model here (nor on the hub).
    #[error("model not found: {0}")]
    ModelNotFound(String),
    /// A tokenizer that fails to load or to tokenize.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// An environment variable with a value that cannot be used.
    #[error("environment variable {name}: {msg}")]
    Env {
        /// The variable.
        name: &'static str,
        /// What is wrong with its value.
        msg: String,
    },
    /// Something the caller passed (a text, an option's value) that cannot be used.
    #[error("invalid input: {0}")]
    Input(String),
    /// Options that cannot work together or on this model.
    #[error("option `{option}`: {msg}")]
    Option {
        /// The option's name.
        option: &'static str,
        /// Why it cannot be used.
        msg: String,
    },
    /// Input `input` (counted from 0) got an embedding with NaN or infinite values.
    #[error("input {}: the embedding has NaN or infinite values (the model's activations overflow: corrupt weights, or too narrow a dtype)", .input + 1)]
    NonFinite {
        /// The input, counted from 0.
        input: usize,
    },
    /// The work stopped at the caller's request (what a progress callback returns to cancel an encode).
    #[error("interrupted")]
    Interrupted,
    /// A failure inside the library's computation (a tensor operation), not caused by the caller's input.
    #[error(transparent)]
    Internal(InternalError),
}

/// What an [`Error::Internal`] says: the message and causes of the failure that raised it.
#[derive(Debug)]
pub struct InternalError(Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for InternalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for InternalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Internal(InternalError(Box::new(e)))
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A file that cannot be read or written.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// A file that is not valid JSON.
    pub fn json(path: impl Into<PathBuf>, source: serde_json::Error) -> Self {
        Error::Json { path: path.into(), source }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format { path: path.into(), msg: msg.into() }
    }

    pub(crate) fn weight(path: impl Into<PathBuf>, name: &str, msg: impl Into<String>) -> Self {
        Error::Weight { path: path.into(), name: name.to_string(), msg: msg.into() }
    }

    /// A failure of the library's own making (a shape its code got wrong), as an [`Error::Internal`].
    pub(crate) fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(InternalError(msg.into().into()))
    }

    /// Places an error about one input (what [`crate::Encoder::tokenize`] refuses) at input `i`, counted
    /// from 1 in the message, as an [`Error::Input`]; other errors pass unchanged.
    pub fn at_input(self, i: usize) -> Self {
        match self {
            Error::Input(msg) | Error::Tokenizer(msg) => Error::Input(format!("input {}: {msg}", i + 1)),
            other => other,
        }
    }
}
