//! Retrieval (MTEB's RetrievalEvaluator on a BEIR layout): queries with the instruction, documents
//! (`title + " " + text`, stripped) without; exact cosine search keeping the top 1000 documents per query
//! (a document whose id equals the query id is skipped, as MTEB does); nDCG, MAP, recall, precision and
//! MRR at 1, 3, 5, 10, 20, 100 and 1000 with trec_eval's semantics.

use super::{num, Context, Scores};
use crate::data::Beir;
use crate::embed::Vectors;
use crate::error::Result;
use crate::trec::{self, Run, K_VALUES};

/// Documents kept per query.
pub const TOP_K: usize = 1000;

pub fn evaluate(beir: &Beir, ctx: &mut Context) -> Result<Scores> {
    let docs = unit_rows(&ctx.embed(beir.docs.iter().map(|(_, t)| t), false)?);
    let queries = unit_rows(&ctx.embed(beir.queries.iter().map(|(_, t)| t), true)?);
    let mut run = Run::new();
    for ((qid, _), q) in beir.queries.iter().zip(&queries) {
        run.insert(qid.clone(), search(q, &docs, beir, qid));
    }
    let r = trec::evaluate(&beir.qrels, &run, &K_VALUES);
    let mut scores = Scores::new();
    for (name, values) in
        [("ndcg", &r.ndcg), ("map", &r.map), ("recall", &r.recall), ("precision", &r.precision), ("mrr", &r.mrr)]
    {
        for (k, v) in r.k_values.iter().zip(values) {
            scores.insert(format!("{name}_at_{k}"), num(*v));
        }
    }
    Ok(scores)
}

/// Rows scaled to unit length, in f64.
fn unit_rows(v: &Vectors) -> Vec<Vec<f64>> {
    (0..v.len())
        .map(|i| {
            let row: Vec<f64> = v.row(i).iter().map(|&x| x as f64).collect();
            let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
            row.iter().map(|x| if norm > 0.0 { x / norm } else { 0.0 }).collect()
        })
        .collect()
}

/// The top documents for one query, best first (score, then id descending).
fn search(query: &[f64], docs: &[Vec<f64>], beir: &Beir, qid: &str) -> Vec<(String, f64)> {
    let mut hits: Vec<(String, f64)> = beir
        .docs
        .iter()
        .zip(docs)
        .filter(|((id, _), _)| id != qid)
        .map(|((id, _), d)| (id.clone(), query.iter().zip(d).map(|(a, b)| a * b).sum()))
        .collect();
    if hits.len() > TOP_K {
        hits.select_nth_unstable_by(TOP_K - 1, |a, b| {
            b.1.total_cmp(&a.1).then_with(|| b.0.as_bytes().cmp(a.0.as_bytes()))
        });
        hits.truncate(TOP_K);
    }
    trec::trec_order(&mut hits);
    hits
}
