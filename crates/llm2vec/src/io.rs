//! Input and output file formats: texts from plain-text or JSONL files, embeddings to `.npy` or JSONL
//! (written with [`crate::fs::write_atomic`]).

use std::path::Path;

use serde::Deserialize;

use crate::encoder::{Embeddings, Input};
use crate::error::{Error, Result};
use crate::fs::write_atomic;

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
            Some("jsonl" | "json") => InputFormat::Jsonl,
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
