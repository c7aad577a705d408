//! Unconstrained L-BFGS, made to follow scipy's L-BFGS-B (which sklearn's `lbfgs` solver calls) step by
//! step: 10 correction pairs, first step 1/||g||, then 1; the Moré–Thuente line search (ftol 1e-3,
//! gtol 0.9, xtol 0.1, at most 50 evaluations); stop on max |g| <= gtol, on a relative decrease of f
//! below ftol, or after `max_iter` iterations.

use std::collections::VecDeque;

/// Stopping rules and memory.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub max_iter: usize,
    /// Stop when the largest gradient component is at most this (sklearn's `tol`).
    pub gtol: f64,
    /// Stop when (f_old - f) / max(|f_old|, |f|, 1) is at most this.
    pub ftol: f64,
    pub memory: usize,
    pub max_line_search: usize,
}

impl Default for Params {
    /// sklearn's `LogisticRegression()` settings: max_iter 100, tol 1e-4, ftol 64 eps, maxls 50.
    fn default() -> Self {
        Self { max_iter: 100, gtol: 1e-4, ftol: 64.0 * f64::EPSILON, memory: 10, max_line_search: 50 }
    }
}

/// What the minimisation ended with.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub x: Vec<f64>,
    pub f: f64,
    pub iterations: usize,
    pub evaluations: usize,
    pub converged: bool,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs(g: &[f64]) -> f64 {
    g.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// Minimises `fg` (which returns f and writes the gradient) from `x0`.
pub fn minimize(mut fg: impl FnMut(&[f64], &mut [f64]) -> f64, x0: Vec<f64>, params: Params) -> Outcome {
    let n = x0.len();
    let mut x = x0;
    let mut g = vec![0.0; n];
    let mut f = fg(&x, &mut g);
    let mut evaluations = 1;
    let mut memory: VecDeque<(Vec<f64>, Vec<f64>, f64)> = VecDeque::new();
    let mut iterations = 0;
    if max_abs(&g) <= params.gtol {
        return Outcome { x, f, iterations, evaluations, converged: true };
    }
    while iterations < params.max_iter {
        let d = direction(&g, &memory);
        let first = iterations == 0;
        let step0 = if first { 1.0 / dot(&d, &d).sqrt() } else { 1.0 };
        let gd = dot(&g, &d);
        let found = if gd < 0.0 { line_search(&mut fg, &x, f, &d, gd, step0, params.max_line_search) } else { None };
        let Some(ls) = found else {
            // L-BFGS-B drops its memory and retries along -g; with no memory there is nothing left to try.
            if memory.is_empty() {
                break;
            }
            memory.clear();
            continue;
        };
        evaluations += ls.evaluations;
        iterations += 1;
        let s: Vec<f64> = d.iter().map(|v| v * ls.step).collect();
        let y: Vec<f64> = ls.g.iter().zip(&g).map(|(a, b)| a - b).collect();
        let f_old = f;
        (x, f, g) = (ls.x, ls.f, ls.g);
        if max_abs(&g) <= params.gtol || (f_old - f) <= params.ftol * f_old.abs().max(f.abs()).max(1.0) {
            return Outcome { x, f, iterations, evaluations, converged: true };
        }
        let sy = dot(&s, &y);
        if sy > f64::EPSILON * (-gd * ls.step) {
            if memory.len() == params.memory {
                memory.pop_front();
            }
            memory.push_back((s, y, 1.0 / sy));
        }
    }
    Outcome { x, f, iterations, evaluations, converged: false }
}

/// The two-loop recursion: -H g, with H0 = (s'y / y'y) I from the latest pair.
fn direction(g: &[f64], memory: &VecDeque<(Vec<f64>, Vec<f64>, f64)>) -> Vec<f64> {
    let mut q = g.to_vec();
    let mut alphas = Vec::with_capacity(memory.len());
    for (s, y, rho) in memory.iter().rev() {
        let a = rho * dot(s, &q);
        q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
        alphas.push(a);
    }
    if let Some((_, y, rho)) = memory.back() {
        let gamma = 1.0 / (rho * dot(y, y));
        q.iter_mut().for_each(|v| *v *= gamma);
    }
    for ((s, y, rho), a) in memory.iter().zip(alphas.iter().rev()) {
        let b = rho * dot(y, &q);
        q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - b) * si);
    }
    q.iter_mut().for_each(|v| *v = -*v);
    q
}

struct LineSearchResult {
    x: Vec<f64>,
    f: f64,
    g: Vec<f64>,
    step: f64,
    evaluations: usize,
}

