//! Readers for the task layouts of `shared/data/README.md` (MTEB's, and BEIR's for retrieval). Every
//! record is checked as it is read; a problem names the file, the line and the field. The bytes read
//! are hashed into the result's `dataset_revision`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::task::TaskSpec;
use crate::trec::Qrels;

/// The files a task read, hashed together.
#[derive(Default)]
pub struct Sources {
    hasher: Sha256,
}

impl Sources {
    fn read(&mut self, path: &Path) -> Result<String> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        self.hasher.update((bytes.len() as u64).to_le_bytes());
        self.hasher.update(&bytes);
        String::from_utf8(bytes)
            .map_err(|e| Error::line(path, line_of(e.as_bytes(), e.utf8_error().valid_up_to()), "not valid UTF-8"))
    }

    /// First 16 hex digits of the hash of everything read.
    pub fn revision(self) -> String {
        self.hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

fn line_of(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset].iter().filter(|&&b| b == b'\n').count() + 1
}

/// One JSON object of a `.jsonl` file, with its place for error messages.
pub struct Record<'a> {
    path: &'a Path,
    line: usize,
    obj: Map<String, Value>,
}

impl Record<'_> {
    fn error(&self, field: &str, msg: &str) -> Error {
        Error::line(self.path, self.line, format!("field `{field}`: {msg}"))
    }

    fn get(&self, field: &str) -> Result<&Value> {
        self.obj.get(field).filter(|v| !v.is_null()).ok_or_else(|| self.error(field, "missing"))
    }

    /// A non-empty string.
    pub fn text(&self, field: &str) -> Result<String> {
        let s = self.get(field)?.as_str().ok_or_else(|| self.error(field, "expected a string"))?;
        if s.trim().is_empty() {
            return Err(self.error(field, "empty text"));
        }
        Ok(s.to_string())
    }

    /// A string that may be absent or empty.
    pub fn optional_text(&self, field: &str) -> Result<String> {
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(v) => v.as_str().map(str::to_string).ok_or_else(|| self.error(field, "expected a string")),
        }
    }

    pub fn number(&self, field: &str) -> Result<f64> {
        self.get(field)?.as_f64().filter(|v| v.is_finite()).ok_or_else(|| self.error(field, "expected a finite number"))
    }

    /// A label or id: a string, or a number written as text.
    pub fn label(&self, field: &str) -> Result<String> {
        match self.get(field)? {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(self.error(field, "expected a non-empty string or a number")),
        }
    }

    /// 0 or 1 (a number or a boolean).
    pub fn binary(&self, field: &str) -> Result<bool> {
        match self.get(field)? {
            Value::Bool(b) => Ok(*b),
            v if v.as_f64() == Some(0.0) => Ok(false),
            v if v.as_f64() == Some(1.0) => Ok(true),
            _ => Err(self.error(field, "expected 0 or 1")),
        }
    }

    /// A list of non-empty strings.
    pub fn texts(&self, field: &str) -> Result<Vec<String>> {
        let items = self.get(field)?.as_array().ok_or_else(|| self.error(field, "expected a list of strings"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v.as_str() {
                Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
                Some(_) => Err(self.error(field, &format!("item {}: empty text", i + 1))),
                None => Err(self.error(field, &format!("item {}: expected a string", i + 1))),
            })
            .collect()
    }

    /// A list of labels (strings or numbers).
    pub fn labels(&self, field: &str) -> Result<Vec<String>> {
        let items = self.get(field)?.as_array().ok_or_else(|| self.error(field, "expected a list"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(self.error(field, &format!("item {}: expected a string or a number", i + 1))),
            })
            .collect()
    }

    pub fn numbers(&self, field: &str) -> Result<Vec<f64>> {
        let items = self.get(field)?.as_array().ok_or_else(|| self.error(field, "expected a list of numbers"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_f64()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| self.error(field, &format!("item {}: expected a number", i + 1)))
            })
            .collect()
    }

    fn same_length(&self, a: (&str, usize), b: (&str, usize)) -> Result<()> {
        if a.1 == b.1 {
            Ok(())
        } else {
            Err(Error::line(self.path, self.line, format!("`{}` has {} items but `{}` has {}", a.0, a.1, b.0, b.1)))
        }
    }
}

/// Reads the JSON objects of a `.jsonl` file (blank lines skipped) and passes each to `f`.
fn for_each_record(path: &Path, sources: &mut Sources, mut f: impl FnMut(Record) -> Result<()>) -> Result<()> {
    let text = sources.read(path)?;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(line).map_err(|e| Error::line(path, i + 1, format!("invalid JSON: {e}")))?;
        let Value::Object(obj) = value else {
            return Err(Error::line(path, i + 1, "expected a JSON object"));
        };
        f(Record { path, line: i + 1, obj })?;
    }
    Ok(())
}

