//! STS (MTEB's STSEvaluator): Pearson and Spearman of cosine similarity, and of negated Manhattan and
//! Euclidean distances, against the gold scores. Both sentences carry the instruction.

use super::{num, Context, Scores};
use crate::data::Pairs;
use crate::error::Result;
use crate::metrics::{cosine, euclidean, manhattan, pearson, spearman};

pub fn evaluate(pairs: &Pairs<f64>, ctx: &mut Context) -> Result<Scores> {
    let n = pairs.first.len();
    let vectors = ctx.embed(pairs.first.iter().chain(&pairs.second), true)?;
    let similarity = |f: fn(&[f32], &[f32]) -> f64, sign: f64| -> Vec<f64> {
        (0..n).map(|i| sign * f(vectors.row(i), vectors.row(n + i))).collect()
    };
    let mut scores = Scores::new();
    for (name, values) in [
        ("cosine", similarity(cosine, 1.0)),
        ("manhattan", similarity(manhattan, -1.0)),
        ("euclidean", similarity(euclidean, -1.0)),
    ] {
        scores.insert(format!("{name}_pearson"), num(pearson(&pairs.targets, &values)));
        scores.insert(format!("{name}_spearman"), num(spearman(&pairs.targets, &values)));
    }
    Ok(scores)
}
