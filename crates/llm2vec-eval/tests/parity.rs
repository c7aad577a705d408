//! Metric parity with the Python references MTEB uses (scipy, sklearn, pytrec_eval, numpy's RandomState)
//! on the fixed inputs of `tests/fixtures/eval_reference.json`, made by
//! `scripts/reference/make_eval_fixtures.py`. Deterministic metrics agree to 1e-6; logistic regression
//! and k-means (solver- and float-dependent) print their difference from sklearn and must stay within
//! half a point.

use std::collections::{BTreeMap, HashMap};

use llm2vec_eval::kmeans::MiniBatchKMeans;
use llm2vec_eval::lbfgs::Params;
use llm2vec_eval::logreg::{LogisticRegression, Matrix};
use llm2vec_eval::metrics;
use llm2vec_eval::rng::RandomState;
use llm2vec_eval::trec;
use serde_json::Value;

const TOL: f64 = 1e-6;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/eval_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture JSON")
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("integer") as usize).collect()
}

fn close(name: &str, got: f64, want: f64) {
    assert!((got - want).abs() <= TOL, "{name}: got {got}, reference {want}");
}

#[test]
fn random_state_matches_numpy() {
    let f = fixture();
    let r = &f["rng"];
    let mut rs = RandomState::new(42);
    let samples: Vec<f64> = (0..3).map(|_| rs.random_sample()).collect();
    assert_eq!(samples, f64s(&r["random_sample_seed42"]));
    let mut rs = RandomState::new(7);
    assert_eq!((0..20).map(|_| rs.randint(1112)).collect::<Vec<_>>(), usizes(&r["randint_seed7_0_1112_x20"]));
    assert_eq!(RandomState::new(3).choice_without_replacement(25, 25), usizes(&r["permutation_seed3_25"]));
    let mut x: Vec<usize> = (0..30).collect();
    RandomState::new(42).shuffle(&mut x);
    assert_eq!(x, usizes(&r["shuffle_seed42_arange30"]));
    let p = vec![(1.0f32 / 1112.0) as f64; 1112];
    let cdf = llm2vec_eval::rng::cdf(&p);
    assert_eq!(RandomState::new(42).choice_cdf(&cdf, 12), usizes(&r["choice_seed42_1112_x12_uniform_p"]));
}

#[test]
fn correlations_match_scipy() {
    for (i, case) in fixture()["correlation"].as_array().expect("cases").iter().enumerate() {
        let (x, y) = (f64s(&case["x"]), f64s(&case["y"]));
        close(&format!("pearson case {i}"), metrics::pearson(&x, &y), case["pearson"].as_f64().expect("pearson"));
        close(&format!("spearman case {i}"), metrics::spearman(&x, &y), case["spearman"].as_f64().expect("spearman"));
    }
}

#[test]
fn average_precision_matches_sklearn() {
    for (i, case) in fixture()["average_precision"].as_array().expect("cases").iter().enumerate() {
        let labels: Vec<bool> = usizes(&case["labels"]).iter().map(|&l| l == 1).collect();
        let ap = metrics::average_precision(&labels, &f64s(&case["scores"])).expect("positives");
        close(&format!("AP case {i}"), ap, case["ap"].as_f64().expect("ap"));
    }
}

#[test]
fn label_metrics_match_sklearn() {
    for (i, case) in fixture()["labels"].as_array().expect("cases").iter().enumerate() {
        let (t, p) = (usizes(&case["truth"]), usizes(&case["pred"]));
        close(&format!("v_measure case {i}"), metrics::v_measure(&t, &p), case["v_measure"].as_f64().expect("v"));
        close(&format!("accuracy case {i}"), metrics::accuracy(&t, &p), case["accuracy"].as_f64().expect("acc"));
        close(&format!("f1 macro case {i}"), metrics::f1_macro(&t, &p), case["f1_macro"].as_f64().expect("f1"));
        close(
            &format!("f1 weighted case {i}"),
            metrics::f1_weighted(&t, &p),
            case["f1_weighted"].as_f64().expect("f1w"),
        );
    }
}

