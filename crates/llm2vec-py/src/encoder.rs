//! The native `Encoder` class: loads a model with its adapters once, then encodes lists of
//! `(instruction, text)` pairs into float32 numpy arrays.

use std::path::PathBuf;

use numpy::ndarray::Array2;
use numpy::PyArray2;
use pyo3::prelude::*;

use llm2vec::{AttentionMode, Error, Input, Options};

use crate::{batching, errors::to_py_err, parse};

/// A loaded model (weights merged with its adapters) and its settings.
#[pyclass(module = "llm2vec_rs._native", frozen)]
pub struct Encoder {
    inner: llm2vec::Encoder,
}

#[pymethods]
impl Encoder {
    /// Loads `model` (short name, directory, `.gguf` file or cached hub id) and merges `adapters` in order.
    /// `None` settings come from the last adapter's or the model's `llm2vec_config.json`, then the defaults.
    #[new]
    #[pyo3(signature = (model, *, adapters=Vec::new(), pooling=None, max_length=None, doc_max_length=None,
                        skip_instruction=None, bidirectional=true, dtype="float32", device="cpu",
                        max_batch_tokens=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: &str,
        adapters: Vec<PathBuf>,
        pooling: Option<&str>,
        max_length: Option<i64>,
        doc_max_length: Option<i64>,
        skip_instruction: Option<bool>,
        bidirectional: bool,
        dtype: &str,
        device: &str,
        max_batch_tokens: Option<i64>,
    ) -> PyResult<Self> {
        let (dtype, quantize) = parse::dtype(dtype)?;
        let options = Options {
            adapters,
            pooling: pooling.map(parse::pooling).transpose()?,
            max_length: max_length.map(|n| parse::count("max_length", n, 1)).transpose()?,
            doc_max_length: doc_max_length.map(|n| parse::count("doc_max_length", n, 1)).transpose()?,
            skip_instruction,
            attention: if bidirectional { AttentionMode::Bidirectional } else { AttentionMode::Causal },
            normalize: false,
            batch_size: 1,
            max_batch_tokens: max_batch_tokens.map(|n| parse::count("max_batch_tokens", n, 1)).transpose()?,
            dtype,
            quantize,
            device: parse::device(device)?,
        };
        let inner = py.detach(|| llm2vec::Encoder::from_pretrained(model, options)).map_err(to_py_err)?;
        Ok(Self { inner })
    }

    /// Encodes `(instruction, text)` pairs; returns the `[len(inputs), dim]` float32 array and the indices of
    /// the inputs cut to max_length. `progress(done, total)` is called between batches.
    #[pyo3(signature = (inputs, *, batch_size=32, normalize=false, progress=None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        inputs: Vec<(String, String)>,
        batch_size: i64,
        normalize: bool,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<(Bound<'py, PyArray2<f32>>, Vec<usize>)> {
        let batch_size = parse::count("batch_size", batch_size, 1)?;
        let inputs: Vec<Input> = inputs.into_iter().map(|(instruction, text)| Input::new(instruction, text)).collect();
        let mut embeddings = batching::encode(py, &self.inner, &inputs, batch_size, progress)?;
        if normalize {
            embeddings.normalize();
        }
        let array =
            Array2::from_shape_vec((embeddings.rows, embeddings.dim), embeddings.data).expect("rows * dim values");
        Ok((PyArray2::from_owned_array(py, array), embeddings.truncated))
    }

    /// The number of tokens each `(instruction, text)` pair runs through the model (after truncation, as
    /// `encode` tokenizes it): what a caller needs to group inputs into batches by a token budget.
    fn token_counts(&self, py: Python<'_>, inputs: Vec<(String, String)>) -> PyResult<Vec<usize>> {
        let inputs: Vec<Input> = inputs.into_iter().map(|(instruction, text)| Input::new(instruction, text)).collect();
        py.detach(|| {
            inputs
                .iter()
                .enumerate()
                .map(|(i, input)| self.inner.tokenize(input).map(|t| t.ids.len()).map_err(|e| placed(i, e)))
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(to_py_err)
    }

    /// Embedding width.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// The architecture (`llama`, `qwen2`, `gemma3_text`, ...).
    #[getter]
    fn model_type(&self) -> &str {
        self.inner.model_type()
    }

    #[getter]
    fn precision(&self) -> &'static str {
        self.inner.precision()
    }

    #[getter]
    fn device(&self) -> String {
        llm2vec::device_name(self.inner.device())
    }

    #[getter]
    fn pooling_mode(&self) -> &'static str {
        self.inner.settings().pooling.name()
    }

    #[getter]
    fn max_length(&self) -> usize {
        self.inner.settings().max_length
    }

    #[getter]
    fn max_batch_tokens(&self) -> usize {
        self.inner.settings().max_batch_tokens
    }

    #[getter]
    fn doc_max_length(&self) -> usize {
        self.inner.settings().doc_max_length
    }

    #[getter]
    fn skip_instruction(&self) -> bool {
        self.inner.settings().skip_instruction
    }

    #[getter]
    fn bidirectional(&self) -> bool {
        self.inner.settings().attention == AttentionMode::Bidirectional
    }
}

/// Names the input (counted from 1) in a bad-input error, as `encode`'s own messages do.
fn placed(i: usize, e: Error) -> Error {
    match e {
        Error::Input(msg) | Error::Tokenizer(msg) => Error::Input(format!("input {}: {msg}", i + 1)),
        other => other,
    }
}
