//! Bad input gives a clear error naming the task, file, line or field (never a panic), before anything
//! is encoded; judgements of unknown documents are counted and reported, not fatal.

mod common;

use std::path::{Path, PathBuf};

use common::FakeEncoder;
use llm2vec_eval::{run_with_encoder, CacheDir, EvalOptions};

fn run(data: &Path, tasks: &[&str]) -> (Result<llm2vec_eval::Summary, String>, FakeEncoder, PathBuf) {
    let out = data.parent().expect("parent").join("results");
    let mut opts = EvalOptions::new("fake", tasks.iter().map(ToString::to_string).collect(), data, &out);
    opts.cache = CacheDir::Off;
    let encoder = FakeEncoder::new();
    let result = run_with_encoder(&opts, &encoder).map_err(|e| e.to_string());
    (result, encoder, out)
}

fn expect_error(data: &Path, tasks: &[&str], needles: &[&str]) {
    let (result, encoder, _) = run(data, tasks);
    let err = result.err().unwrap_or_else(|| panic!("expected an error mentioning {needles:?}"));
    for needle in needles {
        assert!(err.contains(needle), "error `{err}` does not mention `{needle}`");
    }
    assert_eq!(encoder.inputs.get(), 0, "nothing encoded before the data is checked");
}

fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    (tmp, data)
}

fn replace_line(path: &Path, line: usize, text: &str) {
    let mut lines: Vec<String> = std::fs::read_to_string(path).expect("read").lines().map(str::to_string).collect();
    lines[line - 1] = text.to_string();
    std::fs::write(path, lines.join("\n") + "\n").expect("write");
}

#[test]
fn an_unknown_task_lists_the_known_tasks() {
    let (_tmp, data) = data_dir();
    common::head("STSBenchmark", "test", 5, &data);
    common::head("SICKEntailmentPairs", "test", 5, &data);
    expect_error(
        &data,
        &["STSBenchmark", "STSBenchmarkk"],
        &["unknown task `STSBenchmarkk`", "SICKEntailmentPairs, STSBenchmark"],
    );
}

#[test]
fn a_missing_data_folder_is_named() {
    let (_tmp, data) = data_dir();
    expect_error(&data.join("nope"), &["STSBenchmark"], &["nope"]);
}

#[test]
fn a_missing_split_names_the_file() {
    let (_tmp, data) = data_dir();
    common::classification(3, 5, 2, &data);
    std::fs::remove_file(data.join("Banking77Classification/train.jsonl")).expect("rm");
    expect_error(&data, &["Banking77Classification"], &["Banking77Classification", "split `train`", "train.jsonl"]);

    let (_tmp2, data) = data_dir();
    common::retrieval(2, 5, &data);
    std::fs::remove_file(data.join("SciFact/qrels/test.tsv")).expect("rm");
    expect_error(&data, &["SciFact"], &["split `test`", "qrels/test.tsv"]);
}

#[test]
fn qrels_naming_unknown_documents_are_counted_and_reported() {
    let (_tmp, data) = data_dir();
    common::retrieval(3, 10, &data);
    let qrels = data.join("SciFact/qrels/test.tsv");
    let text = std::fs::read_to_string(&qrels).expect("read");
    let first_query = text.lines().nth(1).expect("row").split('\t').next().expect("qid").to_string();
    std::fs::write(&qrels, format!("{text}{first_query}\tno-such-doc\t1\n{first_query}\talso-missing\t1\n"))
        .expect("write");
    let (result, _, out) = run(&data, &["SciFact"]);
    let summary = result.expect("not fatal");
    let warnings = &summary.results[0].warnings;
    assert!(
        warnings.iter().any(|w| w.starts_with("2 judgements") && w.contains("not in corpus.jsonl")),
        "{warnings:?}"
    );
    assert!(summary.markdown.contains("2 judgements"), "reported in the summary");
    let file = common::result(&out, "SciFact");
    assert!(file["warnings"][0].as_str().is_some_and(|w| w.starts_with("2 judgements")));
}

