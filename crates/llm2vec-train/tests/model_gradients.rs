//! Training-mode gradients in f64 against central finite differences: each fused training op of the
//! model code, then whole tiny models (Llama; Gemma 2 with soft-capping, GELU and sandwich norms; Gemma 3
//! with per-head q/k norms) with
//! bidirectional attention over padded rows, LoRA and attention dropout on. Also: the frozen weights never
//! get a gradient, every LoRA parameter does, checkpointed backprop equals plain backprop, the training
//! forward equals the inference forward, and the MNTP loss equals a hand-computed shifted cross-entropy.

use candle_core::{DType, Device, Tensor, Var};
use llm2vec::model::mlp::Activation;
use llm2vec::model::ops::{attention, gated, lora_linear, rms_norm, AttentionSpec, Part};
use llm2vec::model::{AttentionMode, Backbone, LowRank, Pass, Projection};
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

/// A `[b, 1, l, l]` bias that hides the last `hidden[i]` keys of sequence `i` (padding).
fn padding_bias(b: usize, l: usize, hidden: &[usize]) -> Tensor {
    let mut bias = vec![0f64; b * l * l];
    for (i, &n) in hidden.iter().enumerate() {
        for q in 0..l {
            bias[(i * l + q) * l + l - n..(i * l + q + 1) * l].iter_mut().for_each(|v| *v = -1e9);
        }
    }
    Tensor::from_vec(bias, (b, 1, l, l), &Device::Cpu).unwrap()
}

/// The attention op's gradients for q, k and v (side by side in its input): grouped heads, padding, rotary tables, with and
/// without soft-capping and dropout on the probabilities.
#[test]
fn attention_gradients() {
    let mut rng = Rng::new(3);
    let (b, l, heads, kv, d) = (2, 4, 4, 2, 6);
    let (cos, sin) = (random(&[l, d / 2], &mut rng), random(&[l, d / 2], &mut rng));
    let bias = padding_bias(b, l, &[0, 2]);
    let qkv = random(&[b, l, (heads + 2 * kv) * d], &mut rng);
    for (softcap, dropout) in [(None, None), (Some(2.0), Some((0.3, 11)))] {
        let spec = AttentionSpec { heads, kv_heads: kv, head_dim: d, scale: 0.4, softcap };
        check(&qkv, &|qkv| weighted(&attention(qkv, Some((&cos, &sin)), &bias, spec, dropout).unwrap(), 4), 1e-6);
    }
}

/// With one-hot value rows and no rotation the output rows are the probabilities: dropout zeroes about
/// `p` of them and scales the rest by `1 / (1 - p)`; padded keys get none.
#[test]
fn attention_dropout_and_mask() {
    let (b, l, heads) = (2, 8, 2);
    let (cos, sin) = (
        Tensor::ones((l, l / 2), DType::F64, &Device::Cpu).unwrap(),
        Tensor::zeros((l, l / 2), DType::F64, &Device::Cpu).unwrap(),
    );
    let bias = padding_bias(b, l, &[0, 3]);
    let mut rng = Rng::new(5);
    let qk = random(&[b, l, (heads + 1) * l], &mut rng);
    let v = Tensor::eye(l, DType::F64, &Device::Cpu).unwrap().unsqueeze(0).unwrap().repeat((b, 1, 1)).unwrap();
    let qkv = Tensor::cat(&[qk, v], 2).unwrap();
    let spec = AttentionSpec { heads, kv_heads: 1, head_dim: l, scale: 1.0, softcap: None };
    let out = attention(&qkv, Some((&cos, &sin)), &bias, spec, None).unwrap();
    let (probs, dropped) =
        (values(&out), values(&attention(&qkv, Some((&cos, &sin)), &bias, spec, Some((0.3, 7))).unwrap()));
    let padded = values(&out.get(1).unwrap().reshape((l, heads, l)).unwrap().narrow(2, l - 3, 3).unwrap());
    assert!(padded.iter().all(|&p| p == 0.0));
    let zeroed = dropped.iter().filter(|&&p| p == 0.0).count() - probs.iter().filter(|&&p| p == 0.0).count();
    assert!((40..120).contains(&zeroed), "about 30% of 256 probabilities dropped, got {zeroed}");
    for (p, d) in probs.iter().zip(&dropped) {
        assert!(*d == 0.0 || (d - p / 0.7).abs() < 1e-12, "{d} vs {p} / 0.7");
    }
}

#[test]
fn gated_activation_gradients() {
    let mut rng = Rng::new(7);
    let (gate, up) = (random(&[3, 5], &mut rng), random(&[3, 5], &mut rng));
    for act in [Activation::Silu, Activation::GeluTanh] {
        let run = |g: &Tensor, u: &Tensor| weighted(&gated(&Tensor::cat(&[g, u], 1).unwrap(), act).unwrap(), 8);
        check(&gate, &|g| run(g, &up), 1e-6);
        check(&up, &|u| run(&gate, u), 1e-6);
    }
}

