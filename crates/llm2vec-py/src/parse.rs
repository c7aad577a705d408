//! Options given as Python values: device and dtype strings, pooling names, counts.

use pyo3::exceptions::PyValueError;
use pyo3::PyResult;

use llm2vec::{DType, Device, Pooling, Precision};

use crate::errors::to_py_err;

/// `cpu`, `cuda` or `cuda:N`: a malformed name raises `ValueError`, a CUDA device that cannot be opened
/// `RuntimeError`.
pub fn device(spec: &str) -> PyResult<Device> {
    llm2vec::parse_device(spec).map_err(to_py_err)
}

/// `float32`, `bfloat16`, `float16` (also `f32`/`bf16`/`f16` and torch's names such as `torch.bfloat16`)
/// or `q8` (8-bit linear layers on the CPU, f32 elsewhere); with whether to quantize.
pub fn dtype(name: &str) -> PyResult<(DType, bool)> {
    let precision: Precision = name.parse().map_err(to_py_err)?;
    Ok((precision.dtype(), precision.quantize()))
}

pub fn pooling(name: &str) -> PyResult<Pooling> {
    name.parse().map_err(to_py_err)
}

/// A count from Python that must be at least `min`; `what` names it in the error.
pub fn count(what: &str, value: i64, min: usize) -> PyResult<usize> {
    usize::try_from(value)
        .ok()
        .filter(|&v| v >= min)
        .ok_or_else(|| PyValueError::new_err(format!("{what} must be an integer >= {min}, got {value}")))
}
