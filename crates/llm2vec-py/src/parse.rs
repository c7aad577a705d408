//! Options given as Python values: device and dtype strings, pooling names, counts.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::PyResult;

use llm2vec::{DType, Device, Pooling};

use crate::errors::to_py_err;

/// `cpu`, `cuda` or `cuda:N`.
pub fn device(spec: &str) -> PyResult<Device> {
    if spec == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match spec.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| PyValueError::new_err(format!("device `{spec}`: bad ordinal; expected cuda:N")))?,
        None => return Err(PyValueError::new_err(format!("device `{spec}`: expected cpu, cuda or cuda:N"))),
    };
    Device::new_cuda(ordinal).map_err(|e| PyRuntimeError::new_err(format!("device `{spec}`: {e}")))
}

/// `float32`, `bfloat16`, `float16` (also `f32`/`bf16`/`f16` and torch's names such as `torch.bfloat16`)
/// or `q8` (8-bit linear layers on the CPU, f32 elsewhere); with whether to quantize.
pub fn dtype(name: &str) -> PyResult<(DType, bool)> {
    match name.strip_prefix("torch.").unwrap_or(name) {
        "float32" | "float" | "f32" | "fp32" => Ok((DType::F32, false)),
        "bfloat16" | "bf16" => Ok((DType::BF16, false)),
        "float16" | "half" | "f16" | "fp16" => Ok((DType::F16, false)),
        "q8" => Ok((DType::F32, true)),
        _ => Err(PyValueError::new_err(format!("dtype `{name}`: expected float32, bfloat16, float16 or q8"))),
    }
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