/// The files of a split (`a+b` names several), each `<dir>/<split>.jsonl`; a missing one is an error.
pub fn split_files(spec: &TaskSpec, split: &str) -> Result<Vec<PathBuf>> {
    split.split('+').map(|part| existing(spec, part, spec.dir.join(format!("{part}.jsonl")))).collect()
}

fn existing(spec: &TaskSpec, split: &str, path: PathBuf) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path);
    }
    let listed = if spec.splits.is_empty() { "none".to_string() } else { spec.splits.join(", ") };
    Err(Error::task(
        &spec.name,
        format!("split `{split}`: missing file {} (task.json lists splits: {listed})", path.display()),
    ))
}

/// Sentence pairs with a gold score (STS) or a 0/1 label (pair classification).
#[derive(Debug, Default)]
pub struct Pairs<T> {
    pub first: Vec<String>,
    pub second: Vec<String>,
    pub targets: Vec<T>,
}

pub fn sts(spec: &TaskSpec, split: &str, sources: &mut Sources) -> Result<Pairs<f64>> {
    read_pairs(spec, split, sources, |r| r.number("score"))
}

pub fn pair_classification(spec: &TaskSpec, split: &str, sources: &mut Sources) -> Result<Pairs<bool>> {
    read_pairs(spec, split, sources, |r| r.binary("label"))
}

fn read_pairs<T>(
    spec: &TaskSpec,
    split: &str,
    sources: &mut Sources,
    target: impl Fn(&Record) -> Result<T>,
) -> Result<Pairs<T>> {
    let mut pairs = Pairs { first: Vec::new(), second: Vec::new(), targets: Vec::new() };
    for path in split_files(spec, split)? {
        for_each_record(&path, sources, |r| {
            pairs.first.push(r.text("sentence1")?);
            pairs.second.push(r.text("sentence2")?);
            pairs.targets.push(target(&r)?);
            Ok(())
        })?;
    }
    if pairs.first.is_empty() {
        return Err(Error::task(&spec.name, format!("split `{split}` holds no pairs")));
    }
    Ok(pairs)
}

/// Texts with string labels (classification).
#[derive(Debug, Default)]
pub struct Labeled {
    pub texts: Vec<String>,
    pub labels: Vec<String>,
}

pub fn classification(spec: &TaskSpec, split: &str, sources: &mut Sources) -> Result<Labeled> {
    let mut data = Labeled::default();
    for path in split_files(spec, split)? {
        for_each_record(&path, sources, |r| {
            data.texts.push(r.text("text")?);
            data.labels.push(r.label("label")?);
            Ok(())
        })?;
    }
    if data.texts.is_empty() {
        return Err(Error::task(&spec.name, format!("split `{split}` holds no texts")));
    }
    Ok(data)
}

/// Clustering sets, one per line: `{"sentences": [...], "labels": [...]}`.
pub fn clustering(spec: &TaskSpec, split: &str, sources: &mut Sources) -> Result<Vec<Labeled>> {
    let mut sets = Vec::new();
    for path in split_files(spec, split)? {
        for_each_record(&path, sources, |r| {
            let (texts, labels) = (r.texts("sentences")?, r.labels("labels")?);
            r.same_length(("sentences", texts.len()), ("labels", labels.len()))?;
            if labels.iter().collect::<HashSet<_>>().len() < 2 {
                return Err(Error::line(r.path, r.line, "field `labels`: one class only (k-means needs at least 2)"));
            }
            sets.push(Labeled { texts, labels });
            Ok(())
        })?;
    }
    if sets.is_empty() {
        return Err(Error::task(&spec.name, format!("split `{split}` holds no clustering set")));
    }
    Ok(sets)
}

/// Reranking samples: `{"query": str, "positive": [...], "negative": [...]}`.
#[derive(Debug)]
pub struct RerankSample {
    pub query: String,
    pub positive: Vec<String>,
    pub negative: Vec<String>,
}

pub fn reranking(spec: &TaskSpec, split: &str, sources: &mut Sources) -> Result<Vec<RerankSample>> {
    let mut samples = Vec::new();
    for path in split_files(spec, split)? {
        for_each_record(&path, sources, |r| {
            samples.push(RerankSample {
                query: r.text("query")?,
                positive: r.texts("positive")?,
                negative: r.texts("negative")?,
            });
            Ok(())
        })?;
    }
    Ok(samples)
}

/// Summarization samples: `{"text", "human_summaries": [...], "machine_summaries": [...], "relevance": [...]}`.
#[derive(Debug)]
pub struct SummarySample {
    pub human: Vec<String>,
    pub machine: Vec<String>,
    pub relevance: Vec<f64>,
}