#[test]
fn labels_with_one_class_only_are_refused() {
    let (_tmp, data) = data_dir();
    common::classification(1, 6, 3, &data);
    expect_error(
        &data,
        &["Banking77Classification"],
        &["Banking77Classification", "split `train`", "labels with one class only"],
    );

    let (_tmp2, data) = data_dir();
    common::head("SICKEntailmentPairs", "test", 6, &data);
    let path = data.join("SICKEntailmentPairs/test.jsonl");
    let only_zero: Vec<String> = std::fs::read_to_string(&path)
        .expect("read")
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("json");
            v["label"] = 0.into();
            v.to_string()
        })
        .collect();
    std::fs::write(&path, only_zero.join("\n")).expect("write");
    expect_error(&data, &["SICKEntailmentPairs"], &["SICKEntailmentPairs", "labels with one class only"]);

    let (_tmp3, data) = data_dir();
    common::clustering(1, 10, &data);
    let path = data.join("BBCNewsClusteringS2S/test.jsonl");
    let mut set: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&path).expect("read").trim()).expect("json");
    set["labels"] = serde_json::json!(vec!["sport"; 10]);
    std::fs::write(&path, set.to_string()).expect("write");
    expect_error(&data, &["BBCNewsClusteringS2S"], &["test.jsonl:1", "one class only"]);
}

#[test]
fn malformed_records_name_file_line_and_field() {
    let (_tmp, data) = data_dir();
    common::head("STSBenchmark", "test", 5, &data);
    let path = data.join("STSBenchmark/test.jsonl");
    replace_line(&path, 3, r#"{"sentence1": "a", "sentence2": "b", "score": "high"}"#);
    expect_error(&data, &["STSBenchmark"], &["test.jsonl:3", "field `score`", "expected a finite number"]);
    replace_line(&path, 3, r#"{"sentence1": "a", "score": 1.0}"#);
    expect_error(&data, &["STSBenchmark"], &["test.jsonl:3", "field `sentence2`: missing"]);
    replace_line(&path, 3, r#"{"sentence1": "  ", "sentence2": "b", "score": 1.0}"#);
    expect_error(&data, &["STSBenchmark"], &["test.jsonl:3", "field `sentence1`: empty text"]);
    replace_line(&path, 3, "{not json");
    expect_error(&data, &["STSBenchmark"], &["test.jsonl:3", "invalid JSON"]);

    let (_tmp2, data) = data_dir();
    common::retrieval(2, 5, &data);
    let qrels = data.join("SciFact/qrels/test.tsv");
    replace_line(&qrels, 2, "1\t31715818");
    expect_error(&data, &["SciFact"], &["qrels/test.tsv:2", "3 tab-separated fields"]);
    replace_line(&qrels, 2, "1\t31715818\tyes");
    expect_error(&data, &["SciFact"], &["qrels/test.tsv:2", "not an integer"]);
}

#[test]
fn an_encoder_failure_names_the_text() {
    let (_tmp, data) = data_dir();
    common::head("STSBenchmark", "test", 5, &data);
    replace_line(
        &data.join("STSBenchmark/test.jsonl"),
        4,
        r#"{"sentence1": "a FAIL-ENCODE text", "sentence2": "b", "score": 1.0}"#,
    );
    let (result, _, _) = run(&data, &["STSBenchmark"]);
    let err = result.expect_err("encoder failure");
    assert!(err.contains("STSBenchmark: cannot encode text \"a FAIL-ENCODE text\""), "{err}");
    assert!(err.contains("this text cannot be encoded"), "{err}");
}

#[test]
fn a_bad_task_json_names_the_field() {
    let (_tmp, data) = data_dir();
    common::head("STSBenchmark", "test", 5, &data);
    let spec = data.join("STSBenchmark/task.json");
    std::fs::write(&spec, r#"{"name": "STSBenchmark", "type": "Regression", "main_score": "cosine_spearman"}"#)
        .expect("write");
    expect_error(
        &data,
        &["STSBenchmark"],
        &["task.json", "field `type`", "unknown type `Regression`", "STS, PairClassification"],
    );
    std::fs::write(&spec, r#"{"name": "STSBenchmark", "type": "STS"}"#).expect("write");
    expect_error(&data, &["STSBenchmark"], &["task.json", "field `main_score`: missing"]);
}

#[test]
fn a_main_score_the_type_does_not_compute_is_named_with_the_alternatives() {
    let (_tmp, data) = data_dir();
    common::head("STSBenchmark", "test", 5, &data);
    std::fs::write(
        data.join("STSBenchmark/task.json"),
        r#"{"name": "STSBenchmark", "type": "STS", "main_score": "ndcg_at_10"}"#,
    )
    .expect("write");
    let (result, _, _) = run(&data, &["STSBenchmark"]);
    let err = result.expect_err("unknown main score");
    for needle in ["field `main_score`", "`ndcg_at_10` is not a score of a STS task", "cosine_spearman"] {
        assert!(err.contains(needle), "error `{err}` does not mention `{needle}`");
    }
}
