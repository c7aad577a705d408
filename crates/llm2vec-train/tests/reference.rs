//! Losses, gradients and LoRA against PyTorch/PEFT (fixture written by
//! scripts/reference/make_train_fixtures.py), and loading an adapter PEFT saved.

use candle_core::{Device, Tensor, Var};
mod common;

use common::LoraLinear;
use llm2vec_train::lora::{load_adapter, LoraSettings};
use llm2vec_train::loss::{contrastive_loss, mntp_loss, scalar, simcse_loss};
use serde_json::Value;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn reference() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("train_reference.json")).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn tensor(v: &Value, shape: &[usize]) -> Tensor {
    Tensor::from_vec(floats(v), shape, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(candle_core::DType::F64).unwrap().to_vec1().unwrap()
}

fn assert_close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
    }
}

#[test]
fn mntp_matches_torch() {
    let r = &reference()["mntp"];
    let logits = Var::from_tensor(&tensor(&r["logits"], &[2, 4, 6])).unwrap();
    let labels: Vec<i64> = r["labels"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
    let loss = mntp_loss(logits.as_tensor(), &labels).unwrap();
    assert_close(&[scalar(&loss).unwrap()], &[r["loss"].as_f64().unwrap()], 1e-12);
    let grad = loss.backward().unwrap();
    assert_close(&values(grad.get(logits.as_tensor()).unwrap()), &floats(&r["grad"]), 1e-12);
}

#[test]
fn contrastive_matches_torch() {
    let r = &reference()["contrastive"];
    let q = Var::from_tensor(&tensor(&r["q"], &[3, 5])).unwrap();
    let (p, n) = (tensor(&r["p"], &[3, 5]), tensor(&r["n"], &[3, 5]));
    let sup = contrastive_loss(q.as_tensor(), &p, Some(&n), 50.0).unwrap();
    assert_close(&[scalar(&sup).unwrap()], &[r["supervised_loss"].as_f64().unwrap()], 1e-12);
    let grad = sup.backward().unwrap();
    assert_close(&values(grad.get(q.as_tensor()).unwrap()), &floats(&r["supervised_grad_q"]), 1e-10);
    let simcse = simcse_loss(q.as_tensor(), &p, 20.0).unwrap();
    assert_close(&[scalar(&simcse).unwrap()], &[r["simcse_loss"].as_f64().unwrap()], 1e-12);
}

#[test]
fn lora_matches_peft() {
    let r = &reference()["lora"];
    let settings = LoraSettings { r: 2, lora_alpha: r["alpha"].as_f64().unwrap(), lora_dropout: 0.0 };
    let lin =
        LoraLinear::from_parts(tensor(&r["w"], &[3, 4]), tensor(&r["a"], &[2, 4]), tensor(&r["b"], &[3, 2]), &settings)
            .unwrap();
    let x = Var::from_tensor(&tensor(&r["x"], &[2, 4])).unwrap();
    let y = lin.forward(x.as_tensor(), None).unwrap();
    assert_close(&values(&y), &floats(&r["y"]), 1e-12);
    let grads = y.mul(&tensor(&r["g"], &[2, 3])).unwrap().sum_all().unwrap().backward().unwrap();
    let [a, b] = lin.vars();
    assert_close(&values(grads.get(x.as_tensor()).unwrap()), &floats(&r["grad_x"]), 1e-12);
    assert_close(&values(grads.get(a.as_tensor()).unwrap()), &floats(&r["grad_a"]), 1e-12);
    assert_close(&values(grads.get(b.as_tensor()).unwrap()), &floats(&r["grad_b"]), 1e-12);
    assert!(!r["weight_has_grad"].as_bool().unwrap());
    assert!(grads.get(lin.weight()).is_none());
}

#[test]
fn loads_an_adapter_saved_by_peft() {
    let r = &reference()["lora"];
    let loaded = load_adapter(&fixtures().join("peft_adapter"), &Device::Cpu).unwrap();
    assert_eq!((loaded.config.r, loaded.config.lora_alpha), (2, 6.0));
    assert_eq!(loaded.config.target_modules, ["proj"]);
    let (a, b) = &loaded.weights["proj"];
    assert_close(&values(a), &floats(&r["a"]), 1e-6);
    assert_close(&values(b), &floats(&r["b"]), 1e-6);
}
