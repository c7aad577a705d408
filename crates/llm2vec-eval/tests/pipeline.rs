//! The whole evaluation on tiny task folders cut from `../shared/data`, with a fast stand-in encoder:
//! every task type, the MTEB-shaped result files, the summary, instructions, splits and the cache.

mod common;

use std::path::Path;

use common::FakeEncoder;
use llm2vec_eval::{run_with_encoder, CacheDir, EvalOptions};
use serde_json::{json, Value};

const DEV_TASKS: [&str; 5] =
    ["STSBenchmark", "SICKEntailmentPairs", "Banking77Classification", "BBCNewsClusteringS2S", "SciFact"];

fn tiny_dev_data(dir: &Path) {
    common::head("STSBenchmark", "test", 40, dir);
    common::head("SICKEntailmentPairs", "test", 60, dir);
    common::classification(4, 12, 5, dir);
    common::clustering(2, 60, dir);
    common::retrieval(6, 50, dir);
}

/// A reranking and a summarization task in MTEB's layout, written here (no such data in shared/).
fn ranking_tasks(dir: &Path) {
    let task = |name: &str, kind: &str, main: &str, lines: Vec<Value>| {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder).expect("mkdir");
        let spec = json!({ "name": name, "type": kind, "main_score": main, "splits": ["test"], "instruction_hint": "Find related text" });
        std::fs::write(folder.join("task.json"), spec.to_string()).expect("task.json");
        std::fs::write(folder.join("test.jsonl"), lines.iter().map(|l| format!("{l}\n")).collect::<String>())
            .expect("test.jsonl");
    };
    task(
        "TinyReranking",
        "Reranking",
        "map",
        vec![
            json!({ "query": "red apple pie", "positive": ["apple pie with red apples"], "negative": ["blue car engine", "green tea"] }),
            json!({ "query": "fast car", "positive": ["a fast red car", "car racing"], "negative": ["slow snail"] }),
            json!({ "query": "no negatives here", "positive": ["x"], "negative": [] }),
        ],
    );
    task(
        "TinySummarization",
        "Summarization",
        "cosine_spearman",
        vec![
            json!({ "text": "t", "human_summaries": ["the cat sat on the mat", "a cat on a mat"], "machine_summaries": ["cat mat", "dog park", "the cat sat"], "relevance": [3.0, 1.0, 4.5] }),
            json!({ "text": "u", "human_summaries": ["stocks fell sharply"], "machine_summaries": ["stocks fell", "markets dropped sharply", "weather is nice"], "relevance": [4.0, 3.5, 1.0] }),
        ],
    );
}

fn options(data: &Path, out: &Path, cache: &Path, tasks: &[&str]) -> EvalOptions {
    let mut opts = EvalOptions::new("fake", tasks.iter().map(ToString::to_string).collect(), data, out);
    opts.cache = CacheDir::At(cache.to_path_buf());
    opts
}

fn main_score(result: &Value, split: &str) -> f64 {
    result["scores"][split][0]["main_score"]
        .as_f64()
        .unwrap_or_else(|| panic!("no main_score for split {split} in {result}"))
}