/// Moré–Thuente search along `d` from `x` (f0, directional derivative gd0 < 0).
fn line_search(
    fg: &mut impl FnMut(&[f64], &mut [f64]) -> f64,
    x: &[f64],
    f0: f64,
    d: &[f64],
    gd0: f64,
    step0: f64,
    max_evaluations: usize,
) -> Option<LineSearchResult> {
    let mut search = MoreThuente::new(f0, gd0, step0, 1e10);
    let mut g = vec![0.0; x.len()];
    for evaluation in 1..=max_evaluations {
        let step = search.step;
        let xt: Vec<f64> = x.iter().zip(d).map(|(xi, di)| xi + step * di).collect();
        let f = fg(&xt, &mut g);
        match search.next(f, dot(&g, d)) {
            Status::Done => return Some(LineSearchResult { x: xt, f, g, step, evaluations: evaluation }),
            Status::Continue => {}
        }
    }
    None
}

enum Status {
    Continue,
    Done,
}

/// The state of MINPACK-2's `dcsrch` (ftol 1e-3, gtol 0.9, xtol 0.1, stpmin 0).
struct MoreThuente {
    step: f64,
    stpmax: f64,
    finit: f64,
    ginit: f64,
    gtest: f64,
    brackt: bool,
    stage_one: bool,
    width: f64,
    width1: f64,
    x: Point,
    y: Point,
    stmin: f64,
    stmax: f64,
}

/// An end of the uncertainty interval: step, value, derivative.
#[derive(Clone, Copy)]
struct Point {
    t: f64,
    f: f64,
    g: f64,
}

const FTOL: f64 = 1e-3;
const GTOL: f64 = 0.9;
const XTOL: f64 = 0.1;
const XTRAPL: f64 = 1.1;
const XTRAPU: f64 = 4.0;

impl MoreThuente {
    fn new(finit: f64, ginit: f64, step: f64, stpmax: f64) -> Self {
        let start = Point { t: 0.0, f: finit, g: ginit };
        Self {
            step,
            stpmax,
            finit,
            ginit,
            gtest: FTOL * ginit,
            brackt: false,
            stage_one: true,
            width: stpmax,
            width1: 2.0 * stpmax,
            x: start,
            y: start,
            stmin: 0.0,
            stmax: step + XTRAPU * step,
        }
    }

    /// Takes f and the directional derivative at `self.step`; either accepts or sets the next step.
    fn next(&mut self, f: f64, g: f64) -> Status {
        let stp = self.step;
        let ftest = self.finit + stp * self.gtest;
        if self.stage_one && f <= ftest && g >= 0.0 {
            self.stage_one = false;
        }
        let stuck =
            self.brackt && (stp <= self.stmin || stp >= self.stmax || self.stmax - self.stmin <= XTOL * self.stmax);
        let at_max = stp == self.stpmax && f <= ftest && g <= self.gtest;
        let at_min = stp == 0.0 && (f > ftest || g >= self.gtest);
        let converged = f <= ftest && g.abs() <= GTOL * (-self.ginit);
        if stuck || at_max || at_min || converged {
            return Status::Done;
        }
        let p = Point { t: stp, f, g };
        if self.stage_one && f <= self.x.f && f > ftest {
            // The modified function psi(t) = f(t) - f(0) - ftol t f'(0) while in stage one.
            let m = |q: Point| Point { t: q.t, f: q.f - q.t * self.gtest, g: q.g - self.gtest };
            let (mut xm, mut ym) = (m(self.x), m(self.y));
            self.step = cstep(&mut xm, &mut ym, m(p), &mut self.brackt, self.stmin, self.stmax);
            let back = |q: Point| Point { t: q.t, f: q.f + q.t * self.gtest, g: q.g + self.gtest };
            (self.x, self.y) = (back(xm), back(ym));
        } else {
            self.step = cstep(&mut self.x, &mut self.y, p, &mut self.brackt, self.stmin, self.stmax);
        }
        if self.brackt {
            if (self.y.t - self.x.t).abs() >= 0.66 * self.width1 {
                self.step = self.x.t + 0.5 * (self.y.t - self.x.t);
            }
            self.width1 = self.width;
            self.width = (self.y.t - self.x.t).abs();
            self.stmin = self.x.t.min(self.y.t);
            self.stmax = self.x.t.max(self.y.t);
        } else {
            self.stmin = self.step + XTRAPL * (self.step - self.x.t);
            self.stmax = self.step + XTRAPU * (self.step - self.x.t);
        }
        self.step = self.step.max(0.0).min(self.stpmax);
        if self.brackt
            && (self.step <= self.stmin || self.step >= self.stmax || self.stmax - self.stmin <= XTOL * self.stmax)
        {
            self.step = self.x.t;
        }
        Status::Continue
    }
}

