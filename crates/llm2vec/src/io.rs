//! Input and output files: texts from plain-text or JSONL files, embeddings to `.npy` or JSONL,
//! written atomically (a temporary file with an unguessable name, created exclusively, renamed into place).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::Deserialize;

use crate::encoder::{Embeddings, Input};
use crate::error::{Error, Result};

/// How an input file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// One text per line.
    Lines,
    /// One JSON object per line: `{"text": ..., "instruction": ...?}`.
    Jsonl,
}

impl InputFormat {
    /// JSONL for `.jsonl`/`.json` names, lines otherwise.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl") | Some("json") => InputFormat::Jsonl,
            _ => InputFormat::Lines,
        }
    }
}

/// How an embeddings file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// float32 rows, `[rows, dim]`.
    Npy,
    /// One `{"index": i, "embedding": [...]}` per line.
    Jsonl,
}

impl OutputFormat {
    /// `.npy` or `.jsonl` by extension; any other name is an error.
    pub fn from_path(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => Ok(OutputFormat::Npy),
            Some("jsonl") => Ok(OutputFormat::Jsonl),
            _ => Err(Error::format(path, "output must end in .npy or .jsonl")),
        }
    }
}

/// Checks that embeddings can be written to `path` (a known extension, in an existing folder), so that a
/// mistyped output fails before any encoding.
pub fn check_output(path: &Path) -> Result<()> {
    OutputFormat::from_path(path)?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(Error::format(path, format!("the folder {} does not exist", dir.display())));
    }
    if path.is_dir() {
        return Err(Error::format(path, "is a folder"));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    text: String,
    #[serde(default)]
    instruction: Option<String>,
}

/// Parses input bytes; `instruction` applies to every record that names none. `source` names the input in errors.
pub fn parse_inputs(bytes: &[u8], format: InputFormat, instruction: &str, source: &Path) -> Result<Vec<Input>> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if body.is_empty() {
        return Err(Error::format(source, "no inputs (the file is empty)"));
    }
    let mut inputs = Vec::new();
    for (n, raw) in body.split(|&b| b == b'\n').enumerate() {
        let at = |msg: String| Error::format(source, format!("line {}: {msg}", n + 1));
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|e| at(format!("invalid UTF-8 ({e})")))?;
        let input = match format {
            InputFormat::Lines => Input::new(instruction, line),
            InputFormat::Jsonl => {
                let r: Record = serde_json::from_str(line).map_err(|e| at(format!("invalid JSON record: {e}")))?;
                Input::new(r.instruction.unwrap_or_else(|| instruction.to_string()), r.text)
            }
        };
        if input.text.trim().is_empty() {
            return Err(at("empty text".into()));
        }
        inputs.push(input);
    }
    Ok(inputs)
}

/// Reads and parses an input file, its format chosen by extension.
pub fn read_inputs(path: &Path, instruction: &str) -> Result<Vec<Input>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_inputs(&bytes, InputFormat::from_path(path), instruction, path)
}

/// `.npy` (float32, `[rows, dim]`) bytes of the embeddings.
pub fn npy_bytes(e: &Embeddings) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}", e.rows, e.dim);
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + e.data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in &e.data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// JSONL bytes: one `{"index": i, "embedding": [...]}` per row.
pub fn jsonl_bytes(e: &Embeddings) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..e.rows {
        let line = serde_json::json!({ "index": i, "embedding": e.row(i) });
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Writes embeddings as `.npy` or `.jsonl` (by extension), atomically.
pub fn write_embeddings(path: &Path, e: &Embeddings) -> Result<()> {
    let bytes = match OutputFormat::from_path(path)? {
        OutputFormat::Npy => npy_bytes(e),
        OutputFormat::Jsonl => jsonl_bytes(e),
    };
    write_atomic(path, &bytes)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, then renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_from(path, &mut &bytes[..])
}

/// Streams `reader` into a temporary file beside `path`, syncs it, then renames it over `path`.
/// The temporary file gets a fresh unguessable name and is created exclusively, so nothing planted at a
/// temporary name (a symlink to elsewhere) is ever written through.
pub fn write_atomic_from(path: &Path, reader: &mut impl std::io::Read) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| Error::format(path, "not a file path"))?;
    let (tmp, mut f) = create_temp(dir, &name.to_string_lossy()).map_err(|e| Error::io(path, e))?;
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
