//! Training data: MNTP texts (JSON/JSONL `{"text"}` or plain text) grouped into blocks or
//! kept line by line, SimCSE sentence files, and supervised `{"query","positive","negative"?}`
//! JSONL with optional instructions, batched one source file at a time.

use crate::rng::Rng;
use crate::{Result, TrainError};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))
}

fn data_err(file: &Path, line: usize, msg: impl std::fmt::Display) -> TrainError {
    TrainError::Data { file: file.to_path_buf(), line, msg: msg.to_string() }
}

/// Loads MNTP texts: `.json` (array of `{"text"}` or JSONL), `.jsonl`, or any other file
/// as plain text with one record per non-empty line. Errors name the line (for a JSON
/// array, the record's position in the array).
pub fn load_mntp_texts(path: &Path) -> Result<Vec<String>> {
    parse_mntp_texts(&read(path)?, path)
}

/// Parses MNTP text records; `file`'s extension selects the format.
pub fn parse_mntp_texts(text: &str, file: &Path) -> Result<Vec<String>> {
    match file.extension().and_then(|e| e.to_str()) {
        Some("json") if text.trim_start().starts_with('[') => parse_json_array(text, file),
        Some("json" | "jsonl") => parse_jsonl_texts(text, file),
        _ => Ok(plain_lines(text).map(|(_, l)| l.to_string()).collect()),
    }
}

fn plain_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty())
}

fn text_field(value: &Value, file: &Path, line: usize) -> Result<String> {
    match value.get("text") {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(data_err(file, line, "expected an object with a string field \"text\"")),
    }
}

fn parse_json_array(text: &str, file: &Path) -> Result<Vec<String>> {
    let records: Vec<Value> = serde_json::from_str(text).map_err(|e| data_err(file, e.line(), e))?;
    records.iter().enumerate().map(|(i, r)| text_field(r, file, i + 1)).collect()
}

fn parse_jsonl_texts(text: &str, file: &Path) -> Result<Vec<String>> {
    plain_lines(text)
        .map(|(n, l)| {
            let v: Value = serde_json::from_str(l).map_err(|e| data_err(file, n, e))?;
            text_field(&v, file, n)
        })
        .collect()
}

/// Token ids of each text, with the tokenizer's special tokens (BOS) as the reference adds them.
pub fn tokenize_all(tokenizer: &Tokenizer, texts: &[String]) -> Result<Vec<Vec<u32>>> {
    texts
        .iter()
        .map(|t| {
            let enc = tokenizer.encode(t.as_str(), true).map_err(|e| TrainError::Tokenizer(e.to_string()))?;
            Ok(enc.get_ids().to_vec())
        })
        .collect()
}

/// The reference's `group_texts`: concatenate all sequences, cut into blocks of
/// `block_size`, drop the remainder.
pub fn group_texts(sequences: &[Vec<u32>], block_size: usize) -> Result<Vec<Vec<u32>>> {
    if block_size == 0 {
        return Err(TrainError::Invalid("max_seq_length must be positive".into()));
    }
    let all: Vec<u32> = sequences.iter().flatten().copied().collect();
    Ok(all.chunks_exact(block_size).map(<[u32]>::to_vec).collect())
}

/// Line-by-line mode: each non-empty sequence truncated to `max_len` tokens.
pub fn line_by_line(sequences: Vec<Vec<u32>>, max_len: usize) -> Vec<Vec<u32>> {
    sequences
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(|mut s| {
            s.truncate(max_len);
            s
        })
        .collect()
}

/// SimCSE sentences: one per non-empty line (the reference's wiki1m format).
pub fn load_sentences(path: &Path) -> Result<Vec<String>> {
    Ok(plain_lines(&read(path)?).map(|(_, l)| l.to_string()).collect())
}

/// One supervised example; `source` indexes the file it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SupervisedExample {
    pub instruction: String,
    pub query: String,
    pub positive: String,
    pub negative: Option<String>,
    pub source: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SupervisedRecord {
    query: String,
    positive: String,
    negative: Option<String>,
    instruction: Option<String>,
}

/// Parses supervised JSONL; a record's `instruction` overrides `file_instruction`.
pub fn parse_supervised(
    text: &str,
    file: &Path,
    file_instruction: &str,
    source: usize,
) -> Result<Vec<SupervisedExample>> {
    plain_lines(text)
        .map(|(n, l)| {
            let r: SupervisedRecord = serde_json::from_str(l).map_err(|e| data_err(file, n, e))?;
            Ok(SupervisedExample {
                instruction: r.instruction.unwrap_or_else(|| file_instruction.to_string()),
                query: r.query,
                positive: r.positive,
                negative: r.negative,
                source,
            })
        })
        .collect()
}

