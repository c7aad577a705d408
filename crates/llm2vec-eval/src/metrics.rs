//! Deterministic metrics, each computed as its Python reference does: Pearson and Spearman (scipy,
//! average ranks for ties), average precision (sklearn, tied scores grouped), V-measure (sklearn,
//! natural logs), accuracy and macro F1 (sklearn), and the best accuracy / F1 thresholds of MTEB's
//! pair-classification evaluator.

/// Cosine similarity (0 when either vector is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    let denom = na.sqrt() * nb.sqrt();
    if denom == 0.0 {
        0.0
    } else {
        dot / denom
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

pub fn euclidean(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum::<f64>().sqrt()
}

pub fn manhattan(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).abs()).sum()
}

/// Pearson correlation (NaN when either side is constant or shorter than 2), clipped to [-1, 1].
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len();
    if n < 2 || n != y.len() {
        return f64::NAN;
    }
    let mx = x.iter().sum::<f64>() / n as f64;
    let my = y.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0)
}

/// Ranks from 1, ties sharing their average rank (scipy's `rankdata(method="average")`).
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && x[order[end]] == x[order[start]] {
            end += 1;
        }
        let rank = (start + end + 1) as f64 / 2.0;
        order[start..end].iter().for_each(|&i| ranks[i] = rank);
        start = end;
    }
    ranks
}

/// Spearman rank correlation: Pearson of the average ranks (scipy's `spearmanr`).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&average_ranks(x), &average_ranks(y))
}

/// Average precision of `scores` for the positives in `labels` (sklearn's `average_precision_score`:
/// one precision/recall point per distinct score). `None` when there is no positive.
pub fn average_precision(labels: &[bool], scores: &[f64]) -> Option<f64> {
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp, mut prev_tp, mut ap) = (0usize, 0usize, 0usize, 0.0);
    for (k, &i) in order.iter().enumerate() {
        if labels[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        let group_ends = k + 1 == order.len() || scores[order[k + 1]] != scores[i];
        if group_ends {
            ap += (tp - prev_tp) as f64 / positives as f64 * (tp as f64 / (tp + fp) as f64);
            prev_tp = tp;
        }
    }
    Some(ap)
}

/// Class indices for arbitrary labels, classes numbered in sorted label order (sklearn's LabelEncoder).
pub fn encode_labels<T: Ord + Clone>(labels: &[T]) -> (Vec<usize>, Vec<T>) {
    let mut classes: Vec<T> = labels.to_vec();
    classes.sort();
    classes.dedup();
    let ids = labels.iter().map(|l| classes.binary_search(l).unwrap_or(0)).collect();
    (ids, classes)
}

/// Entropy (natural log) of a label distribution given by its counts.
fn entropy(counts: &[usize]) -> f64 {
    let total: usize = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let total = total as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| -(c as f64 / total) * (c as f64 / total).ln()).sum()
}

/// V-measure (beta = 1) of a clustering against true classes (sklearn's `v_measure_score`).
pub fn v_measure(truth: &[usize], predicted: &[usize]) -> f64 {
    if truth.is_empty() {
        return 1.0;
    }
    let (t, _) = encode_labels(truth);
    let (p, _) = encode_labels(predicted);
    let (nt, np) = (t.iter().max().map_or(0, |m| m + 1), p.iter().max().map_or(0, |m| m + 1));
    let mut table = vec![0usize; nt * np];
    t.iter().zip(&p).for_each(|(&a, &b)| table[a * np + b] += 1);
    let row: Vec<usize> = (0..nt).map(|a| (0..np).map(|b| table[a * np + b]).sum()).collect();
    let col: Vec<usize> = (0..np).map(|b| (0..nt).map(|a| table[a * np + b]).sum()).collect();
    let n = truth.len() as f64;
    let mut mi = 0.0;
    if nt > 1 && np > 1 {
        for a in 0..nt {
            for b in 0..np {
                let c = table[a * np + b];
                if c > 0 {
                    let c = c as f64;
                    mi += c / n * (c.ln() + n.ln() - (row[a] as f64).ln() - (col[b] as f64).ln());
                }
            }
        }
    }
    let mi = mi.max(0.0);
    let (hc, hk) = (entropy(&row), entropy(&col));
    let homogeneity = if hc > 0.0 { mi / hc } else { 1.0 };
    let completeness = if hk > 0.0 { mi / hk } else { 1.0 };
    if homogeneity + completeness == 0.0 {
        0.0
    } else {
        2.0 * homogeneity * completeness / (homogeneity + completeness)
    }
}

pub fn accuracy(truth: &[usize], predicted: &[usize]) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    truth.iter().zip(predicted).filter(|(a, b)| a == b).count() as f64 / truth.len() as f64
}

