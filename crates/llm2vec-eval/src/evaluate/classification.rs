//! Classification (MTEB's AbsTaskClassification with `logReg`): `n_experiments` times, shuffle the train
//! indices in place with a freshly seeded `RandomState` (MTEB re-seeds NumPy's global generator in each
//! evaluator), keep the first `samples_per_label` of each label, fit a logistic regression on their raw
//! embeddings and score the test split. Scores are averaged over the experiments. Every text carries
//! the instruction; only the sampled train texts are encoded, as in MTEB.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::{mean, num, Context, Scores};
use crate::data::Labeled;
use crate::embed::Vectors;
use crate::error::Result;
use crate::lbfgs::Params;
use crate::logreg::{LogisticRegression, Matrix};
use crate::metrics::{accuracy, average_precision, encode_labels, f1_macro, f1_weighted};
use crate::rng::RandomState;

/// The train rows of each experiment, in sampled order (MTEB's `_undersample_data`).
pub fn undersample(labels: &[String], samples_per_label: usize, experiments: usize, seed: u32) -> Vec<Vec<usize>> {
    let mut idxs: Vec<usize> = (0..labels.len()).collect();
    (0..experiments)
        .map(|_| {
            RandomState::new(seed).shuffle(&mut idxs);
            let mut taken: HashMap<&str, usize> = HashMap::new();
            idxs.iter()
                .copied()
                .filter(|&i| {
                    let count = taken.entry(labels[i].as_str()).or_default();
                    *count += 1;
                    *count <= samples_per_label
                })
                .collect()
        })
        .collect()
}

pub fn evaluate(train: &Labeled, test: &Labeled, ctx: &mut Context) -> Result<Scores> {
    let p = ctx.protocol;
    let samples = undersample(&train.labels, p.samples_per_label, p.n_experiments, p.seed);
    let used: Vec<usize> = samples.iter().flatten().copied().collect::<BTreeSet<_>>().into_iter().collect();
    let train_vectors = ctx.embed(used.iter().map(|&i| &train.texts[i]), true)?;
    let row_of: HashMap<usize, usize> = used.iter().enumerate().map(|(r, &i)| (i, r)).collect();
    let test_vectors = to_f64(&ctx.embed(&test.texts, true)?);
    let all_labels: Vec<String> = train.labels.iter().chain(&test.labels).cloned().collect();
    let (ids, _) = encode_labels(&all_labels);
    let (train_ids, test_ids) = ids.split_at(train.labels.len());
    let dim = train_vectors.dim;
    let mut per_experiment = Vec::with_capacity(samples.len());
    for rows in &samples {
        let x: Vec<f64> = rows.iter().flat_map(|i| train_vectors.row(row_of[i]).iter().map(|&v| v as f64)).collect();
        let y: Vec<usize> = rows.iter().map(|&i| train_ids[i]).collect();
        per_experiment.push(experiment(&Matrix { data: &x, dim }, &y, &Matrix { data: &test_vectors, dim }, test_ids));
    }
    Ok(average(per_experiment))
}

fn to_f64(v: &Vectors) -> Vec<f64> {
    v.data.iter().map(|&x| x as f64).collect()
}

/// One experiment: fit on (x, y), score on the test rows. Labels are global class ids.
fn experiment(x: &Matrix, y: &[usize], test: &Matrix, truth: &[usize]) -> Scores {
    let (local, classes) = encode_labels(y);
    let model = LogisticRegression::fit(x, &local, classes.len(), 1.0, Params::default());
    let predicted: Vec<usize> = model.predict(test).into_iter().map(|c| classes[c]).collect();
    let mut scores = Scores::new();
    scores.insert("accuracy".into(), num(accuracy(truth, &predicted)));
    scores.insert("f1".into(), num(f1_macro(truth, &predicted)));
    scores.insert("f1_weighted".into(), num(f1_weighted(truth, &predicted)));
    if classes.len() == 2 {
        // MTEB: average_precision_score(y_test, y_pred) on the predicted labels, second class positive.
        let positive: Vec<bool> = truth.iter().map(|&t| t == classes[1]).collect();
        let predicted_positive: Vec<f64> = predicted.iter().map(|&c| f64::from(u8::from(c == classes[1]))).collect();
        scores.insert("ap".into(), average_precision(&positive, &predicted_positive).map_or(Value::Null, num));
    }
    scores
}

/// The mean of each score over the experiments, and the experiments themselves.
fn average(per_experiment: Vec<Scores>) -> Scores {
    let mut scores = Scores::new();
    if let Some(first) = per_experiment.first() {
        for key in first.keys() {
            let values: Vec<f64> = per_experiment.iter().filter_map(|s| s.get(key).and_then(Value::as_f64)).collect();
            scores.insert(key.clone(), num(mean(&values)));
        }
    }
    scores
        .insert("scores_per_experiment".into(), Value::Array(per_experiment.into_iter().map(Value::Object).collect()));
    scores
}
