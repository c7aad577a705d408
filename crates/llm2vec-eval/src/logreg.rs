//! Logistic regression as sklearn's `LogisticRegression()` fits it: L2 penalty with C = 1 on the
//! weights (not the intercepts), objective mean(loss) + ||W||^2 / (2 C n), L-BFGS from zeros,
//! 100 iterations; multinomial (softmax over all classes) for three or more classes, a single binomial
//! weight vector for two. Computed in f64.

use crate::lbfgs::{self, Params};

/// A fitted model.
#[derive(Debug, Clone)]
pub struct LogisticRegression {
    /// One row of weights per class (one row in total for two classes), `dim` wide.
    weights: Vec<f64>,
    intercepts: Vec<f64>,
    dim: usize,
    classes: usize,
    pub iterations: usize,
    pub converged: bool,
}

/// Row-major f64 data, `dim` columns.
pub struct Matrix<'a> {
    pub data: &'a [f64],
    pub dim: usize,
}

impl Matrix<'_> {
    fn rows(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }

    fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// Dot product with four running sums (lets the compiler vectorise it).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f64>() + tail
}

fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    y.iter_mut().zip(x).for_each(|(yi, xi)| *yi += alpha * xi);
}

impl LogisticRegression {
    /// Fits on `x` with class indices `y` in `0..classes` (`classes` >= 2), penalty `c`.
    pub fn fit(x: &Matrix, y: &[usize], classes: usize, c: f64, params: Params) -> Self {
        let rows = if classes == 2 { 1 } else { classes };
        let dim = x.dim;
        let l2 = 1.0 / (c * x.rows() as f64);
        let objective = |w: &[f64], g: &mut [f64]| {
            if classes == 2 {
                binomial_loss(x, y, w, l2, g)
            } else {
                multinomial_loss(x, y, classes, w, l2, g)
            }
        };
        let out = lbfgs::minimize(objective, vec![0.0; rows * (dim + 1)], params);
        let (weights, intercepts) = out.x.split_at(rows * dim);
        Self {
            weights: weights.to_vec(),
            intercepts: intercepts.to_vec(),
            dim,
            classes,
            iterations: out.iterations,
            converged: out.converged,
        }
    }

    /// The class of each row: the largest decision value (first on ties), or for two classes class 1
    /// when the decision value is positive.
    pub fn predict(&self, x: &Matrix) -> Vec<usize> {
        (0..x.rows())
            .map(|i| {
                let xi = x.row(i);
                let raw: Vec<f64> = self
                    .intercepts
                    .iter()
                    .enumerate()
                    .map(|(k, b)| dot(xi, &self.weights[k * self.dim..(k + 1) * self.dim]) + b)
                    .collect();
                if self.classes == 2 {
                    usize::from(raw[0] > 0.0)
                } else {
                    raw.iter().enumerate().fold(0, |best, (k, &v)| if v > raw[best] { k } else { best })
                }
            })
            .collect()
    }
}

/// Mean multinomial log loss plus penalty; writes the gradient. `w` = [weights (K x d), intercepts (K)].
fn multinomial_loss(x: &Matrix, y: &[usize], classes: usize, w: &[f64], l2: f64, g: &mut [f64]) -> f64 {
    let (n, d) = (x.rows(), x.dim);
    let (weights, intercepts) = w.split_at(classes * d);
    g.iter_mut().for_each(|v| *v = 0.0);
    let (gw, gb) = g.split_at_mut(classes * d);
    let mut loss = 0.0;
    let mut raw = vec![0.0; classes];
    for i in 0..n {
        let xi = x.row(i);
        for k in 0..classes {
            raw[k] = dot(xi, &weights[k * d..(k + 1) * d]) + intercepts[k];
        }
        let max = raw.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let sum: f64 = raw.iter().map(|v| (v - max).exp()).sum();
        let lse = max + sum.ln();
        loss += lse - raw[y[i]];
        for k in 0..classes {
            let r = ((raw[k] - lse).exp() - if k == y[i] { 1.0 } else { 0.0 }) / n as f64;
            axpy(r, xi, &mut gw[k * d..(k + 1) * d]);
            gb[k] += r;
        }
    }
    axpy(l2, weights, gw);
    loss / n as f64 + 0.5 * l2 * dot(weights, weights)
}

/// Mean binomial log loss (class 1 positive) plus penalty; writes the gradient. `w` = [weights (d), intercept].
fn binomial_loss(x: &Matrix, y: &[usize], w: &[f64], l2: f64, g: &mut [f64]) -> f64 {
    let (n, d) = (x.rows(), x.dim);
    let (weights, intercept) = (&w[..d], w[d]);
    g.iter_mut().for_each(|v| *v = 0.0);
    let mut loss = 0.0;
    for (i, &label) in y.iter().enumerate().take(n) {
        let xi = x.row(i);
        let raw = dot(xi, weights) + intercept;
        let target = if label == 1 { 1.0 } else { 0.0 };
        // log(1 + e^raw) without overflow
        let softplus = if raw > 0.0 { raw + (-raw).exp().ln_1p() } else { raw.exp().ln_1p() };
        loss += softplus - target * raw;
        let r = (1.0 / (1.0 + (-raw).exp()) - target) / n as f64;
        axpy(r, xi, &mut g[..d]);
        g[d] += r;
    }
    axpy(l2, weights, &mut g[..d]);
    loss / n as f64 + 0.5 * l2 * dot(weights, weights)
}
