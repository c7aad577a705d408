//! Clustering (MTEB's AbsTaskClustering): for each set, mini-batch k-means with k = the number of
//! distinct labels (batch 500, a generator freshly seeded for each set, as MTEB re-seeds NumPy per
//! evaluator), scored by V-measure; the mean, population standard deviation and per-set values are
//! reported. Every text carries the instruction; a text shared by several sets is encoded once.

use serde_json::Value;

use super::{mean, num, Context, Scores};
use crate::data::Labeled;
use crate::error::Result;
use crate::kmeans::MiniBatchKMeans;
use crate::metrics::{encode_labels, v_measure};

pub fn evaluate(sets: &[Labeled], ctx: &mut Context) -> Result<Scores> {
    let vectors = ctx.embed(sets.iter().flat_map(|s| &s.texts), true)?;
    let dim = vectors.dim;
    let mut offset = 0;
    let mut values = Vec::with_capacity(sets.len());
    for set in sets {
        let n = set.texts.len();
        let rows = &vectors.data[offset * dim..(offset + n) * dim];
        offset += n;
        let (truth, classes) = encode_labels(&set.labels);
        let predicted = MiniBatchKMeans::new(classes.len(), ctx.protocol.seed).fit_predict(rows, dim);
        values.push(v_measure(&truth, &predicted));
    }
    let m = mean(&values);
    let std = (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / values.len().max(1) as f64).sqrt();
    let mut scores = Scores::new();
    scores.insert("v_measure".into(), num(m));
    scores.insert("v_measure_std".into(), num(std));
    scores.insert("v_measures".into(), Value::Array(values.into_iter().map(num).collect()));
    Ok(scores)
}