pub fn summarization(spec: &TaskSpec, split: &str, sources: &mut Sources) -> Result<Vec<SummarySample>> {
    let mut samples = Vec::new();
    for path in split_files(spec, split)? {
        for_each_record(&path, sources, |r| {
            let (machine, relevance) = (r.texts("machine_summaries")?, r.numbers("relevance")?);
            r.same_length(("machine_summaries", machine.len()), ("relevance", relevance.len()))?;
            samples.push(SummarySample { human: r.texts("human_summaries")?, machine, relevance });
            Ok(())
        })?;
    }
    Ok(samples)
}

/// A BEIR-layout retrieval task restricted to the queries judged in one split.
#[derive(Debug, Default)]
pub struct Beir {
    /// (id, text) where text is `(title + " " + text).trim()`, in file order.
    pub docs: Vec<(String, String)>,
    /// (id, text) of the judged queries, in qrels order.
    pub queries: Vec<(String, String)>,
    pub qrels: Qrels,
    /// Judgements naming a document that is not in the corpus (kept: they count as not retrieved).
    pub unknown_doc_judgements: usize,
    /// Judged query ids with no text in queries.jsonl (dropped).
    pub missing_queries: Vec<String>,
}

pub fn retrieval(spec: &TaskSpec, split: &str, sources: &mut Sources) -> Result<Beir> {
    let docs = corpus(spec, sources)?;
    let mut qrels = Qrels::new();
    for part in split.split('+') {
        let path = existing(spec, part, spec.dir.join("qrels").join(format!("{part}.tsv")))?;
        read_qrels(&path, sources, &mut qrels)?;
    }
    let texts = queries(spec, sources)?;
    let missing_queries: Vec<String> = qrels.keys().filter(|q| !texts.contains_key(*q)).cloned().collect();
    missing_queries.iter().for_each(|q| {
        qrels.remove(q);
    });
    if qrels.is_empty() {
        return Err(Error::task(&spec.name, format!("split `{split}`: no judged query has a text in queries.jsonl")));
    }
    let ids: HashSet<&str> = docs.iter().map(|(id, _)| id.as_str()).collect();
    let unknown_doc_judgements = qrels.values().flat_map(|d| d.keys()).filter(|d| !ids.contains(d.as_str())).count();
    let queries = qrels.keys().map(|q| (q.clone(), texts[q].clone())).collect();
    Ok(Beir { docs, queries, qrels, unknown_doc_judgements, missing_queries })
}

fn corpus(spec: &TaskSpec, sources: &mut Sources) -> Result<Vec<(String, String)>> {
    let path = existing(spec, "corpus", spec.dir.join("corpus.jsonl"))?;
    let mut docs = Vec::new();
    let mut seen = HashMap::new();
    for_each_record(&path, sources, |r| {
        let id = r.label("_id")?;
        let text = format!("{} {}", r.optional_text("title")?, r.optional_text("text")?).trim().to_string();
        if text.is_empty() {
            return Err(r.error("text", "empty title and text"));
        }
        if let Some(first) = seen.insert(id.clone(), r.line) {
            return Err(r.error("_id", &format!("duplicate id `{id}` (first at line {first})")));
        }
        docs.push((id, text));
        Ok(())
    })?;
    Ok(docs)
}

fn queries(spec: &TaskSpec, sources: &mut Sources) -> Result<HashMap<String, String>> {
    let path = existing(spec, "queries", spec.dir.join("queries.jsonl"))?;
    let mut texts = HashMap::new();
    for_each_record(&path, sources, |r| {
        texts.insert(r.label("_id")?, r.text("text")?);
        Ok(())
    })?;
    Ok(texts)
}

/// Reads `query-id<TAB>corpus-id<TAB>score` lines (a header line is skipped) into `qrels`.
fn read_qrels(path: &Path, sources: &mut Sources, qrels: &mut Qrels) -> Result<()> {
    let text = sources.read(path)?;
    let mut lines_of: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        if line.trim().is_empty() || (i == 0 && fields.first() == Some(&"query-id")) {
            continue;
        }
        let [query, doc, score] = fields[..] else {
            return Err(Error::line(
                path,
                i + 1,
                format!("expected 3 tab-separated fields (query-id, corpus-id, score), found {}", fields.len()),
            ));
        };
        let score = parse_relevance(score)
            .ok_or_else(|| Error::line(path, i + 1, format!("score `{score}` is not an integer")))?;
        if let Some(first) = lines_of.insert((query.to_string(), doc.to_string()), i + 1) {
            return Err(Error::line(
                path,
                i + 1,
                format!("duplicate judgement of `{doc}` for query `{query}` (first at line {first})"),
            ));
        }
        qrels.entry(query.to_string()).or_default().insert(doc.to_string(), score);
    }
    Ok(())
}

fn parse_relevance(s: &str) -> Option<i64> {
    let s = s.trim();
    s.parse::<i64>()
        .ok()
        .or_else(|| s.parse::<f64>().ok().filter(|v| v.fract() == 0.0 && v.abs() < 1e15).map(|v| v as i64))
}