/// Loads several supervised files, each with its own instruction; example sources are
/// the files' positions in `files`.
pub fn load_supervised(files: &[(PathBuf, String)]) -> Result<Vec<SupervisedExample>> {
    let mut all = Vec::new();
    for (source, (path, instruction)) in files.iter().enumerate() {
        all.extend(parse_supervised(&read(path)?, path, instruction, source)?);
    }
    Ok(all)
}

/// Batches of example indices as the reference draws them: shuffled within each source,
/// cut into full batches (a source's remainder is dropped), batches shuffled across sources.
pub fn source_batches(examples: &[SupervisedExample], batch_size: usize, rng: &mut Rng) -> Result<Vec<Vec<usize>>> {
    if batch_size == 0 {
        return Err(TrainError::Invalid("batch size must be positive".into()));
    }
    let sources = examples.iter().map(|e| e.source + 1).max().unwrap_or(0);
    let mut batches = Vec::new();
    for source in 0..sources {
        let mut idx: Vec<usize> = (0..examples.len()).filter(|&i| examples[i].source == source).collect();
        rng.shuffle(&mut idx);
        batches.extend(idx.chunks_exact(batch_size).map(<[usize]>::to_vec));
    }
    rng.shuffle(&mut batches);
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mntp_formats() {
        let jsonl = "{\"text\": \"a b\"}\n\n{\"text\": \"c\"}\n";
        assert_eq!(parse_mntp_texts(jsonl, Path::new("x.jsonl")).unwrap(), ["a b", "c"]);
        let arr = "[{\"text\": \"a\"}, {\"text\": \"b\"}]";
        assert_eq!(parse_mntp_texts(arr, Path::new("x.json")).unwrap(), ["a", "b"]);
        assert_eq!(parse_mntp_texts("one\n\n two \n", Path::new("x.txt")).unwrap(), ["one", "two"]);
    }

    #[test]
    fn mntp_errors_name_the_line() {
        let err = parse_mntp_texts("{\"text\": \"a\"}\n{\"txt\": 1}\n", Path::new("d.jsonl")).unwrap_err();
        assert!(err.to_string().starts_with("d.jsonl:2:"), "{err}");
        let err = parse_mntp_texts("{\"text\": \"a\"}\n{bad\n", Path::new("d.jsonl")).unwrap_err();
        assert!(err.to_string().starts_with("d.jsonl:2:"), "{err}");
    }

    #[test]
    fn group_texts_drops_remainder() {
        let seqs = vec![vec![1, 2, 3], vec![4, 5], vec![6, 7, 8]];
        assert_eq!(group_texts(&seqs, 3).unwrap(), vec![vec![1, 2, 3], vec![4, 5, 6]]);
        assert!(group_texts(&seqs, 9).unwrap().is_empty());
        assert!(group_texts(&seqs, 0).is_err());
        assert_eq!(line_by_line(vec![vec![1, 2, 3], vec![], vec![4]], 2), vec![vec![1, 2], vec![4]]);
    }

    #[test]
    fn supervised_instructions_and_errors() {
        let text = "{\"query\":\"q1\",\"positive\":\"p1\"}\n{\"query\":\"q2\",\"positive\":\"p2\",\"negative\":\"n2\",\"instruction\":\"own\"}\n";
        let ex = parse_supervised(text, Path::new("s.jsonl"), "file", 3).unwrap();
        assert_eq!(ex[0].instruction, "file");
        assert_eq!(ex[0].negative, None);
        assert_eq!(ex[1].instruction, "own");
        assert_eq!(ex[1].negative.as_deref(), Some("n2"));
        assert_eq!(ex[1].source, 3);
        let err = parse_supervised("{\"query\":\"q\"}\n", Path::new("s.jsonl"), "", 0).unwrap_err();
        assert!(err.to_string().contains("s.jsonl:1:") && err.to_string().contains("positive"), "{err}");
    }

    #[test]
    fn batches_come_from_one_source() {
        let ex: Vec<_> = (0..11)
            .map(|i| SupervisedExample {
                instruction: String::new(),
                query: i.to_string(),
                positive: String::new(),
                negative: None,
                source: usize::from(i >= 5),
            })
            .collect();
        let batches = source_batches(&ex, 2, &mut Rng::new(1)).unwrap();
        assert_eq!(batches.len(), 2 + 3);
        for b in &batches {
            assert_eq!(ex[b[0]].source, ex[b[1]].source);
        }
        assert_eq!(batches, source_batches(&ex, 2, &mut Rng::new(1)).unwrap());
    }
}
