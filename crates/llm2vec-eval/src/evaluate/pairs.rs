//! Pair classification (MTEB's PairClassificationEvaluator): for cosine and dot similarity and for
//! Manhattan and Euclidean distance, the best accuracy and F1 over thresholds and the average
//! precision; then the maximum of each over the four. Both sentences carry the instruction.

use super::{num, Context, Scores};
use crate::data::Pairs;
use crate::error::{Error, Result};
use crate::metrics::{cosine, dot, euclidean, manhattan, threshold_scores};

/// A similarity or distance between two embeddings.
type Measure = fn(&[f32], &[f32]) -> f64;

pub fn evaluate(pairs: &Pairs<bool>, ctx: &mut Context) -> Result<Scores> {
    let n = pairs.first.len();
    let vectors = ctx.embed(pairs.first.iter().chain(&pairs.second), true)?;
    let mut scores = Scores::new();
    let mut best = [f64::NEG_INFINITY; 3];
    let measures: [(&str, Measure, bool); 4] = [
        ("cosine", cosine, true),
        ("dot", dot, true),
        ("manhattan", manhattan, false),
        ("euclidean", euclidean, false),
    ];
    for (name, f, similar_when_high) in measures {
        let values: Vec<f64> = (0..n).map(|i| f(vectors.row(i), vectors.row(n + i))).collect();
        let t = threshold_scores(&values, &pairs.targets, similar_when_high)
            .ok_or_else(|| Error::task(&ctx.label, "labels with one class only"))?;
        for (key, v) in [
            ("accuracy", t.accuracy),
            ("accuracy_threshold", t.accuracy_threshold),
            ("f1", t.f1),
            ("f1_threshold", t.f1_threshold),
            ("precision", t.precision),
            ("recall", t.recall),
            ("ap", t.ap),
        ] {
            scores.insert(format!("{name}_{key}"), num(v));
        }
        for (b, v) in best.iter_mut().zip([t.accuracy, t.f1, t.ap]) {
            *b = b.max(v);
        }
    }
    for (key, v) in ["max_accuracy", "max_f1", "max_ap"].into_iter().zip(best) {
        scores.insert(key.to_string(), num(v));
    }
    Ok(scores)
}
