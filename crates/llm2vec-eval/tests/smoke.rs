//! End to end with a real (tiny, random) llm2vec model: a handful of lines of four dev tasks, the result
//! files and summary, and a second run served entirely from the embedding cache.

mod common;

use std::path::PathBuf;

use llm2vec_eval::{run, CacheDir, EvalOptions};

fn tiny_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../llm2vec/tests/fixtures/parity/llama/model")
}

#[test]
fn tiny_model_end_to_end_then_from_the_cache() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, out, cache) = (tmp.path().join("data"), tmp.path().join("results"), tmp.path().join("cache"));
    common::head("STSBenchmark", "test", 8, &data);
    common::classification(3, 6, 3, &data);
    common::clustering(1, 24, &data);
    common::retrieval(3, 12, &data);
    let tasks = ["STSBenchmark", "Banking77Classification", "BBCNewsClusteringS2S", "SciFact"];
    let mut opts =
        EvalOptions::new(tiny_model().to_string_lossy(), tasks.iter().map(ToString::to_string).collect(), &data, &out);
    opts.cache = CacheDir::At(cache.clone());
    opts.encoder.max_length = Some(64);

    let first = run(&opts).expect("first run");
    assert!(first.encoded > 0);
    assert_eq!(first.cached, 0);
    for r in &first.results {
        assert!(r.main_score.is_finite(), "{}: {}", r.name, r.main_score);
        let file = common::result(&out, &r.name);
        assert_eq!(file["model"]["model_type"], "llama");
        assert_eq!(file["model"]["settings"]["attention"], "bidirectional");
        assert_eq!(file["model"]["settings"]["max_length"], 64);
        assert_eq!(file["model"]["settings"]["dtype"], "f32");
        assert_eq!(file["model"]["settings"]["cpu_kernels"], llm2vec::cpu_kernels());
        assert_eq!(file["encoding"]["encoded"], r.encoded);
        let written = file["scores"][&r.split][0]["main_score"].as_f64().expect("main_score");
        assert!((written - r.main_score).abs() < 1e-12, "{}: {written} vs {}", r.name, r.main_score);
    }
    assert!(out.join("summary.md").is_file());

    let second = run(&opts).expect("second run");
    assert_eq!((second.encoded, second.cached), (0, first.encoded), "every text from the cache");
    for (a, b) in first.results.iter().zip(&second.results) {
        assert_eq!(a.main_score, b.main_score, "{}", a.name);
    }

    // Other settings are another cache entry.
    opts.encoder.doc_max_length = Some(16);
    let third = run(&opts).expect("third run");
    assert_eq!(third.encoded, first.encoded, "new settings, new embeddings");
}

/// Poolings computed alongside another fill the cache as their own runs would: evaluating them next
/// encodes nothing and scores as a fresh run.
#[test]
fn also_poolings_are_cached_as_their_own_runs() {
    use llm2vec::Pooling;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, out, cache) = (tmp.path().join("data"), tmp.path().join("results"), tmp.path().join("cache"));
    common::head("STSBenchmark", "test", 8, &data);
    let mut opts = EvalOptions::new(tiny_model().to_string_lossy(), vec!["STSBenchmark".into()], &data, &out);
    opts.cache = CacheDir::At(cache);
    opts.encoder.pooling = Some(Pooling::Mean);
    opts.also_poolings = vec![Pooling::WeightedMean];
    let first = run(&opts).expect("mean, also weighted mean");
    assert!(first.encoded > 0);

    opts.encoder.pooling = Some(Pooling::WeightedMean);
    opts.also_poolings.clear();
    let cached = run(&opts).expect("weighted mean from the cache");
    assert_eq!((cached.encoded, cached.cached), (0, first.encoded));
    opts.cache = CacheDir::Off;
    let fresh = run(&opts).expect("weighted mean afresh");
    let (a, b) = (cached.results[0].main_score, fresh.results[0].main_score);
    assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    assert!((first.results[0].main_score - a).abs() > 1e-9, "mean and weighted mean differ");
}

/// Tasks evaluated one run at a time into one folder: the summary covers them all while the model and
/// settings stay the same, and leaves out (and counts) results made otherwise.
#[test]
fn summary_covers_earlier_runs_with_the_same_settings() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, out) = (tmp.path().join("data"), tmp.path().join("results"));
    common::head("STSBenchmark", "test", 8, &data);
    common::classification(3, 6, 3, &data);
    common::retrieval(3, 12, &data);
    let opts = |task: &str| {
        let mut o = EvalOptions::new(tiny_model().to_string_lossy(), vec![task.to_string()], &data, &out);
        o.cache = CacheDir::At(tmp.path().join("cache"));
        o.encoder.max_length = Some(64);
        o
    };
    let sts = run(&opts("STSBenchmark")).expect("STS run");
    let banking = run(&opts("Banking77Classification")).expect("classification run");
    let summary = std::fs::read_to_string(out.join("summary.md")).expect("summary");
    assert_eq!(summary, banking.markdown);
    assert!(
        summary.contains("| STSBenchmark | STS |") && summary.contains("| Banking77Classification | Classification |"),
        "{summary}"
    );
    assert!(
        summary.contains("From earlier runs into this folder with the same model and settings: STSBenchmark."),
        "{summary}"
    );
    let mean = (sts.results[0].main_score + banking.results[0].main_score) / 2.0 * 100.0;
    assert!(summary.contains(&format!("| **Overall** (mean over data sets) | 2 | **{mean:.2}** |")), "{summary}");

    let mut other = opts("SciFact");
    other.encoder.doc_max_length = Some(16);
    let scifact = run(&other).expect("retrieval run, other settings");
    assert!(scifact.markdown.contains("| **Overall** (mean over data sets) | 1 |"), "{}", scifact.markdown);
    assert!(scifact.markdown.contains("Left out: 2 result file(s)"), "{}", scifact.markdown);
    assert!(!scifact.markdown.contains("| STSBenchmark |"), "{}", scifact.markdown);
}

#[test]
fn the_cache_key_follows_the_weights_not_the_training_logs() {
    use llm2vec_eval::embed::{LlmEncoder, TextEncoder};
    let tmp = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(tiny_model()).unwrap() {
        let from = entry.unwrap().path();
        std::fs::copy(&from, tmp.path().join(from.file_name().unwrap())).unwrap();
    }
    let model = tmp.path().to_string_lossy().into_owned();
    let fingerprint = || LlmEncoder::load(&model, llm2vec::Options::default(), &[]).unwrap().fingerprint().to_string();
    let first = fingerprint();
    std::fs::write(tmp.path().join("metrics.jsonl"), "{}\n").unwrap();
    std::fs::write(tmp.path().join("loss.svg"), "<svg/>").unwrap();
    assert_eq!(fingerprint(), first, "logs beside the weights");
    let weights = tmp.path().join("model.safetensors");
    std::fs::write(&weights, std::fs::read(&weights).unwrap()).unwrap();
    assert_ne!(fingerprint(), first, "rewritten weights");
}