#[test]
fn every_task_type_writes_mteb_shaped_results_and_a_summary() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, out, cache) = (tmp.path().join("data"), tmp.path().join("results"), tmp.path().join("cache"));
    tiny_dev_data(&data);
    ranking_tasks(&data);
    let mut tasks = DEV_TASKS.to_vec();
    tasks.extend(["TinyReranking", "TinySummarization"]);
    let encoder = FakeEncoder::new();
    let summary = run_with_encoder(&options(&data, &out, &cache, &tasks), &encoder).expect("evaluation");
    assert_eq!(summary.results.len(), tasks.len());
    assert!(summary.encoded > 0 && summary.encoded == encoder.inputs.get(), "each distinct input encoded once");

    for (task, split, metric) in [
        ("STSBenchmark", "test", "cosine_spearman"),
        ("SICKEntailmentPairs", "test", "cosine_ap"),
        ("Banking77Classification", "test", "accuracy"),
        ("BBCNewsClusteringS2S", "test", "v_measure"),
        ("SciFact", "test", "ndcg_at_10"),
        ("TinyReranking", "test", "map"),
        ("TinySummarization", "test", "cosine_spearman"),
    ] {
        let r = common::result(&out, task);
        assert_eq!(r["task_name"], task);
        let entry = &r["scores"][split][0];
        assert_eq!(entry["hf_subset"], "default");
        assert_eq!(entry["main_score"], entry[metric], "{task}: main_score is {metric}");
        let score = main_score(&r, split);
        assert!(score.is_finite() && (-1.0..=1.0).contains(&score), "{task}: {score}");
        assert!(
            r["evaluation_time"].as_f64().is_some() && r["dataset_revision"].as_str().is_some_and(|s| s.len() == 16)
        );
        assert_eq!(r["model"]["name"], "fake-bag-of-words");
    }

    let sts = common::result(&out, "STSBenchmark");
    assert_eq!(sts["instruction"]["text"], "Retrieve semantically similar text:");
    assert_eq!(sts["instruction"]["applies_to"], "every text");
    for key in ["cosine_pearson", "manhattan_spearman", "euclidean_pearson"] {
        assert!(sts["scores"]["test"][0][key].is_number(), "STS {key}");
    }
    let scifact = common::result(&out, "SciFact");
    assert_eq!(scifact["instruction"]["applies_to"], "queries only (documents get no instruction)");
    for key in ["ndcg_at_1", "map_at_1000", "recall_at_100", "precision_at_5", "mrr_at_10"] {
        assert!(scifact["scores"]["test"][0][key].is_number(), "retrieval {key}");
    }
    let banking = common::result(&out, "Banking77Classification");
    assert_eq!(banking["scores"]["test"][0]["scores_per_experiment"].as_array().map(Vec::len), Some(10));
    let pairs = common::result(&out, "SICKEntailmentPairs");
    for key in ["cosine_f1_threshold", "dot_accuracy", "manhattan_ap", "max_ap"] {
        assert!(pairs["scores"]["test"][0][key].is_number(), "pairs {key}");
    }
    let clusters = common::result(&out, "BBCNewsClusteringS2S");
    assert_eq!(clusters["scores"]["test"][0]["v_measures"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        common::result(&out, "TinyReranking")["instruction"]["text"],
        "Find related text:",
        "hint made to end in ':'"
    );

    let md = std::fs::read_to_string(out.join("summary.md")).expect("summary.md");
    assert_eq!(md, summary.markdown);
    for needle in [
        "| STSBenchmark |",
        "| SciFact |",
        "| Retrieval | 1 |",
        "| Classification | 1 |",
        "**Overall** (mean over data sets) | 7 |",
    ] {
        assert!(md.contains(needle), "summary lacks `{needle}`:\n{md}");
    }
    let mean = summary.results.iter().map(|r| r.main_score).sum::<f64>() / 7.0;
    assert!(md.contains(&format!("**{:.2}**", mean * 100.0)), "overall is the mean over data sets:\n{md}");
}

#[test]
fn a_second_run_and_a_second_task_on_the_same_texts_come_from_the_cache() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, out, cache) = (tmp.path().join("data"), tmp.path().join("results"), tmp.path().join("cache"));
    common::head("STSBenchmark", "test", 30, &data);
    common::retrieval(4, 30, &data);
    let encoder = FakeEncoder::new();
    let first =
        run_with_encoder(&options(&data, &out, &cache, &["STSBenchmark", "SciFact"]), &encoder).expect("first run");
    let encoded = encoder.inputs.get();
    assert_eq!(first.encoded, encoded);

    let second =
        run_with_encoder(&options(&data, &out, &cache, &["SciFact", "STSBenchmark"]), &encoder).expect("second run");
    assert_eq!(encoder.inputs.get(), encoded, "nothing re-encoded");
    assert_eq!((second.encoded, second.cached), (0, encoded));
    for (a, b) in first.results.iter().zip(second.results.iter().rev()) {
        assert_eq!(a.main_score, b.main_score, "{}", a.name);
    }

    // A second task on the same texts with the same instruction: all from the cache.
    let copy = data.join("MySTS");
    std::fs::create_dir_all(&copy).expect("mkdir");
    std::fs::copy(data.join("STSBenchmark/test.jsonl"), copy.join("test.jsonl")).expect("copy");
    let spec = json!({ "name": "MySTS", "type": "STS", "main_score": "cosine_spearman", "instruction_hint": "Retrieve semantically similar text:" });
    std::fs::write(copy.join("task.json"), spec.to_string()).expect("task.json");
    let third = run_with_encoder(&options(&data, &out, &cache, &["MySTS"]), &encoder).expect("third run");
    assert_eq!((third.encoded, encoder.inputs.get()), (0, encoded));
    assert_eq!(third.results[0].main_score, first.results[0].main_score);
}

#[test]
fn instructions_and_splits_can_be_overridden() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, out) = (tmp.path().join("data"), tmp.path().join("results"));
    common::head("STSBenchmark", "test", 20, &data);
    common::head("STSBenchmark", "dev", 15, &data);
    let encoder = FakeEncoder::new();
    let mut opts = EvalOptions::new("fake", vec!["STSBenchmark".into()], &data, &out);
    opts.cache = CacheDir::Off;
    opts.instructions.insert("STSBenchmark".into(), "Compare".into());
    opts.splits.insert("STSBenchmark".into(), "dev+test".into());
    let summary = run_with_encoder(&opts, &encoder).expect("evaluation");
    let r = common::result(&out, "STSBenchmark");
    assert_eq!(r["instruction"]["text"], "Compare:");
    assert!(r["scores"]["dev+test"][0]["main_score"].is_number());
    assert_eq!(summary.results[0].split, "dev+test");
    assert!(encoder.inputs.get() <= 70 && encoder.inputs.get() > 40, "35 pairs, distinct sentences only");
}
