//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

#[path = "files.rs"]
mod files;
pub use files::available;

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `../shared` beside the repository, where data and reference outputs live.
pub fn shared() -> PathBuf {
    repo_root().join("../shared")
}

/// The default model's GGUF, or None (with a note) when it has not been fetched.
pub fn smollm2() -> Option<String> {
    let path = llm2vec::load::models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    available(&path, "run scripts/fetch-default-model.sh").then(|| path.to_string_lossy().into_owned())
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64) * (*y as f64)).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}
