//! Training-mode gradients in f64 against central finite differences: each fused training op of the
//! model code, then whole tiny models (Llama; Gemma 2 with soft-capping, GELU and sandwich norms) with
//! bidirectional attention over padded rows, LoRA and attention dropout on. Also: the frozen weights never
//! get a gradient, every LoRA parameter does, checkpointed backprop equals plain backprop, the training
//! forward equals the inference forward, and the MNTP loss equals a hand-computed shifted cross-entropy.

use candle_core::{DType, Device, Tensor, Var};
use llm2vec::model::trainable::{dropout, gated, lora_linear, masked_softmax, rms_norm, rotary, LowRank};
use llm2vec::model::{AttentionMode, Backbone, Pass, Projection};
use llm2vec_train::backprop::{loss_and_grads, Batch};
use llm2vec_train::lora::{LoraModel, LoraSettings};
use llm2vec_train::loss::{mntp_loss, scalar};
use llm2vec_train::mask::IGNORE_INDEX;
use llm2vec_train::rng::Rng;
use std::path::PathBuf;

fn random(shape: &[usize], rng: &mut Rng) -> Tensor {
    let v: Vec<f64> = (0..shape.iter().product()).map(|_| rng.uniform_range(-1.0, 1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap()
}

/// `sum(y * w)` for fixed random weights `w`: every output element matters.
fn weighted(y: &Tensor, seed: u64) -> Tensor {
    let w = random(y.dims(), &mut Rng::new(seed)).to_dtype(y.dtype()).unwrap();
    (y * w).unwrap().sum_all().unwrap()
}

/// Analytic gradient of `f` at `x` (through a Var) against central differences.
fn check(x: &Tensor, f: &dyn Fn(&Tensor) -> Tensor, tol: f64) {
    let var = Var::from_tensor(x).unwrap();
    let analytic = values(f(var.as_tensor()).backward().unwrap().get(var.as_tensor()).expect("a gradient"));
    let base = values(x);
    let eps = 1e-6;
    for (i, a) in analytic.iter().enumerate() {
        let at = |d: f64| {
            let mut v = base.clone();
            v[i] += d;
            scalar(&f(&Tensor::from_vec(v, x.shape(), &Device::Cpu).unwrap())).unwrap()
        };
        let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
        assert!((a - numeric).abs() < tol * (1.0 + numeric.abs()), "element {i}: analytic {a} vs numeric {numeric}");
    }
}

#[test]
fn rms_norm_gradient() {
    let mut rng = Rng::new(1);
    let scale = random(&[6], &mut rng);
    check(&random(&[2, 3, 6], &mut rng), &|x| weighted(&rms_norm(x, &scale, 1e-5).unwrap(), 2), 1e-6);
}

#[test]
fn rotary_gradient() {
    let mut rng = Rng::new(3);
    let (cos, sin) = (random(&[5, 4], &mut rng), random(&[5, 4], &mut rng));
    check(&random(&[2, 3, 5, 8], &mut rng), &|x| weighted(&rotary(x, &cos, &sin).unwrap(), 4), 1e-6);
}

#[test]
fn masked_softmax_gradient_and_mask() {
    let mut rng = Rng::new(5);
    // Row 1 of the batch has its last two keys masked out (padding).
    let mut bias = vec![0f64; 2 * 4 * 4];
    for q in 0..4 {
        bias[16 + q * 4 + 2] = -1e9;
        bias[16 + q * 4 + 3] = -1e9;
    }
    let bias = Tensor::from_vec(bias, (2, 1, 4, 4), &Device::Cpu).unwrap();
    let scores = random(&[2, 3, 4, 4], &mut rng);
    let probs = masked_softmax(&scores, &bias).unwrap();
    let padded: Vec<f64> = values(&probs.narrow(0, 1, 1).unwrap().narrow(3, 2, 2).unwrap());
    assert!(padded.iter().all(|&p| p == 0.0));
    check(&scores, &|s| weighted(&masked_softmax(s, &bias).unwrap(), 6), 1e-6);
}

#[test]
fn gated_activation_gradients() {
    let mut rng = Rng::new(7);
    let (gate, up) = (random(&[3, 5], &mut rng), random(&[3, 5], &mut rng));
    for gelu in [false, true] {
        check(&gate, &|g| weighted(&gated(g, &up, gelu).unwrap(), 8), 1e-6);
        check(&up, &|u| weighted(&gated(&gate, u, gelu).unwrap(), 8), 1e-6);
    }
}

#[test]
fn dropout_gradient_uses_the_same_mask() {
    let x = random(&[4, 50], &mut Rng::new(9));
    let kept = values(&dropout(&x, 0.3, 11).unwrap()).iter().filter(|v| **v != 0.0).count();
    assert!((100..180).contains(&kept), "about 70% of 200 kept, got {kept}");
    check(&x, &|x| weighted(&dropout(x, 0.3, 11).unwrap(), 10), 1e-6);
}

#[test]
fn lora_linear_gradients_with_dropout() {
    let mut rng = Rng::new(12);
    let (w_t, bias) = (random(&[6, 4], &mut rng), random(&[4], &mut rng));
    let (a, b, x) = (random(&[2, 6], &mut rng), random(&[4, 2], &mut rng), random(&[2, 3, 6], &mut rng));
    let run = |x: &Tensor, a: &Tensor, b: &Tensor| {
        let lr = LowRank { a: a.clone(), b: b.clone(), scale: 2.0, dropout: 0.25 };
        weighted(&lora_linear(x, &w_t, Some(&bias), &lr, Some(13)).unwrap(), 14)
    };
    check(&x, &|x| run(x, &a, &b), 1e-6);
    check(&a, &|a| run(&x, a, &b), 1e-6);
    check(&b, &|b| run(&x, &a, b), 1e-6);
}

fn fixture(family: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../llm2vec/tests/fixtures/parity/{family}/model"))
}

fn tiny(family: &str, dtype: DType) -> Box<dyn Backbone> {
    let loaded = llm2vec::load::load(fixture(family).to_str().unwrap(), &Device::Cpu).unwrap();
    loaded.config.build(&loaded.weights, dtype, &Device::Cpu).unwrap()
}

/// LoRA on every projection with random (non-zero) B, so every gradient path is live.
fn lora(backbone: &dyn Backbone, dropout: f64) -> LoraModel {
    let settings = LoraSettings { r: 2, lora_alpha: 4.0, lora_dropout: dropout };
    let lora = LoraModel::new(&backbone.sites(), &Projection::ALL, &settings, 1, backbone.dtype(), &Device::Cpu).unwrap().with_attention_dropout(dropout);
    let mut rng = Rng::new(2);
    for v in lora.vars() {
        v.set(&(random(v.dims(), &mut rng) * 0.3).unwrap().to_dtype(v.dtype()).unwrap()).unwrap();
    }
    lora
}

/// Two rows, the second padded: 7 and 4 real tokens.
fn batch() -> Batch {
    Batch::new(&[&[1, 5, 9, 14, 3, 8, 2], &[1, 7, 7, 2]], &Device::Cpu).unwrap()
}

fn model_loss(backbone: &dyn Backbone, lora: &LoraModel, batch: &Batch, checkpoint: bool) -> (f64, Vec<Tensor>) {
    lora.set_rng(Some(Rng::new(21)));
    let out = loss_and_grads(backbone, lora, std::slice::from_ref(batch), AttentionMode::Bidirectional, checkpoint, |h| {
        Ok(weighted(&h[0], 22))
    })
    .unwrap();
    (out.loss, out.grads)
}

fn check_model(family: &str) {
    let backbone = tiny(family, DType::F64);
    let lora = lora(backbone.as_ref(), 0.2);
    let batch = batch();
    let (_, grads) = model_loss(backbone.as_ref(), &lora, &batch, false);
    let vars = lora.vars();
    assert!(grads.iter().all(|g| values(g).iter().any(|v| *v != 0.0)), "every LoRA parameter gets a gradient");
    // A sample of coordinates in a sample of variables: first and last layer, attention and MLP.
    let n = vars.len();
    for k in [0, 1, 7, n / 2, n - 2, n - 1] {
        let analytic = values(&grads[k]);
        let original = vars[k].as_tensor().copy().unwrap();
        let flat = values(&original);
        for i in [0, flat.len() / 2, flat.len() - 1] {
            let at = |d: f64| {
                let mut v = flat.clone();
                v[i] += d;
                vars[k].set(&Tensor::from_vec(v, original.shape(), &Device::Cpu).unwrap()).unwrap();
                let loss = model_loss(backbone.as_ref(), &lora, &batch, false).0;
                vars[k].set(&original).unwrap();
                loss
            };
            let numeric = (at(1e-6) - at(-1e-6)) / 2e-6;
            assert!((analytic[i] - numeric).abs() < 1e-5 * (1.0 + numeric.abs()), "{family} var {k}[{i}]: {} vs {numeric}", analytic[i]);
        }
    }
}

#[test]
fn llama_model_gradients_match_finite_differences() {
    check_model("llama");
}

#[test]
fn gemma2_model_gradients_match_finite_differences() {
    check_model("gemma2");
}

#[test]
fn checkpointed_backprop_equals_plain_backprop() {
    let backbone = tiny("llama", DType::F64);
    let lora = lora(backbone.as_ref(), 0.2);
    let (plain_loss, plain) = model_loss(backbone.as_ref(), &lora, &batch(), false);
    let (ckpt_loss, ckpt) = model_loss(backbone.as_ref(), &lora, &batch(), true);
    assert!((plain_loss - ckpt_loss).abs() < 1e-12);
    for (a, b) in plain.iter().zip(&ckpt) {
        let diff = values(&(a - b).unwrap()).iter().fold(0f64, |m, v| m.max(v.abs()));
        assert!(diff < 1e-10, "{diff}");
    }
}

#[test]
fn frozen_weights_never_get_a_gradient() {
    let backbone = tiny("llama", DType::F64);
    let lora = lora(backbone.as_ref(), 0.0);
    let batch = batch();
    lora.set_rng(Some(Rng::new(1)));
    let hidden = backbone.forward_pass(&batch.ids, &batch.lengths, AttentionMode::Bidirectional, Pass::Train(&lora)).unwrap();
    let logits = backbone.logits(&hidden, Pass::Train(&lora)).unwrap();
    let store = weighted(&logits, 3).backward().unwrap();
    // Every weight of the model has one of these shapes (as stored, or transposed); no activation here does
    // (the batch has 14 positions).
    let mut weight_shapes: Vec<Vec<usize>> = vec![vec![419, 32], vec![32, 419], vec![32]];
    for (_, inp, out) in backbone.sites() {
        weight_shapes.push(vec![inp, out]);
        weight_shapes.push(vec![out, inp]);
    }
    let lora_ids: Vec<_> = lora.vars().iter().map(|v| v.as_tensor().id()).collect();
    for id in store.get_ids() {
        let g = store.get_id(*id).unwrap();
        if !lora_ids.contains(id) {
            assert!(!weight_shapes.contains(&g.dims().to_vec()), "a gradient of shape {:?} (a frozen weight?)", g.dims());
        }
    }
    assert!(lora.vars().iter().all(|v| store.get(v.as_tensor()).is_some()));
}

#[test]
fn training_forward_equals_inference_forward() {
    for family in ["llama", "gemma2", "qwen2", "mistral", "gemma"] {
        let backbone = tiny(family, DType::F32);
        let fresh = LoraModel::new(&backbone.sites(), &Projection::ALL, &LoraSettings { r: 2, lora_alpha: 4.0, lora_dropout: 0.1 }, 1, DType::F32, &Device::Cpu).unwrap();
        let batch = batch();
        for mode in [AttentionMode::Bidirectional, AttentionMode::Causal] {
            let infer = backbone.forward(&batch.ids, &batch.lengths, mode).unwrap();
            fresh.set_rng(None);
            let train = backbone.forward_pass(&batch.ids, &batch.lengths, mode, Pass::Train(&fresh)).unwrap();
            let diff = values(&(infer - train).unwrap().abs().unwrap().max_all().unwrap())[0];
            assert!(diff < 1e-4, "{family} {mode:?}: {diff}");
        }
    }
}

#[test]
fn mntp_loss_equals_hand_computed_shifted_cross_entropy() {
    let backbone = tiny("llama", DType::F64);
    let ids: Vec<u32> = vec![1, 5, 9, 14, 3, 8, 2];
    // Masked: positions 2 and 5, predicted from the outputs at 1 and 4.
    let mut labels = vec![IGNORE_INDEX; ids.len()];
    labels[2] = 9;
    labels[5] = 8;
    let mut input = ids.clone();
    input[2] = 0;
    input[5] = 0;
    let batch = Batch::new(&[&input], &Device::Cpu).unwrap();
    let hidden = backbone.forward(&batch.ids, &batch.lengths, AttentionMode::Bidirectional).unwrap();
    let logits = backbone.logits(&hidden, Pass::Infer).unwrap();
    let ours = scalar(&mntp_loss(&logits, &labels).unwrap()).unwrap();
    let rows: Vec<Vec<f64>> = logits.squeeze(0).unwrap().to_vec2().unwrap();
    let nll = |row: &[f64], target: usize| {
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        lse - row[target]
    };
    let expected = (nll(&rows[1], 9) + nll(&rows[4], 8)) / 2.0;
    assert!((ours - expected).abs() < 1e-10, "{ours} vs {expected}");
}
