//! Helpers shared by the integration tests: tiny task folders cut from `../shared/data`, and a fast
//! stand-in encoder that counts what it encodes.

#![allow(dead_code)] // each test binary uses a subset

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use llm2vec::Input;
use llm2vec_eval::TextEncoder;
use serde_json::{json, Value};

/// `shared/data` beside the repository root.
pub fn shared_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).expect("JSON line")
}

fn write(path: &Path, lines: &[String]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).expect("write");
}

fn copy_task_json(task: &str, out: &Path) {
    let src = shared_data().join(task).join("task.json");
    std::fs::create_dir_all(out.join(task)).expect("mkdir");
    std::fs::copy(&src, out.join(task).join("task.json")).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
}

/// The first `n` lines of a split file.
pub fn head(task: &str, split: &str, n: usize, out: &Path) {
    copy_task_json(task, out);
    let all = lines(&shared_data().join(task).join(format!("{split}.jsonl")));
    write(&out.join(task).join(format!("{split}.jsonl")), &all[..n.min(all.len())]);
}

/// Up to `per_label` lines of each of the first `labels` labels met.
fn by_label(task: &str, split: &str, keep: &[String], per_label: usize, out: &Path) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let picked: Vec<String> = lines(&shared_data().join(task).join(format!("{split}.jsonl")))
        .into_iter()
        .filter(|l| {
            let label = parse(l)["label"].as_str().unwrap_or_default().to_string();
            let c = counts.entry(label.clone()).or_default();
            *c += 1;
            keep.contains(&label) && *c <= per_label
        })
        .collect();
    write(&out.join(task).join(format!("{split}.jsonl")), &picked);
}

/// Banking77 cut to `labels` intents, `train_per_label` / `test_per_label` texts each.
pub fn classification(labels: usize, train_per_label: usize, test_per_label: usize, out: &Path) {
    let task = "Banking77Classification";
    copy_task_json(task, out);
    let mut keep: Vec<String> = Vec::new();
    for l in lines(&shared_data().join(task).join("test.jsonl")) {
        let label = parse(&l)["label"].as_str().expect("label").to_string();
        if !keep.contains(&label) && keep.len() < labels {
            keep.push(label);
        }
    }
    by_label(task, "train", &keep, train_per_label, out);
    by_label(task, "test", &keep, test_per_label, out);
}

/// BBC News S2S cut to `sets` sets of their first `items` titles.
pub fn clustering(sets: usize, items: usize, out: &Path) {
    let task = "BBCNewsClusteringS2S";
    copy_task_json(task, out);
    let cut: Vec<String> = lines(&shared_data().join(task).join("test.jsonl"))
        .iter()
        .take(sets)
        .map(|l| {
            let v = parse(l);
            let take = |k: &str| v[k].as_array().expect(k).iter().take(items).cloned().collect::<Vec<_>>();
            json!({ "sentences": take("sentences"), "labels": take("labels") }).to_string()
        })
        .collect();
    write(&out.join(task).join("test.jsonl"), &cut);
}

/// SciFact cut to the first `queries` judged test queries, their documents and `extra_docs` others.
pub fn retrieval(queries: usize, extra_docs: usize, out: &Path) {
    let task = "SciFact";
    copy_task_json(task, out);
    let src = shared_data().join(task);
    let qrels = lines(&src.join("qrels/test.tsv"));
    let mut kept_q: Vec<String> = Vec::new();
    let mut rows = vec![qrels[0].clone()];
    for row in &qrels[1..] {
        let q = row.split('\t').next().expect("query id").to_string();
        if !kept_q.contains(&q) {
            if kept_q.len() == queries {
                break;
            }
            kept_q.push(q);
        }
        rows.push(row.clone());
    }
    let docs: HashSet<String> = rows[1..].iter().map(|r| r.split('\t').nth(1).expect("doc").to_string()).collect();
    let corpus: Vec<String> = lines(&src.join("corpus.jsonl"))
        .into_iter()
        .enumerate()
        .filter(|(i, l)| *i < extra_docs || docs.contains(parse(l)["_id"].as_str().unwrap_or_default()))
        .map(|(_, l)| l)
        .collect();
    let texts: Vec<String> = lines(&src.join("queries.jsonl"))
        .into_iter()
        .filter(|l| kept_q.iter().any(|q| parse(l)["_id"].as_str() == Some(q)))
        .collect();
    write(&out.join(task).join("qrels/test.tsv"), &rows);
    write(&out.join(task).join("corpus.jsonl"), &corpus);
    write(&out.join(task).join("queries.jsonl"), &texts);
}

/// A fast encoder: hashed bag of words (so that texts sharing words are similar), counting its inputs.
pub struct FakeEncoder {
    pub inputs: Cell<usize>,
    description: Value,
}

impl FakeEncoder {
    pub fn new() -> Self {
        Self { inputs: Cell::new(0), description: json!({ "name": "fake-bag-of-words", "settings": { "dim": DIM } }) }
    }
}

const DIM: usize = 24;

fn hash(word: &str) -> u64 {
    word.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

impl TextEncoder for FakeEncoder {
    fn fingerprint(&self) -> &str {
        "fake-bag-of-words-v1"
    }

    fn description(&self) -> &Value {
        &self.description
    }

    fn dim(&self) -> usize {
        DIM
    }

    fn encode(&self, inputs: &[Input]) -> llm2vec_eval::Result<Vec<f32>> {
        if let Some(i) = inputs.iter().position(|input| input.text.contains("FAIL-ENCODE")) {
            return Err(llm2vec::Error::Input(format!("input {}: this text cannot be encoded", i + 1)).into());
        }
        self.inputs.set(self.inputs.get() + inputs.len());
        let mut out = vec![0f32; inputs.len() * DIM];
        for (row, input) in out.chunks_mut(DIM).zip(inputs) {
            row[0] = 0.1 * (input.instruction.len() % 7) as f32;
            for word in input.text.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
                let h = hash(word);
                row[(h % DIM as u64) as usize] += if h & (1 << 40) == 0 { 1.0 } else { -1.0 };
            }
        }
        Ok(out)
    }
}

/// Reads a result file.
pub fn result(dir: &Path, task: &str) -> Value {
    let path = dir.join(format!("{task}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("result JSON")
}
