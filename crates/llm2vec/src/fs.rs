//! Files written atomically (a temporary file with an unguessable name, created exclusively, renamed into
//! place), the temporaries that killed writes leave behind, JSON files read with their path in errors, and the
//! cache folders.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::error::{Error, Result};

/// The user's cache folder: `$XDG_CACHE_HOME`, else `~/.cache`, else `.cache`.
pub fn cache_home() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
}

/// Where fetched models live: `$LLM2VEC_MODELS_DIR`, else `$XDG_CACHE_HOME/llm2vec/models`, else `~/.cache/llm2vec/models`.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LLM2VEC_MODELS_DIR") {
        return dir.into();
    }
    cache_home().join("llm2vec").join("models")
}

/// Reads a JSON file; errors name the file.
pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| Error::json(path, source))
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, then renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_from(path, &mut &bytes[..])
}

/// Streams `reader` into a temporary file beside `path`, syncs it, then renames it over `path`.
/// The temporary file gets a fresh unguessable name and is created exclusively, so nothing planted at a
/// temporary name (a symlink to elsewhere) is ever written through.
pub fn write_atomic_from(path: &Path, reader: &mut impl std::io::Read) -> Result<()> {
    let (tmp, mut f) = temp_beside(path)?;
    let result = (|| {
        std::io::copy(reader, &mut f)?;
        f.flush()?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Lets `write` fill a fresh temporary file beside `path` through its path (for writers that only take a
/// path), syncs it, then renames it over `path`; the temporary file is removed if anything fails.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let (tmp, f) = temp_beside(path)?;
    drop(f);
    let result = write(&tmp).and_then(|()| {
        let synced = std::fs::File::open(&tmp).and_then(|f| f.sync_all());
        synced.and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| Error::io(path, e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A fresh temporary file in `path`'s folder, named after it.
fn temp_beside(path: &Path) -> Result<(PathBuf, std::fs::File)> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| Error::format(path, "not a file path"))?;
    create_temp(dir, &name.to_string_lossy()).map_err(|e| Error::io(path, e))
}

/// Creates `.<name>.<16 hex digits>.tmp` in `dir` exclusively (`create_new` fails on anything already
/// there, a symlink included, and never follows one).
fn create_temp(dir: &Path, name: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
    let mut tries = 0;
    loop {
        let tmp = dir.join(format!(".{name}.{:016x}.tmp", unguessable()));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 8 => tries += 1,
            opened => return opened.map(|f| (tmp, f)),
        }
    }
}

/// A number an outsider cannot predict: SipHash under the standard library's per-process random keys
/// (drawn from the OS) of a counter, the time and the process id.
fn unguessable() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.finish()
}

/// Whether `name` is a temporary file of [`write_atomic`]: `.<name>.<16 hex digits>.tmp`, or
/// `.<name>.tmp<pid>` as earlier versions named them.
pub fn is_temp_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else { return false };
    if let Some((stem, digits)) = rest.rsplit_once(".tmp") {
        if !stem.is_empty() && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return true;
        }
    }
    let Some((stem, hex)) = rest.strip_suffix(".tmp").and_then(|r| r.rsplit_once('.')) else { return false };
    !stem.is_empty() && hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Removes the temporary files that killed writes left in `dir` (only names of [`is_temp_name`]'s
/// pattern, only plain files); returns them. Call it only where no other process is writing.
pub fn remove_stale_temps(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let stale =
            entry.file_name().to_str().is_some_and(is_temp_name) && entry.file_type().is_ok_and(|t| t.is_file());
        if stale {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            removed.push(path);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_fresh_and_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = create_temp(dir.path(), "x.json").unwrap();
        let (b, _) = create_temp(dir.path(), "x.json").unwrap();
        assert_ne!(a, b);
        for p in [&a, &b] {
            assert!(is_temp_name(p.file_name().unwrap().to_str().unwrap()), "{}", p.display());
        }
        assert!(is_temp_name(".x.json.tmp4242"));
        for other in [
            "x.json",
            ".x.json",
            ".x.json.tmp",
            ".tmp123",
            "..0123456789abcdef.tmp",
            ".x.0123456789abcdeg.tmp",
            "a.0123456789abcdef.tmp",
        ] {
            assert!(!is_temp_name(other), "{other}");
        }
    }
}
