//! Mini-batch k-means as sklearn's `MiniBatchKMeans(n_clusters=k, batch_size=500, n_init="auto",
//! random_state=seed)` runs it (sklearn 1.9): k-means++ seeding with 2 + ln(k) local trials on an init
//! sample of 3 batches, batches drawn with `choice(n, batch, p=uniform)`, per-center learning rates
//! from counts, random reassignment of starved centers, and early stopping after 10 batches without
//! improvement of the smoothed inertia. Every random draw comes from [`RandomState`] in sklearn's order;
//! arithmetic is f64 where sklearn keeps float32 embeddings in float32.

use crate::rng::{self, RandomState};

/// Settings; `Default` is MTEB's (batch 500, sklearn's other defaults).
#[derive(Debug, Clone, Copy)]
pub struct MiniBatchKMeans {
    pub clusters: usize,
    pub batch_size: usize,
    pub max_iter: usize,
    pub max_no_improvement: usize,
    pub reassignment_ratio: f64,
    pub seed: u32,
}

impl MiniBatchKMeans {
    pub fn new(clusters: usize, seed: u32) -> Self {
        Self { clusters, batch_size: 500, max_iter: 100, max_no_improvement: 10, reassignment_ratio: 0.01, seed }
    }

    /// Cluster index of each of the `data.len() / dim` rows (the caller checks that there are at least
    /// `clusters` >= 1 rows; with fewer, every row is its own cluster).
    pub fn fit_predict(&self, data: &[f32], dim: usize) -> Vec<usize> {
        let x: Vec<f64> = data.iter().map(|&v| v as f64).collect();
        let points = Points { data: &x, dim };
        let n = points.len();
        if n <= self.clusters || dim == 0 {
            return (0..n).collect();
        }
        let batch = self.batch_size.min(n);
        let mut init_size = 3 * batch;
        if init_size < self.clusters {
            init_size = 3 * self.clusters;
        }
        let init_size = init_size.min(n);
        let mut rng = RandomState::new(self.seed);
        // The validation sample sklearn draws to compare inits (one init here, but the draws count).
        (0..init_size).for_each(|_| {
            rng.randint(n);
        });
        let mut centers = self.init_centers(&points, init_size, &mut rng);
        self.iterate(&points, batch, &mut centers, &mut rng);
        (0..n).map(|i| nearest(points.row(i), &centers, dim).0).collect()
    }

    /// k-means++ on all rows, or on a random sample of `init_size` rows when that is fewer.
    fn init_centers(&self, points: &Points, init_size: usize, rng: &mut RandomState) -> Vec<f64> {
        let n = points.len();
        if init_size < n {
            let rows: Vec<usize> = (0..init_size).map(|_| rng.randint(n)).collect();
            let sample: Vec<f64> = rows.iter().flat_map(|&i| points.row(i).iter().copied()).collect();
            kmeans_plusplus(&Points { data: &sample, dim: points.dim }, self.clusters, rng)
        } else {
            kmeans_plusplus(points, self.clusters, rng)
        }
    }

    fn iterate(&self, points: &Points, batch: usize, centers: &mut [f64], rng: &mut RandomState) {
        let n = points.len();
        let cdf = rng::cdf(&uniform_weights(n));
        let mut counts = vec![0.0f64; self.clusters];
        let mut monitor = Convergence::default();
        let mut since_reassign = 0usize;
        for step in 0..(self.max_iter * n) / batch {
            let rows = rng.choice_cdf(&cdf, batch);
            since_reassign += batch;
            let reassign = counts.contains(&0.0) || since_reassign >= 10 * self.clusters;
            if reassign {
                since_reassign = 0;
            }
            let inertia = self.batch_step(points, &rows, centers, &mut counts, reassign, rng);
            let smoothing = (batch as f64 * 2.0 / (n as f64 + 1.0)).min(1.0);
            if monitor.stop(step, inertia / batch as f64, smoothing, self.max_no_improvement) {
                break;
            }
        }
    }

    /// One mini-batch update; returns the batch inertia before the update.
    fn batch_step(
        &self,
        points: &Points,
        rows: &[usize],
        centers: &mut [f64],
        counts: &mut [f64],
        reassign: bool,
        rng: &mut RandomState,
    ) -> f64 {
        let dim = points.dim;
        let (labels, inertia) = label_batch(points, rows, centers);
        for c in 0..self.clusters {
            let members: Vec<usize> = (0..rows.len()).filter(|&k| labels[k] == c).collect();
            if members.is_empty() {
                continue;
            }
            let center = &mut centers[c * dim..(c + 1) * dim];
            center.iter_mut().for_each(|v| *v *= counts[c]);
            for &k in &members {
                center.iter_mut().zip(points.row(rows[k])).for_each(|(v, x)| *v += x);
            }
            counts[c] += members.len() as f64;
            let alpha = 1.0 / counts[c];
            center.iter_mut().for_each(|v| *v *= alpha);
        }
        if reassign && self.reassignment_ratio > 0.0 {
            self.reassign(points, rows, centers, counts, rng);
        }
        inertia
    }