/// The ops in f32 (the training dtype; the SiLU gate takes a vectorised kernel there) agree with f64,
/// outputs and input gradients.
#[test]
fn f32_ops_agree_with_f64() {
    let mut rng = Rng::new(21);
    let (gate, up) = (random(&[3, 40], &mut rng).affine(6.0, 0.0).unwrap(), random(&[3, 40], &mut rng));
    let (cos, sin) = (random(&[5, 4], &mut rng), random(&[5, 4], &mut rng));
    let (qkv, bias) = (random(&[2, 5, 32], &mut rng), padding_bias(2, 5, &[0, 2]));
    let spec = AttentionSpec { heads: 2, kv_heads: 1, head_dim: 8, scale: 0.3, softcap: Some(3.0) };
    let (w_t, a, b) = (random(&[40, 6], &mut rng), random(&[2, 40], &mut rng), random(&[6, 2], &mut rng));
    type Op<'a> = Box<dyn Fn(&Tensor) -> Tensor + 'a>;
    let cases: Vec<(Tensor, Op)> = vec![
        (
            gate.clone(),
            Box::new(|g: &Tensor| {
                gated(&Tensor::cat(&[g, &up.to_dtype(g.dtype()).unwrap()], 1).unwrap(), Activation::Silu).unwrap()
            }),
        ),
        (
            gate.clone(),
            Box::new(|g: &Tensor| {
                gated(&Tensor::cat(&[g, &up.to_dtype(g.dtype()).unwrap()], 1).unwrap(), Activation::GeluTanh).unwrap()
            }),
        ),
        (gate.clone(), Box::new(|x: &Tensor| rms_norm(x, &up.get(0).unwrap(), 1e-6).unwrap())),
        (
            qkv.clone(),
            Box::new(|qkv: &Tensor| attention(qkv, Some((&cos, &sin)), &bias, spec, Some((0.2, 3))).unwrap()),
        ),
        (
            up.clone(),
            Box::new(|x: &Tensor| {
                let lr = LowRank {
                    a: a.to_dtype(x.dtype()).unwrap(),
                    b: b.to_dtype(x.dtype()).unwrap(),
                    scale: 2.0,
                    dropout: 0.25,
                };
                lora_linear(x, &w_t, None, &[Part { width: 6, update: Some((lr, Some(5))) }]).unwrap()
            }),
        ),
    ];
    for (i, (x, f)) in cases.iter().enumerate() {
        let run = |dtype: DType| {
            let var = Var::from_tensor(&x.to_dtype(dtype).unwrap()).unwrap();
            let y = f(var.as_tensor());
            let grad = weighted(&y, 7).backward().unwrap().get(var.as_tensor()).unwrap().clone();
            (values(&y), values(&grad))
        };
        let ((y32, g32), (y64, g64)) = (run(DType::F32), run(DType::F64));
        for (a, b) in y32.iter().zip(&y64).chain(g32.iter().zip(&g64)) {
            assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "case {i}: f32 {a} vs f64 {b}");
        }
    }
}

/// A fused projection of three parts: LoRA with dropout on the first, none on the second, LoRA without
/// dropout on the third.
#[test]
fn lora_linear_gradients_with_dropout() {
    let mut rng = Rng::new(12);
    let (w_t, bias) = (random(&[6, 9], &mut rng), random(&[9], &mut rng));
    let (a0, b0, a2, b2) =
        (random(&[2, 6], &mut rng), random(&[4, 2], &mut rng), random(&[3, 6], &mut rng), random(&[2, 3], &mut rng));
    let x = random(&[2, 3, 6], &mut rng);
    let run = |x: &Tensor, [a0, b0, a2, b2]: [&Tensor; 4]| {
        let update = |a: &Tensor, b: &Tensor, dropout, seed| {
            Some((LowRank { a: a.clone(), b: b.clone(), scale: 2.0, dropout }, seed))
        };
        let parts = [
            Part { width: 4, update: update(a0, b0, 0.25, Some(13)) },
            Part { width: 3, update: None },
            Part { width: 2, update: update(a2, b2, 0.0, None) },
        ];
        weighted(&lora_linear(x, &w_t, Some(&bias), &parts).unwrap(), 14)
    };
    check(&x, &|x| run(x, [&a0, &b0, &a2, &b2]), 1e-6);
    check(&a0, &|a| run(&x, [a, &b0, &a2, &b2]), 1e-6);
    check(&b0, &|b| run(&x, [&a0, b, &a2, &b2]), 1e-6);
    check(&a2, &|a| run(&x, [&a0, &b0, a, &b2]), 1e-6);
    check(&b2, &|b| run(&x, [&a0, &b0, &a2, b]), 1e-6);
}

