//! `evaluate(...)`: the `llm2vec eval` protocol (crate `llm2vec-eval`) from Python, with the GIL released.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use llm2vec::{AttentionMode, Options};
use llm2vec_eval::{CacheDir, EvalOptions};

use crate::{errors::to_py_err, parse};

/// Evaluates `model` on `tasks` from `data_dir`, writes one JSON per task and `summary.md` to `output_dir`,
/// and returns `{task: main_score}` (fractions, as in the result files).
#[pyfunction]
#[pyo3(signature = (model, tasks, data_dir, output_dir, *, adapters=Vec::new(), pooling=None, bidirectional=true,
                    cache_dir=None))]
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    py: Python<'_>,
    model: &str,
    tasks: Vec<String>,
    data_dir: PathBuf,
    output_dir: PathBuf,
    adapters: Vec<PathBuf>,
    pooling: Option<&str>,
    bidirectional: bool,
    cache_dir: Option<PathBuf>,
) -> PyResult<BTreeMap<String, f64>> {
    let mut opts = EvalOptions::new(model, tasks, data_dir, output_dir);
    opts.encoder = Options {
        adapters,
        pooling: pooling.map(parse::pooling).transpose()?,
        attention: if bidirectional { AttentionMode::Bidirectional } else { AttentionMode::Causal },
        ..Options::default()
    };
    opts.cache = cache_dir.map_or(CacheDir::Default, CacheDir::At);
    let summary = py.detach(|| llm2vec_eval::run(&opts)).map_err(|e| match e {
        llm2vec_eval::Error::Llm2vec(inner) => to_py_err(inner),
        other => PyValueError::new_err(other.to_string()),
    })?;
    Ok(summary.results.into_iter().map(|r| (r.name, r.main_score)).collect())
}
