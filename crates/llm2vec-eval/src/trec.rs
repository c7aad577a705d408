//! Ranking metrics with trec_eval's semantics (as pytrec_eval computes them for MTEB): documents ranked
//! by score, ties broken by document id in descending byte order; relevance levels from the qrels are
//! the nDCG gains; a document is relevant from level 1; only queries present in both the qrels and
//! the run are averaged.

use std::collections::{BTreeMap, HashMap};

/// Judgements: query id -> document id -> relevance level.
pub type Qrels = BTreeMap<String, HashMap<String, i64>>;
/// A run: query id -> retrieved (document id, score), in any order.
pub type Run = BTreeMap<String, Vec<(String, f64)>>;

/// The cut-offs MTEB reports.
pub const K_VALUES: [usize; 7] = [1, 3, 5, 10, 20, 100, 1000];

/// Averages at each cut-off of `K_VALUES`-like lists (one entry per cut-off).
#[derive(Debug, Clone, PartialEq)]
pub struct RankingScores {
    pub k_values: Vec<usize>,
    pub ndcg: Vec<f64>,
    pub map: Vec<f64>,
    pub recall: Vec<f64>,
    pub precision: Vec<f64>,
    pub mrr: Vec<f64>,
    /// Queries averaged.
    pub queries: usize,
}

/// Sorts a run's documents as trec_eval does: score descending, then document id descending.
pub fn trec_order(docs: &mut [(String, f64)]) {
    docs.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.as_bytes().cmp(a.0.as_bytes())));
}

/// Scores of one query at each cut-off.
fn query_scores(judged: &HashMap<String, i64>, ranked: &[(String, f64)], ks: &[usize]) -> [Vec<f64>; 5] {
    let rels: Vec<i64> = ranked.iter().map(|(d, _)| judged.get(d).copied().unwrap_or(-1)).collect();
    let num_rel = judged.values().filter(|&&r| r >= 1).count();
    let mut ideal: Vec<i64> = judged.values().copied().filter(|&r| r > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let dcg = |gains: &[i64], k: usize| -> f64 {
        gains.iter().take(k).enumerate().filter(|(_, &g)| g > 0).map(|(i, &g)| g as f64 / ((i + 2) as f64).log2()).sum()
    };
    let mut out: [Vec<f64>; 5] = Default::default();
    for &k in ks {
        let top = &rels[..k.min(rels.len())];
        let hits = top.iter().filter(|&&r| r >= 1).count() as f64;
        let idcg = dcg(&ideal, k);
        out[0].push(if idcg > 0.0 { dcg(top, k) / idcg } else { 0.0 });
        out[1].push(average_precision_at(top, num_rel));
        out[2].push(if num_rel > 0 { hits / num_rel as f64 } else { 0.0 });
        out[3].push(hits / k as f64);
        out[4].push(top.iter().position(|&r| r >= 1).map_or(0.0, |i| 1.0 / (i + 1) as f64));
    }
    out
}

/// trec_eval's `map_cut`: precision at each relevant document in the top list, over all relevant.
fn average_precision_at(top: &[i64], num_rel: usize) -> f64 {
    if num_rel == 0 {
        return 0.0;
    }
    let mut found = 0usize;
    let mut sum = 0.0;
    for (i, &r) in top.iter().enumerate() {
        if r >= 1 {
            found += 1;
            sum += found as f64 / (i + 1) as f64;
        }
    }
    sum / num_rel as f64
}

/// nDCG, MAP, recall, precision and MRR at each cut-off, averaged over the queries in both `qrels`
/// and `run`.
pub fn evaluate(qrels: &Qrels, run: &Run, ks: &[usize]) -> RankingScores {
    let mut sums: [Vec<f64>; 5] = std::array::from_fn(|_| vec![0.0; ks.len()]);
    let mut queries = 0usize;
    for (qid, judged) in qrels {
        let Some(docs) = run.get(qid) else { continue };
        let mut ranked = docs.clone();
        trec_order(&mut ranked);
        let scores = query_scores(judged, &ranked, ks);
        for (sum, s) in sums.iter_mut().zip(scores) {
            sum.iter_mut().zip(s).for_each(|(a, b)| *a += b);
        }
        queries += 1;
    }
    let mean = |v: &Vec<f64>| v.iter().map(|s| if queries > 0 { s / queries as f64 } else { 0.0 }).collect();
    RankingScores {
        k_values: ks.to_vec(),
        ndcg: mean(&sums[0]),
        map: mean(&sums[1]),
        recall: mean(&sums[2]),
        precision: mean(&sums[3]),
        mrr: mean(&sums[4]),
        queries,
    }
}