#[test]
fn pair_thresholds_match_brute_force_with_sklearn() {
    for (i, case) in fixture()["thresholds"].as_array().expect("cases").iter().enumerate() {
        let labels: Vec<bool> = usizes(&case["labels"]).iter().map(|&l| l == 1).collect();
        let higher = case["higher_is_similar"].as_bool().expect("bool");
        let t = metrics::threshold_scores(&f64s(&case["scores"]), &labels, higher).expect("positives");
        for (name, got) in [
            ("accuracy", t.accuracy),
            ("accuracy_threshold", t.accuracy_threshold),
            ("f1", t.f1),
            ("f1_threshold", t.f1_threshold),
            ("precision", t.precision),
            ("recall", t.recall),
            ("ap", t.ap),
        ] {
            close(&format!("{name} case {i}"), got, case[name].as_f64().expect(name));
        }
    }
}

#[test]
fn ranking_metrics_match_pytrec_eval() {
    let f = fixture();
    let case = &f["trec"];
    let mut qrels = trec::Qrels::new();
    for (q, docs) in case["qrels"].as_object().expect("qrels") {
        let judged: HashMap<String, i64> =
            docs.as_object().expect("docs").iter().map(|(d, r)| (d.clone(), r.as_i64().expect("rel"))).collect();
        qrels.insert(q.clone(), judged);
    }
    let mut run = trec::Run::new();
    for (q, docs) in case["run"].as_object().expect("run") {
        run.insert(
            q.clone(),
            docs.as_object().expect("docs").iter().map(|(d, s)| (d.clone(), s.as_f64().expect("score"))).collect(),
        );
    }
    let ks = usizes(&case["k_values"]);
    let got = trec::evaluate(&qrels, &run, &ks);
    let want = &case["expected"];
    assert_eq!(got.queries as u64, want["queries"].as_u64().expect("queries"));
    let measures: BTreeMap<&str, &Vec<f64>> = [
        ("ndcg", &got.ndcg),
        ("map", &got.map),
        ("recall", &got.recall),
        ("precision", &got.precision),
        ("mrr", &got.mrr),
    ]
    .into();
    for (name, values) in measures {
        for ((k, g), w) in ks.iter().zip(values).zip(f64s(&want[name])) {
            close(&format!("{name}@{k}"), *g, w);
        }
    }
}

/// The fixture script's `synthetic`: blobs from RandomState draws, optionally with two huge dimensions.
fn synthetic(case: &Value, n: usize) -> (Vec<f32>, Vec<usize>) {
    let field = |k: &str| case[k].as_u64().expect(k) as usize;
    let (d, k) = (field("dim"), field("classes"));
    let spread = case["spread"].as_f64().expect("spread");
    let mut rs = RandomState::new(field("seed") as u32);
    let labels: Vec<usize> = (0..n).map(|_| rs.randint(k)).collect();
    let centers: Vec<f64> = (0..k * d).map(|_| rs.random_sample() * spread).collect();
    let outliers = case["outliers"].as_bool().expect("outliers");
    let mut x = Vec::with_capacity(n * d);
    for &l in &labels {
        for j in 0..d {
            let mut v = centers[l * d + j] + rs.random_sample() - 0.5;
            if outliers {
                if j < 2 {
                    v *= 50.0;
                }
                v += 5.0;
            }
            x.push(v as f32);
        }
    }
    (x, labels)
}

fn fit_and_predict(x: &[f32], y: &[usize], rows: &[usize], test: &[f64], dim: usize) -> Vec<usize> {
    let train: Vec<f64> = rows.iter().flat_map(|&r| x[r * dim..(r + 1) * dim].iter().map(|&v| v as f64)).collect();
    let (local, classes) = metrics::encode_labels(&rows.iter().map(|&r| y[r]).collect::<Vec<_>>());
    let model = LogisticRegression::fit(&Matrix { data: &train, dim }, &local, classes.len(), 1.0, Params::default());
    model.predict(&Matrix { data: test, dim }).into_iter().map(|c| classes[c]).collect()
}

