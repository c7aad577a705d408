//! Hugging Face hub ids: the local Hugging Face cache first, then our own download cache, then a download
//! from the hub (`$HF_ENDPOINT`, token from `$HF_TOKEN`) with bounded timeouts. `HF_HUB_OFFLINE=1` forbids
//! the download and turns a cache miss into an immediate error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// Files a model or adapter repository may hold; the first two are required.
const REQUIRED: &[&str] = &["config.json", "tokenizer.json"];
const OPTIONAL: &[&str] = &[
    "tokenizer_config.json",
    "llm2vec_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "adapter_config.json",
    "adapter_model.safetensors",
];

/// `org/name` with no path separators beyond the one slash and no leading dot.
pub fn looks_like_repo_id(spec: &str) -> bool {
    let mut parts = spec.split('/');
    let (Some(org), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let ok = |s: &str| {
        !s.is_empty() && !s.starts_with('.') && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    ok(org) && ok(name)
}

/// The Hugging Face cache root: `$HF_HUB_CACHE`, `$HF_HOME/hub` or `~/.cache/huggingface/hub`.
pub fn hf_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return dir.into();
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    crate::fs::cache_home().join("huggingface").join("hub")
}

/// Where our downloads go: `<models_dir>/hub/<org>--<name>`.
pub fn download_dir(repo_id: &str) -> PathBuf {
    crate::fs::models_dir().join("hub").join(repo_id.replace('/', "--"))
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A local directory holding `repo_id` at `main`: cached, or downloaded now.
pub fn snapshot(repo_id: &str) -> Result<PathBuf> {
    if let Some(dir) = hf_cache_snapshot(repo_id) {
        return Ok(dir);
    }
    let ours = download_dir(repo_id);
    if ours.join(".complete").is_file() {
        return Ok(ours);
    }
    if offline() {
        return Err(Error::ModelNotFound(format!(
            "`{repo_id}` is not in the Hugging Face cache ({}) nor in {}, and HF_HUB_OFFLINE forbids downloading it",
            hf_cache_dir().display(),
            ours.display()
        )));
    }
    download(repo_id, &ours)?;
    Ok(ours)
}

fn hf_cache_snapshot(repo_id: &str) -> Option<PathBuf> {
    let repo_dir = hf_cache_dir().join(format!("models--{}", repo_id.replace('/', "--")));
    let commit = std::fs::read_to_string(repo_dir.join("refs").join("main")).ok()?;
    Some(repo_dir.join("snapshots").join(commit.trim())).filter(|d| d.join("config.json").is_file())
}

fn endpoint() -> String {
    std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into()).trim_end_matches('/').to_string()
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(Duration::from_secs(60))
        .user_agent(concat!("llm2vec-rs/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Downloads the repository's model files into `dest`, each file atomically, then marks it complete.
fn download(repo_id: &str, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
    let agent = agent();
    for file in REQUIRED {
        fetch(&agent, repo_id, file, dest)?
            .then_some(())
            .ok_or_else(|| Error::ModelNotFound(format!("`{repo_id}` has no {file} on {}", endpoint())))?;
    }
    for file in OPTIONAL {
        fetch(&agent, repo_id, file, dest)?;
    }
    let index = dest.join("model.safetensors.index.json");
    if index.is_file() {
        for shard in shard_names(&index)? {
            fetch(&agent, repo_id, &shard, dest)?;
        }
    }
    crate::fs::write_atomic(&dest.join(".complete"), b"")
}

fn shard_names(index: &Path) -> Result<Vec<String>> {
    let json = crate::fs::read_json(index)?;
    let mut names: Vec<String> = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::format(index, "missing object `weight_map`"))?
        .values()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    names.sort_unstable();
    names.dedup();
    if let Some(bad) = names.iter().find(|n| n.contains('/') || n.contains("..")) {
        return Err(Error::format(index, format!("shard name `{bad}` is not a plain file name")));
    }
    Ok(names)
}

/// Fetches one file; Ok(false) when the repository does not have it.
fn fetch(agent: &ureq::Agent, repo_id: &str, file: &str, dest: &Path) -> Result<bool> {
    let url = format!("{}/{repo_id}/resolve/main/{file}", endpoint());
    let mut request = agent.get(&url);
    if let Ok(token) = std::env::var("HF_TOKEN") {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    let response = match request.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(404, _)) => return Ok(false),
        Err(ureq::Error::Status(code @ (401 | 403), _)) => {
            return Err(Error::ModelNotFound(format!("{url}: HTTP {code} (a gated or private model? set HF_TOKEN)")))
        }
        Err(ureq::Error::Status(code, _)) => return Err(Error::ModelNotFound(format!("{url}: HTTP {code}"))),
        Err(e) => {
            return Err(Error::ModelNotFound(format!(
                "cannot download `{repo_id}` ({url}): {e}; set HF_HUB_OFFLINE=1 to use local files only"
            )))
        }
    };
    crate::fs::write_atomic_from(&dest.join(file), &mut response.into_reader())?;
    Ok(true)
}
