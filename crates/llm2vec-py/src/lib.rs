//! Python bindings of the `llm2vec` library: the native module `llm2vec_rs._native`.
//!
//! It holds one class, `Encoder` (load once, encode many times with the GIL released), `set_num_threads`,
//! `evaluate` (the `llm2vec eval` protocol) and the library's defaults and pooling names. The reference-compatible API (`llm2vec_rs.LLM2Vec`) is written in
//! Python on top of it, in `python/llm2vec_rs/`.

mod batching;
mod encoder;
mod errors;
mod evaluate;
mod parse;

use pyo3::prelude::*;

/// Sets the number of CPU threads used for matrix products; call it before the first encode.
#[pyfunction]
fn set_num_threads(n: usize) {
    llm2vec::set_num_threads(n);
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<encoder::Encoder>()?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate::evaluate, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DEFAULT_MAX_LENGTH", llm2vec::DEFAULT_MAX_LENGTH)?;
    m.add("DEFAULT_DOC_MAX_LENGTH", llm2vec::DEFAULT_DOC_MAX_LENGTH)?;
    m.add("CPU_MAX_BATCH_TOKENS", llm2vec::CPU_MAX_BATCH_TOKENS)?;
    m.add("GPU_MAX_BATCH_TOKENS", llm2vec::GPU_MAX_BATCH_TOKENS)?;
    m.add("POOLING_MODES", llm2vec::Pooling::ALL.map(llm2vec::Pooling::name).to_vec())?;
    Ok(())
}
