//! Finite-difference gradient checks in f64 for the LoRA layer and the losses, and the
//! frozen-weight guarantee: the base weight never appears in the GradStore.

use candle_core::{Device, Tensor, Var};
mod common;

use common::{frozen_linear, LoraLinear};
use llm2vec_train::lora::LoraSettings;
use llm2vec_train::loss::{contrastive_loss, masked_mean_pool, mntp_loss, scalar, simcse_loss};
use llm2vec_train::mask::IGNORE_INDEX;
use llm2vec_train::rng::Rng;

fn random(shape: &[usize], rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.uniform_range(-1.0, 1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Central differences of `f` at `x`, one coordinate at a time.
fn numeric_grad(x: &Tensor, f: &dyn Fn(&Tensor) -> f64) -> Vec<f64> {
    let base = values(x);
    let eps = 1e-6;
    (0..base.len())
        .map(|i| {
            let at = |d: f64| {
                let mut v = base.clone();
                v[i] += d;
                f(&Tensor::from_vec(v, x.shape(), &Device::Cpu).unwrap())
            };
            (at(eps) - at(-eps)) / (2.0 * eps)
        })
        .collect()
}

fn assert_close(analytic: &[f64], numeric: &[f64]) {
    assert_eq!(analytic.len(), numeric.len());
    for (a, n) in analytic.iter().zip(numeric) {
        assert!((a - n).abs() < 1e-6 * (1.0 + n.abs()), "analytic {a} vs numeric {n}");
    }
}

/// Checks d loss(x) / dx for a loss built on a Var holding `x`.
fn check(x: &Tensor, loss: &dyn Fn(&Tensor) -> Tensor) {
    let var = Var::from_tensor(x).unwrap();
    let grads = loss(var.as_tensor()).backward().unwrap();
    let analytic = values(grads.get(var.as_tensor()).unwrap());
    let numeric = numeric_grad(x, &|t| scalar(&loss(t)).unwrap());
    assert_close(&analytic, &numeric);
}

fn settings() -> LoraSettings {
    LoraSettings { r: 2, lora_alpha: 4.0, lora_dropout: 0.0 }
}

/// A layer with non-zero B so every gradient path is exercised.
fn layer(rng: &mut Rng) -> (Tensor, Tensor, Tensor) {
    (random(&[3, 4], rng), random(&[2, 4], rng), random(&[3, 2], rng))
}

fn weighted_sum(y: &Tensor, rng_seed: u64) -> Tensor {
    let w = random(y.dims(), &mut Rng::new(rng_seed));
    y.mul(&w).unwrap().sum_all().unwrap()
}

#[test]
fn lora_gradients_match_finite_differences() {
    let mut rng = Rng::new(11);
    let (w, a, b) = layer(&mut rng);
    let x = random(&[2, 3, 4], &mut rng);
    let build = |a: &Tensor, b: &Tensor| LoraLinear::from_parts(w.clone(), a.clone(), b.clone(), &settings()).unwrap();
    check(&x, &|x| weighted_sum(&build(&a, &b).forward(x, None).unwrap(), 5));
    let loss_ab = |a: &Tensor, b: &Tensor| {
        let x = x.clone();
        let lin = build(a, b);
        let y = lin.forward(&x, None).unwrap();
        (lin, weighted_sum(&y, 5))
    };
    let (lin, loss) = loss_ab(&a, &b);
    let grads = loss.backward().unwrap();
    let [va, vb] = lin.vars();
    let ga = values(grads.get(va.as_tensor()).unwrap());
    let gb = values(grads.get(vb.as_tensor()).unwrap());
    assert_close(&ga, &numeric_grad(&a, &|a| scalar(&loss_ab(a, &b).1).unwrap()));
    assert_close(&gb, &numeric_grad(&b, &|b| scalar(&loss_ab(&a, b).1).unwrap()));
}

#[test]
fn frozen_weight_gets_no_gradient_and_lora_params_do() {
    let mut rng = Rng::new(3);
    let w = random(&[5, 4], &mut rng);
    let s = LoraSettings { r: 2, lora_alpha: 4.0, lora_dropout: 0.1 };
    let lin = LoraLinear::new(w.clone(), &s, &mut rng).unwrap();
    // B starts at zero: one step of an optimizer would move it; here we only need the
    // gradient of B (non-zero because A is not) and of A (non-zero once B is).
    let x = Var::from_tensor(&random(&[3, 4], &mut rng)).unwrap();
    let y = lin.forward(x.as_tensor(), Some(1)).unwrap();
    let grads = weighted_sum(&y, 9).backward().unwrap();
    assert!(grads.get(lin.weight()).is_none());
    assert!(grads.get(&w).is_none());
    assert!(grads.get(x.as_tensor()).is_some());
    let [a, b] = lin.vars();
    assert!(values(grads.get(b.as_tensor()).unwrap()).iter().any(|&g| g != 0.0));
    assert!(values(grads.get(a.as_tensor()).unwrap()).iter().all(|&g| g == 0.0), "B = 0 at init");

    let (w2, a2, b2) = layer(&mut rng);
    let lin = LoraLinear::from_parts(w2.clone(), a2, b2, &settings()).unwrap();
    let grads = weighted_sum(&lin.forward(x.as_tensor(), None).unwrap(), 9).backward().unwrap();
    assert!(grads.get(&w2).is_none() && grads.get(lin.weight()).is_none());
    for v in lin.vars() {
        assert!(values(grads.get(v.as_tensor()).unwrap()).iter().all(|&g| g != 0.0));
    }
}

#[test]
fn plain_matmul_would_store_a_weight_gradient() {
    // The reason for frozen_linear: candle's matmul backward fills in the frozen operand.
    let mut rng = Rng::new(4);
    let w = random(&[3, 4], &mut rng);
    let x = Var::from_tensor(&random(&[2, 4], &mut rng)).unwrap();
    let wt = w.t().unwrap();
    let naive = x.as_tensor().matmul(&wt).unwrap();
    assert!(naive.sum_all().unwrap().backward().unwrap().get(&wt).is_some());
    let ours = frozen_linear(x.as_tensor(), &w).unwrap();
    let diff = (ours - naive).unwrap().abs().unwrap().max_all().unwrap();
    assert!(scalar(&diff).unwrap() < 1e-12);
}

#[test]
fn frozen_linear_accepts_views_with_an_offset() {
    let mut rng = Rng::new(6);
    let w = random(&[3, 4], &mut rng);
    let x = Var::from_tensor(&random(&[5, 4], &mut rng)).unwrap();
    let view = x.as_tensor().narrow(0, 2, 3).unwrap();
    let ours = frozen_linear(&view, &w).unwrap();
    let expected = view.matmul(&w.t().unwrap()).unwrap();
    let diff = (&ours - expected).unwrap().abs().unwrap().max_all().unwrap();
    assert!(scalar(&diff).unwrap() < 1e-12);
    let grads = ours.sum_all().unwrap().backward().unwrap();
    let gx: Vec<Vec<f64>> = grads.get(x.as_tensor()).unwrap().to_vec2().unwrap();
    let col_sums: Vec<f64> = (0..4).map(|j| values(&w.narrow(1, j, 1).unwrap()).iter().sum()).collect();
    assert!(gx[..2].iter().flatten().all(|&g| g == 0.0));
    for row in &gx[2..] {
        for (g, c) in row.iter().zip(&col_sums) {
            assert!((g - c).abs() < 1e-12);
        }
    }
}

#[test]
fn frozen_linear_rejects_bad_shapes() {
    let w = Tensor::zeros((3, 4), candle_core::DType::F64, &Device::Cpu).unwrap();
    let x = Tensor::zeros((2, 5), candle_core::DType::F64, &Device::Cpu).unwrap();
    assert!(frozen_linear(&x, &w).is_err());
    let bad_a = Tensor::zeros((2, 5), candle_core::DType::F64, &Device::Cpu).unwrap();
    let b = Tensor::zeros((3, 2), candle_core::DType::F64, &Device::Cpu).unwrap();
    assert!(LoraLinear::from_parts(w, bad_a, b, &settings()).is_err());
}

#[test]
fn mntp_loss_gradient() {
    let logits = random(&[2, 3, 5], &mut Rng::new(21));
    let labels = [3, 1, IGNORE_INDEX, 0, IGNORE_INDEX, 4];
    check(&logits, &|l| mntp_loss(l, &labels).unwrap());
}

#[test]
fn contrastive_loss_gradients() {
    let mut rng = Rng::new(8);
    let (q, p, n) = (random(&[3, 4], &mut rng), random(&[3, 4], &mut rng), random(&[2, 4], &mut rng));
    check(&q, &|q| contrastive_loss(q, &p, Some(&n), 5.0).unwrap());
    check(&p, &|p| contrastive_loss(&q, p, Some(&n), 5.0).unwrap());
    check(&n, &|n| contrastive_loss(&q, &p, Some(n), 5.0).unwrap());
    check(&q, &|q| simcse_loss(q, &p, 20.0).unwrap());
}

#[test]
fn pooled_contrastive_gradient() {
    let mut rng = Rng::new(12);
    let h = random(&[2, 3, 4], &mut rng);
    let other = random(&[2, 4], &mut rng);
    let mask = Tensor::from_vec(vec![1.0f64, 1.0, 0.0, 1.0, 1.0, 1.0], (2, 3), &Device::Cpu).unwrap();
    check(&h, &|h| simcse_loss(&masked_mean_pool(h, &mask).unwrap(), &other, 20.0).unwrap());
}
