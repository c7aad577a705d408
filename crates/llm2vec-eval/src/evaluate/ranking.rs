//! Reranking (MTEB's RerankingEvaluator: queries with the instruction, candidates without; mean average
//! precision and MRR@10 of cosine similarity over the samples that have both positives and negatives)
//! and summarization (MTEB's SummarizationEvaluator: every summary with the instruction; per text, the
//! Spearman and Pearson correlation of each machine summary's best cosine / dot score against the human
//! summaries with the human relevance ratings, averaged over the texts whose values are not constant).

use super::{mean, num, Context, Scores};
use crate::data::{RerankSample, SummarySample};
use crate::error::{Error, Result};
use crate::metrics::{average_precision, cosine, dot, pearson, spearman};

/// Candidates ranked for MRR.
const MRR_AT: usize = 10;

pub fn reranking(samples: &[RerankSample], ctx: &mut Context) -> Result<Scores> {
    let queries = ctx.embed(samples.iter().map(|s| &s.query), true)?;
    let docs = ctx.embed(samples.iter().flat_map(|s| s.positive.iter().chain(&s.negative)), false)?;
    let (mut aps, mut rrs) = (Vec::new(), Vec::new());
    let mut offset = 0;
    for (i, s) in samples.iter().enumerate() {
        let count = s.positive.len() + s.negative.len();
        let sims: Vec<f64> = (offset..offset + count).map(|d| cosine(queries.row(i), docs.row(d))).collect();
        offset += count;
        if s.positive.is_empty() || s.negative.is_empty() {
            continue;
        }
        let relevant: Vec<bool> = (0..count).map(|d| d < s.positive.len()).collect();
        aps.extend(average_precision(&relevant, &sims));
        let mut order: Vec<usize> = (0..count).collect();
        order.sort_by(|&a, &b| sims[b].total_cmp(&sims[a]));
        rrs.push(order.iter().take(MRR_AT).position(|&d| relevant[d]).map_or(0.0, |r| 1.0 / (r + 1) as f64));
    }
    if aps.is_empty() {
        return Err(Error::task(&ctx.label, "no sample has both positive and negative candidates"));
    }
    let mut scores = Scores::new();
    scores.insert("map".into(), num(mean(&aps)));
    scores.insert(format!("mrr_at_{MRR_AT}"), num(mean(&rrs)));
    Ok(scores)
}

pub fn summarization(samples: &[SummarySample], ctx: &mut Context) -> Result<Scores> {
    let human = ctx.embed(samples.iter().flat_map(|s| &s.human), true)?;
    let machine = ctx.embed(samples.iter().flat_map(|s| &s.machine), true)?;
    let mut results: [Vec<f64>; 4] = Default::default();
    let (mut h0, mut m0) = (0, 0);
    for s in samples {
        let best = |f: fn(&[f32], &[f32]) -> f64| -> Vec<f64> {
            (m0..m0 + s.machine.len())
                .map(|m| {
                    (h0..h0 + s.human.len()).map(|h| f(machine.row(m), human.row(h))).fold(f64::NEG_INFINITY, f64::max)
                })
                .collect()
        };
        let (cos, dots) = (best(cosine), best(dot));
        h0 += s.human.len();
        m0 += s.machine.len();
        if [&s.relevance, &cos, &dots].iter().any(|v| v.iter().all(|x| *x == v[0])) {
            continue;
        }
        for (acc, v) in results.iter_mut().zip([
            spearman(&s.relevance, &cos),
            pearson(&s.relevance, &cos),
            spearman(&s.relevance, &dots),
            pearson(&s.relevance, &dots),
        ]) {
            acc.push(v);
        }
    }
    if results[0].is_empty() {
        return Err(Error::task(&ctx.label, "no text has varying relevance ratings and scores"));
    }
    let mut scores = Scores::new();
    for (key, values) in ["cosine_spearman", "cosine_pearson", "dot_spearman", "dot_pearson"].into_iter().zip(&results)
    {
        scores.insert(key.into(), num(mean(values)));
    }
    Ok(scores)
}