/// Per-class F1 over the classes seen in either array, with each class's support in `truth`.
fn f1_per_class(truth: &[usize], predicted: &[usize]) -> Vec<(f64, usize)> {
    let classes = truth.iter().chain(predicted).max().map_or(0, |m| m + 1);
    let (mut tp, mut fp, mut fnn) = (vec![0usize; classes], vec![0usize; classes], vec![0usize; classes]);
    for (&t, &p) in truth.iter().zip(predicted) {
        if t == p {
            tp[t] += 1;
        } else {
            fp[p] += 1;
            fnn[t] += 1;
        }
    }
    (0..classes)
        .filter(|&c| tp[c] + fp[c] + fnn[c] > 0)
        .map(|c| (2.0 * tp[c] as f64 / (2 * tp[c] + fp[c] + fnn[c]) as f64, tp[c] + fnn[c]))
        .collect()
}

/// Macro F1 (sklearn's `f1_score(average="macro")`, classes absent from both arrays left out).
pub fn f1_macro(truth: &[usize], predicted: &[usize]) -> f64 {
    let per_class = f1_per_class(truth, predicted);
    if per_class.is_empty() {
        return 0.0;
    }
    per_class.iter().map(|(f, _)| f).sum::<f64>() / per_class.len() as f64
}

/// Support-weighted F1 (sklearn's `f1_score(average="weighted")`).
pub fn f1_weighted(truth: &[usize], predicted: &[usize]) -> f64 {
    let per_class = f1_per_class(truth, predicted);
    let support: usize = per_class.iter().map(|(_, s)| s).sum();
    if support == 0 {
        return 0.0;
    }
    per_class.iter().map(|(f, s)| f * *s as f64).sum::<f64>() / support as f64
}

/// Best accuracy and F1 over thresholds, and average precision, of one similarity (or distance) for
/// binary labels: MTEB's pair-classification evaluator.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdScores {
    pub accuracy: f64,
    pub accuracy_threshold: f64,
    pub f1: f64,
    pub f1_threshold: f64,
    pub precision: f64,
    pub recall: f64,
    pub ap: f64,
}

/// `higher_is_similar` is false for distances. Pairs are walked in score order (a stable sort, as
/// Python's `sorted`), a threshold lying halfway between neighbours; `None` without a positive.
pub fn threshold_scores(scores: &[f64], labels: &[bool], higher_is_similar: bool) -> Option<ThresholdScores> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    if higher_is_similar {
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    } else {
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    }
    let signed: Vec<f64> = scores.iter().map(|&s| if higher_is_similar { s } else { -s }).collect();
    let ap = average_precision(labels, &signed)?;
    let (accuracy, accuracy_threshold) = best_accuracy(&order, scores, labels);
    let (f1, precision, recall, f1_threshold) = best_f1(&order, scores, labels);
    Some(ThresholdScores { accuracy, accuracy_threshold, f1, f1_threshold, precision, recall, ap })
}

fn best_accuracy(order: &[usize], scores: &[f64], labels: &[bool]) -> (f64, f64) {
    let n = labels.len() as f64;
    let (mut best, mut threshold) = (0.0, -1.0);
    let mut positives_so_far = 0usize;
    let mut remaining_negatives = labels.iter().filter(|&&l| !l).count();
    for w in order.windows(2) {
        if labels[w[0]] {
            positives_so_far += 1;
        } else {
            remaining_negatives -= 1;
        }
        let acc = (positives_so_far + remaining_negatives) as f64 / n;
        if acc > best {
            best = acc;
            threshold = (scores[w[0]] + scores[w[1]]) / 2.0;
        }
    }
    (best, threshold)
}

fn best_f1(order: &[usize], scores: &[f64], labels: &[bool]) -> (f64, f64, f64, f64) {
    let total_positives = labels.iter().filter(|&&l| l).count() as f64;
    let (mut best, mut best_p, mut best_r, mut threshold) = (0.0, 0.0, 0.0, 0.0);
    let (mut extracted, mut correct) = (0usize, 0usize);
    for w in order.windows(2) {
        extracted += 1;
        if labels[w[0]] {
            correct += 1;
        }
        if correct > 0 {
            let precision = correct as f64 / extracted as f64;
            let recall = correct as f64 / total_positives;
            let f1 = 2.0 * precision * recall / (precision + recall);
            if f1 > best {
                (best, best_p, best_r) = (f1, precision, recall);
                threshold = (scores[w[0]] + scores[w[1]]) / 2.0;
            }
        }
    }
    (best, best_p, best_r, threshold)
}
