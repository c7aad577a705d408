//! The encode loop behind `Encoder.encode`: the library's `encode_with_progress` (so rows are bit-identical
//! to the library's and the CLI's at the same batch size) with the batch size chosen per call, as the
//! reference's `encode(batch_size=...)` allows. Runs without the GIL; between batches it re-attaches to check
//! for Ctrl-C and report progress.

use pyo3::prelude::*;

use llm2vec::{Embeddings, Encoder, Error, Input};

use crate::errors::to_py_err;

/// Encodes `inputs` in batches of `batch_size`; `progress(done, total)` runs with the GIL after tokenizing
/// and after every batch (a Python exception from it, KeyboardInterrupt included, stops the encode).
pub fn encode(
    py: Python<'_>,
    encoder: &Encoder,
    inputs: &[Input],
    batch_size: usize,
    progress: Option<Py<PyAny>>,
) -> PyResult<Embeddings> {
    let mut raised: Option<PyErr> = None;
    let result = py.detach(|| {
        encoder.encode_with_progress(inputs, batch_size, |p| {
            Python::attach(|py| {
                py.check_signals()?;
                match &progress {
                    Some(callback) => callback.call1(py, (p.done, p.total)).map(drop),
                    None => Ok(()),
                }
            })
            .map_err(|e| {
                raised = Some(e);
                Error::Interrupted
            })
        })
    });
    match (result, raised) {
        (Ok(embeddings), _) => Ok(embeddings),
        (Err(_), Some(py_err)) => Err(py_err),
        (Err(e), None) => Err(to_py_err(e)),
    }
}