/// MINPACK-2's `dcstep`: a safeguarded cubic/quadratic step; updates the interval ends `x` (best so
/// far) and `y`, and returns the new trial step.
fn cstep(x: &mut Point, y: &mut Point, p: Point, brackt: &mut bool, stpmin: f64, stpmax: f64) -> f64 {
    let sgnd = p.g * x.g.signum();
    let theta_of = |a: Point, b: Point| 3.0 * (a.f - b.f) / (b.t - a.t) + a.g + b.g;
    let stpf = if p.f > x.f {
        // Higher value: the minimum is bracketed.
        let theta = theta_of(*x, p);
        let s = theta.abs().max(x.g.abs()).max(p.g.abs());
        let mut gamma = s * ((theta / s).powi(2) - (x.g / s) * (p.g / s)).sqrt();
        if p.t < x.t {
            gamma = -gamma;
        }
        let r = ((gamma - x.g) + theta) / (((gamma - x.g) + gamma) + p.g);
        let stpc = x.t + r * (p.t - x.t);
        let stpq = x.t + ((x.g / ((x.f - p.f) / (p.t - x.t) + x.g)) / 2.0) * (p.t - x.t);
        *brackt = true;
        if (stpc - x.t).abs() < (stpq - x.t).abs() {
            stpc
        } else {
            stpc + (stpq - stpc) / 2.0
        }
    } else if sgnd < 0.0 {
        // Derivatives of opposite sign: the minimum is bracketed.
        let theta = theta_of(*x, p);
        let s = theta.abs().max(x.g.abs()).max(p.g.abs());
        let mut gamma = s * ((theta / s).powi(2) - (x.g / s) * (p.g / s)).sqrt();
        if p.t > x.t {
            gamma = -gamma;
        }
        let r = ((gamma - p.g) + theta) / (((gamma - p.g) + gamma) + x.g);
        let stpc = p.t + r * (x.t - p.t);
        let stpq = p.t + (p.g / (p.g - x.g)) * (x.t - p.t);
        *brackt = true;
        if (stpc - p.t).abs() > (stpq - p.t).abs() {
            stpc
        } else {
            stpq
        }
    } else if p.g.abs() < x.g.abs() {
        // Same sign, derivative decreasing in magnitude.
        let theta = theta_of(*x, p);
        let s = theta.abs().max(x.g.abs()).max(p.g.abs());
        let mut gamma = s * ((theta / s).powi(2) - (x.g / s) * (p.g / s)).max(0.0).sqrt();
        if p.t > x.t {
            gamma = -gamma;
        }
        let r = ((gamma - p.g) + theta) / ((gamma + (x.g - p.g)) + gamma);
        let stpc = if r < 0.0 && gamma != 0.0 {
            p.t + r * (x.t - p.t)
        } else if p.t > x.t {
            stpmax
        } else {
            stpmin
        };
        let stpq = p.t + (p.g / (p.g - x.g)) * (x.t - p.t);
        if *brackt {
            let pick = if (stpc - p.t).abs() < (stpq - p.t).abs() { stpc } else { stpq };
            if p.t > x.t {
                pick.min(p.t + 0.66 * (y.t - p.t))
            } else {
                pick.max(p.t + 0.66 * (y.t - p.t))
            }
        } else {
            let pick = if (stpc - p.t).abs() > (stpq - p.t).abs() { stpc } else { stpq };
            pick.min(stpmax).max(stpmin)
        }
    } else if *brackt {
        // Same sign, derivative not decreasing: step to the cubic minimiser towards y.
        let theta = 3.0 * (p.f - y.f) / (y.t - p.t) + y.g + p.g;
        let s = theta.abs().max(y.g.abs()).max(p.g.abs());
        let mut gamma = s * ((theta / s).powi(2) - (y.g / s) * (p.g / s)).sqrt();
        if p.t > y.t {
            gamma = -gamma;
        }
        let r = ((gamma - p.g) + theta) / (((gamma - p.g) + gamma) + y.g);
        p.t + r * (y.t - p.t)
    } else if p.t > x.t {
        stpmax
    } else {
        stpmin
    };
    if p.f > x.f {
        *y = p;
    } else {
        if sgnd < 0.0 {
            *y = *x;
        }
        *x = p;
    }
    stpf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimises_a_quadratic() {
        // f(x) = sum_i (i+1) (x_i - 1)^2
        let out = minimize(
            |x, g| {
                let mut f = 0.0;
                for (i, (xi, gi)) in x.iter().zip(g.iter_mut()).enumerate() {
                    let w = (i + 1) as f64;
                    f += w * (xi - 1.0).powi(2);
                    *gi = 2.0 * w * (xi - 1.0);
                }
                f
            },
            vec![0.0; 5],
            Params { gtol: 1e-10, ..Params::default() },
        );
        assert!(out.converged);
        assert!(out.x.iter().all(|v| (v - 1.0).abs() < 1e-8), "{:?}", out.x);
    }

    #[test]
    fn minimises_rosenbrock() {
        let out = minimize(
            |x, g| {
                let (a, b) = (x[0], x[1]);
                g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
                g[1] = 200.0 * (b - a * a);
                (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
            },
            vec![-1.2, 1.0],
            Params { gtol: 1e-8, max_iter: 500, ..Params::default() },
        );
        assert!((out.x[0] - 1.0).abs() < 1e-5 && (out.x[1] - 1.0).abs() < 1e-5, "{:?}", out.x);
    }
}
