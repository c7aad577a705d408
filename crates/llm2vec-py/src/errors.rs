//! `llm2vec::Error` -> Python exceptions, keeping the library's message: missing files raise
//! `FileNotFoundError`, bad models, configs and inputs `ValueError`, a cancelled encode `KeyboardInterrupt`,
//! other I/O failures `OSError` and the rest (NaN or infinite embeddings included) `RuntimeError`.

use pyo3::exceptions::{PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyValueError};
use pyo3::PyErr;

use llm2vec::Error;

/// The Python exception for a library error.
pub fn to_py_err(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
        Error::ModelNotFound(_) => PyFileNotFoundError::new_err(msg),
        Error::Io { .. } => PyOSError::new_err(msg),
        Error::Json { .. }
        | Error::Format { .. }
        | Error::Config { .. }
        | Error::UnsupportedArchitecture { .. }
        | Error::Weight { .. }
        | Error::Tokenizer(_)
        | Error::Input(_)
        | Error::Env { .. }
        | Error::Option { .. } => PyValueError::new_err(msg),
        Error::Interrupted => PyKeyboardInterrupt::new_err(msg),
        // Internal failures, non-finite embeddings and any kind added later.
        _ => PyRuntimeError::new_err(msg),
    }
}