fn fixture(family: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../llm2vec/tests/fixtures/parity/{family}/model"))
}

fn tiny(family: &str, dtype: DType) -> Box<dyn Backbone> {
    let loaded = llm2vec::load::load(fixture(family).to_str().unwrap(), &Device::Cpu).unwrap();
    loaded.config.build(&loaded.weights, dtype, &Device::Cpu, false).unwrap()
}

/// LoRA on every projection with random (non-zero) B, so every gradient path is live.
fn lora(backbone: &dyn Backbone, dropout: f64) -> LoraModel {
    let settings = LoraSettings { r: 2, lora_alpha: 4.0, lora_dropout: dropout };
    let lora = LoraModel::new(&backbone.sites(), &Projection::ALL, &settings, 1, backbone.dtype(), &Device::Cpu)
        .unwrap()
        .with_attention_dropout(dropout);
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
    let out =
        loss_and_grads(backbone, lora, std::slice::from_ref(batch), AttentionMode::Bidirectional, checkpoint, |h| {
            Ok(weighted(&h[0], 22))
        })
        .unwrap();
    (out.loss, out.grads)
}

/// A tiny Gemma 3 (per-head RMSNorm on q and k, alternating local layers, no soft-capping) made from
/// the Gemma 2 fixture: its weights plus q/k norm scales, in a temporary folder.
fn tiny_gemma3(dtype: DType) -> (tempfile::TempDir, Box<dyn Backbone>) {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("gemma2");
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(file), dir.path().join(file)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    config["model_type"] = "gemma3_text".into();
    config["architectures"] = serde_json::json!(["Gemma3ForCausalLM"]);
    config["sliding_window_pattern"] = 2.into();
    config["rope_local_base_freq"] = 1000.0.into();
    config["attn_logit_softcapping"] = serde_json::Value::Null;
    config["final_logit_softcapping"] = serde_json::Value::Null;
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let mut weights = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut rng = Rng::new(8);
    for layer in 0..4 {
        for norm in ["q_norm", "k_norm"] {
            weights.insert(
                format!("model.layers.{layer}.self_attn.{norm}.weight"),
                random(&[16], &mut rng).to_dtype(DType::F32).unwrap(),
            );
        }
    }
    candle_core::safetensors::save(&weights, dir.path().join("model.safetensors")).unwrap();
    let loaded = llm2vec::load::load(dir.path().to_str().unwrap(), &Device::Cpu).unwrap();
    let backbone = loaded.config.build(&loaded.weights, dtype, &Device::Cpu, false).unwrap();
    (dir, backbone)
}

fn check_model(family: &str, backbone: Box<dyn Backbone>) {
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
            assert!(
                (analytic[i] - numeric).abs() < 1e-5 * (1.0 + numeric.abs()),
                "{family} var {k}[{i}]: {} vs {numeric}",
                analytic[i]
            );
        }
    }
}

#[test]
fn llama_model_gradients_match_finite_differences() {
    check_model("llama", tiny("llama", DType::F64));
}

#[test]
fn gemma2_model_gradients_match_finite_differences() {
    check_model("gemma2", tiny("gemma2", DType::F64));
}

#[test]
fn gemma3_model_gradients_match_finite_differences() {
    check_model("gemma3", tiny_gemma3(DType::F64).1);
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
    let hidden =
        backbone.forward_pass(&batch.ids, &batch.lengths, AttentionMode::Bidirectional, Pass::Train(&lora)).unwrap();
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
            assert!(
                !weight_shapes.contains(&g.dims().to_vec()),
                "a gradient of shape {:?} (a frozen weight?)",
                g.dims()
            );
        }
    }
    assert!(lora.vars().iter().all(|v| store.get(v.as_tensor()).is_some()));
}

#[test]
fn training_forward_equals_inference_forward() {
    let (_dir, gemma3) = tiny_gemma3(DType::F32);
    let mut backbones: Vec<(&str, Box<dyn Backbone>)> = vec![("gemma3", gemma3)];
    backbones.extend(["llama", "gemma2", "qwen2", "mistral", "gemma"].map(|f| (f, tiny(f, DType::F32))));
    for (family, backbone) in backbones {
        let fresh = LoraModel::new(
            &backbone.sites(),
            &Projection::ALL,
            &LoraSettings { r: 2, lora_alpha: 4.0, lora_dropout: 0.1 },
            1,
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
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
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        lse - row[target]
    };
    let expected = (nll(&rows[1], 9) + nll(&rows[4], 8)) / 2.0;
    assert!((ours - expected).abs() < 1e-10, "{ours} vs {expected}");
}