#[test]
fn logistic_regression_is_within_half_a_point_of_sklearn() {
    for case in fixture()["logreg"].as_array().expect("cases") {
        let field = |k: &str| case[k].as_u64().expect(k) as usize;
        let (n_train, n_test, dim) = (field("n_train"), field("n_test"), field("dim"));
        let (x, y) = synthetic(case, n_train + n_test);
        let test: Vec<f64> = x[n_train * dim..].iter().map(|&v| v as f64).collect();
        let predicted = fit_and_predict(&x, &y, &(0..n_train).collect::<Vec<_>>(), &test, dim);
        let reference = usizes(&case["predictions"]);
        let agree = predicted.iter().zip(&reference).filter(|(a, b)| a == b).count() as f64 / n_test as f64;
        let acc = metrics::accuracy(&y[n_train..], &predicted);
        let want = case["accuracy"].as_f64().expect("accuracy");
        println!(
            "logreg {}: accuracy {acc:.4} vs sklearn {want:.4} (diff {:+.2} points), same prediction on {:.1}% of test rows",
            case["name"],
            (acc - want) * 100.0,
            agree * 100.0
        );
        assert!((acc - want).abs() < 0.005, "accuracy differs from sklearn by more than half a point");
    }
}

#[test]
fn classification_protocol_matches_mteb_sampling_and_sklearn() {
    let f = fixture();
    let case = &f["classification_protocol"];
    let field = |k: &str| case[k].as_u64().expect(k) as usize;
    let (n_train, n_test, dim) = (field("n_train"), field("n_test"), field("dim"));
    let (x, y) = synthetic(case, n_train + n_test);
    let labels: Vec<String> = y[..n_train].iter().map(ToString::to_string).collect();
    let samples = llm2vec_eval::evaluate::undersample(&labels, field("samples_per_label"), field("experiments"), 42);
    assert_eq!(samples[0], usizes(&case["first_experiment_rows"]));
    assert_eq!(samples[samples.len() - 1], usizes(&case["last_experiment_rows"]));
    let test: Vec<f64> = x[n_train * dim..].iter().map(|&v| v as f64).collect();
    let accuracies: Vec<f64> = samples
        .iter()
        .map(|rows| metrics::accuracy(&y[n_train..], &fit_and_predict(&x, &y, rows, &test, dim)))
        .collect();
    let mean = accuracies.iter().sum::<f64>() / accuracies.len() as f64;
    let want = case["accuracy"].as_f64().expect("accuracy");
    let per: Vec<String> =
        accuracies.iter().zip(f64s(&case["accuracies"])).map(|(a, b)| format!("{:+.2}", (a - b) * 100.0)).collect();
    println!("classification protocol: mean accuracy {mean:.4} vs sklearn {want:.4} (diff {:+.2} points); per experiment: {}", (mean - want) * 100.0, per.join(" "));
    assert!((mean - want).abs() < 0.005, "mean accuracy differs from sklearn by more than half a point");
}

#[test]
fn minibatch_kmeans_is_within_half_a_point_of_sklearn() {
    for case in fixture()["kmeans"].as_array().expect("cases") {
        let (n, dim) = (case["n"].as_u64().expect("n") as usize, case["dim"].as_u64().expect("dim") as usize);
        let (x, y) = synthetic(case, n);
        let predicted = MiniBatchKMeans::new(case["classes"].as_u64().expect("k") as usize, 42).fit_predict(&x, dim);
        let v = metrics::v_measure(&y, &predicted);
        let want = case["v_measure"].as_f64().expect("v");
        let same_partition = metrics::v_measure(&usizes(&case["labels"]), &predicted);
        println!("k-means n={n}: v-measure {v:.6} vs sklearn {want:.6} (diff {:+.4} points); partition agreement (v-measure between the two) {same_partition:.6}", (v - want) * 100.0);
        assert!((v - want).abs() < 0.005, "v-measure differs from sklearn by more than half a point");
    }
}
