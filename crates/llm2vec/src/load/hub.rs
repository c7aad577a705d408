//! Hugging Face hub ids: found in the local Hugging Face cache; when absent, a clear error
//! (this build does not download: fetch the model with the hub's own tools, or pass a path).

use std::path::PathBuf;

use crate::error::{Error, Result};

/// `org/name` with no path separators beyond the one slash and no leading dot.
pub fn looks_like_repo_id(spec: &str) -> bool {
    let mut parts = spec.split('/');
    let (Some(org), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let ok = |s: &str| !s.is_empty() && !s.starts_with('.') && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    ok(org) && ok(name)
}

/// The hub cache root: `$HF_HUB_CACHE`, `$HF_HOME/hub` or `~/.cache/huggingface/hub`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return dir.into();
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    super::cache_home().join("huggingface").join("hub")
}

/// The cached snapshot directory of `repo_id` at `main`.
pub fn snapshot(repo_id: &str) -> Result<PathBuf> {
    let repo_dir = cache_dir().join(format!("models--{}", repo_id.replace('/', "--")));
    let commit = std::fs::read_to_string(repo_dir.join("refs").join("main")).ok();
    if let Some(dir) = commit.map(|c| repo_dir.join("snapshots").join(c.trim())).filter(|d| d.is_dir()) {
        return Ok(dir);
    }
    Err(Error::ModelNotFound(format!(
        "`{repo_id}` is not in the Hugging Face cache ({}); this tool reads the cache but does not download. \
         Download it first (e.g. `huggingface-cli download {repo_id}`) or pass a local directory or .gguf file",
        repo_dir.display()
    )))
}