    /// Moves centers whose count fell below `reassignment_ratio` of the largest onto random batch rows.
    fn reassign(
        &self,
        points: &Points,
        rows: &[usize],
        centers: &mut [f64],
        counts: &mut [f64],
        rng: &mut RandomState,
    ) {
        let dim = points.dim;
        let max = counts.iter().fold(f64::NEG_INFINITY, |m, &c| m.max(c));
        let mut chosen: Vec<bool> = counts.iter().map(|&c| c < self.reassignment_ratio * max).collect();
        let half = rows.len() / 2;
        if chosen.iter().filter(|&&c| c).count() as f64 > 0.5 * rows.len() as f64 {
            let mut order: Vec<usize> = (0..counts.len()).collect();
            order.sort_by(|&a, &b| counts[a].total_cmp(&counts[b]));
            order.iter().skip(half).for_each(|&c| chosen[c] = false);
        }
        let targets: Vec<usize> = (0..counts.len()).filter(|&c| chosen[c]).collect();
        if targets.is_empty() {
            return;
        }
        let picks = rng.choice_without_replacement(rows.len(), targets.len());
        for (&c, &k) in targets.iter().zip(&picks) {
            centers[c * dim..(c + 1) * dim].copy_from_slice(points.row(rows[k]));
        }
        let floor = (0..counts.len()).filter(|&c| !chosen[c]).map(|c| counts[c]).fold(f64::INFINITY, f64::min);
        targets.iter().for_each(|&c| counts[c] = floor);
    }
}

/// sklearn's uniform sample weights as `choice` sees them: float32 1/n, widened to f64.
fn uniform_weights(n: usize) -> Vec<f64> {
    vec![(1.0f32 / n as f32) as f64; n]
}

/// The smoothed-inertia early stopping of `MiniBatchKMeans._mini_batch_convergence`.
#[derive(Default)]
struct Convergence {
    ewa: Option<f64>,
    ewa_min: Option<f64>,
    no_improvement: usize,
}

impl Convergence {
    fn stop(&mut self, step: usize, batch_inertia: f64, alpha: f64, patience: usize) -> bool {
        if step == 0 {
            return false;
        }
        let ewa = match self.ewa {
            None => batch_inertia,
            Some(e) => e * (1.0 - alpha) + batch_inertia * alpha,
        };
        self.ewa = Some(ewa);
        if self.ewa_min.is_none_or(|m| ewa < m) {
            self.no_improvement = 0;
            self.ewa_min = Some(ewa);
        } else {
            self.no_improvement += 1;
        }
        self.no_improvement >= patience
    }
}

struct Points<'a> {
    data: &'a [f64],
    dim: usize,
}

impl Points<'_> {
    fn len(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }

    fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Index of the closest center (first on ties) and the squared distance to it.
fn nearest(x: &[f64], centers: &[f64], dim: usize) -> (usize, f64) {
    centers.chunks_exact(dim).enumerate().fold((0, f64::INFINITY), |best, (c, center)| {
        let d = squared_distance(x, center);
        if d < best.1 {
            (c, d)
        } else {
            best
        }
    })
}

fn label_batch(points: &Points, rows: &[usize], centers: &[f64]) -> (Vec<usize>, f64) {
    let mut inertia = 0.0;
    let labels = rows
        .iter()
        .map(|&i| {
            let (c, d) = nearest(points.row(i), centers, points.dim);
            inertia += d;
            c
        })
        .collect();
    (labels, inertia)
}

/// Greedy k-means++ (sklearn's `_kmeans_plusplus`): the first center drawn uniformly, each next one
/// the best of 2 + ln(k) candidates drawn proportionally to the squared distance.
fn kmeans_plusplus(points: &Points, k: usize, rng: &mut RandomState) -> Vec<f64> {
    let (n, dim) = (points.len(), points.dim);
    let trials = 2 + (k as f64).ln() as usize;
    let first = rng.choice_cdf(&rng::cdf(&uniform_weights(n)), 1)[0];
    let mut centers = points.row(first).to_vec();
    let mut closest: Vec<f64> = (0..n).map(|i| squared_distance(points.row(i), points.row(first))).collect();
    let mut potential: f64 = closest.iter().sum();
    for _ in 1..k {
        let mut cumulative = closest.clone();
        for i in 1..n {
            cumulative[i] += cumulative[i - 1];
        }
        let candidates: Vec<usize> =
            (0..trials).map(|_| rng::search_left(&cumulative, rng.random_sample() * potential).min(n - 1)).collect();
        let (best, best_distances, best_potential) = candidates
            .iter()
            .map(|&cand| {
                let d: Vec<f64> =
                    (0..n).map(|i| squared_distance(points.row(i), points.row(cand)).min(closest[i])).collect();
                let pot: f64 = d.iter().sum();
                (cand, d, pot)
            })
            .fold(None::<(usize, Vec<f64>, f64)>, |best, c| match best {
                Some(b) if b.2 <= c.2 => Some(b),
                _ => Some(c),
            })
            .unwrap_or((0, closest.clone(), potential));
        centers.extend_from_slice(points.row(best));
        closest = best_distances;
        potential = best_potential;
    }
    debug_assert_eq!(centers.len(), k * dim);
    centers
}
