//! Training on the device named by `LLM2VEC_TEST_DEVICE` (`cpu`, `cuda` or `cuda:N`; default `cpu`)
//! against the CPU references: each training op's output and gradients, and whole tiny models' LoRA
//! gradients, against the fused CPU kernels in f64 (f32 within 1e-4 relative, bf16 within
//! [`BF16_BOUND`] and [`BF16_MODEL_BOUND`]); one MNTP, SimCSE and supervised step (f32, gradient checkpointing in one) giving the
//! CPU's loss and LoRA gradients; and a run saved on the CPU resumed on the device.
//!
//! On the CPU the device side runs inside `llm2vec::model::ops::composed_ops`, the ops that run off the
//! CPU, so that here they are checked against the fused CPU kernels. On a GPU, build the executable
//! where the CUDA toolkit is (no GPU needed) and run it from the repository root (it reads the tiny
//! models of `crates/llm2vec/tests/fixtures/parity/`):
//!
//! ```text
//! cargo test --release --features cuda -p llm2vec-train --test device --no-run   # names the executable
//! LLM2VEC_TEST_DEVICE=cuda:0 target/release/deps/device-<hash> --test-threads 1
//! ```

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{triplets_folder, SENTENCES};
use llm2vec::model::mlp::Activation;
use llm2vec::model::ops::{attention, composed_ops, frozen_matmul, gated, lora_linear, rms_norm, AttentionSpec, Part};
use llm2vec::model::{AttentionMode, Backbone, LowRank, Projection};
use llm2vec_train::backprop::{loss_and_grads, Batch};
use llm2vec_train::config::{self, Stage, TrainConfig};
use llm2vec_train::lora::{LoraModel, LoraSettings};
use llm2vec_train::rng::Rng;
use llm2vec_train::trainer::{self, master_dtype, Outcome, RunOptions};
use serde_json::json;
use std::path::{Path, PathBuf};

/// The largest difference allowed in f32, relative to the largest magnitude of the f64 reference.
const F32_BOUND: f64 = 1e-4;
/// The same in bf16 for an op's output and gradients and for a model's loss: bf16 keeps 8 significant
/// bits (a step of 2^-8 = 0.4 %). Measured on the CPU: at most 6.5e-3 (ops), 9.8e-3 (losses).
const BF16_BOUND: f64 = 2e-2;
/// The same for a whole model's LoRA gradients, relative to the largest LoRA gradient of the model:
/// rounding adds up over the blocks. Measured on the CPU: at most 1.5e-2 (Llama), 1.7e-2 (Qwen 2),
/// 8.0e-2 (Gemma 2: embeddings scaled by sqrt(hidden), four norms per block).
const BF16_MODEL_BOUND: f64 = 0.1;

/// The device under test.
fn device() -> Device {
    let spec = std::env::var("LLM2VEC_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    llm2vec::parse_device(&spec).unwrap_or_else(|e| panic!("LLM2VEC_TEST_DEVICE: {e}"))
}

/// Runs `f` as it runs on the device under test: on the CPU, with the composed ops forced.
fn on_device<R>(device: &Device, f: impl FnOnce() -> R) -> R {
    if device.is_cpu() {
        composed_ops(f)
    } else {
        f()
    }
}

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let v: Vec<f64> = (0..shape.iter().product()).map(|_| rng.uniform_range(-1.0, 1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// `t` in the dtype and on the device of `like`.
fn like(t: &Tensor, like: &Tensor) -> Tensor {
    t.to_dtype(like.dtype()).unwrap().to_device(like.device()).unwrap()
}

/// The largest magnitude in `t`.
fn max_abs(t: &Tensor) -> f64 {
    let t = t.to_device(&Device::Cpu).unwrap().to_dtype(DType::F64).unwrap().flatten_all().unwrap();
    t.abs().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
}

/// `got` is within `bound` of `want`, relative to `scale` (by default the largest magnitude in `want`).
fn assert_close_to(got: &Tensor, want: &Tensor, bound: f64, scale: Option<f64>, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}");
    let got = got.to_device(&Device::Cpu).unwrap().to_dtype(DType::F64).unwrap();
    let diff =
        max_abs(&(got - want.to_dtype(DType::F64).unwrap()).unwrap()) / scale.unwrap_or(max_abs(want)).max(1e-30);
    assert!(diff <= bound, "{what}: off by {diff:e} relative (bound {bound:e})");
}

fn assert_close(got: &Tensor, want: &Tensor, bound: f64, what: &str) {
    assert_close_to(got, want, bound, None, what);
}

/// `sum(y * w)` in at least f32, for fixed weights `w`: every output element matters.
fn weighted(y: &Tensor, seed: u64) -> Tensor {
    let y = llm2vec::model::ops::widened(y).unwrap();
    (&y * like(&random(y.dims(), seed), &y)).unwrap().sum_all().unwrap()
}

/// An op on its inputs.
type Op = Box<dyn Fn(&[Tensor]) -> Tensor>;

/// An op's inputs (f64 on the CPU) and whether each is a LoRA weight (kept in f32 under bf16), and the
/// op, which converts what else it uses to its first input's dtype and device.
struct OpCase {
    name: &'static str,
    inputs: Vec<(Tensor, bool)>,
    op: Op,
}

/// The output and the gradient of every input of `case` in `dtype` on `device`.
fn run_op(case: &OpCase, dtype: DType, device: &Device) -> Vec<Tensor> {
    let vars: Vec<Var> = case
        .inputs
        .iter()
        .map(|(t, lora)| {
            let dtype = if *lora { master_dtype(dtype) } else { dtype };
            Var::from_tensor(&t.to_dtype(dtype).unwrap().to_device(device).unwrap()).unwrap()
        })
        .collect();
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = (case.op)(&tensors);
    let store = weighted(&y, 5).backward().unwrap();
    let grads = tensors.iter().map(|t| store.get(t).unwrap_or_else(|| panic!("{}: no gradient", case.name)).clone());
    std::iter::once(y).chain(grads).collect()
}

fn op_cases() -> Vec<OpCase> {
    let (b, l, heads, kv, d) = (2, 5, 4, 2, 8);
    let (cos, sin) = (random(&[l, d / 2], 1), random(&[l, d / 2], 2));
    let bias = llm2vec::model::attention::attention_bias(
        &[5, 3],
        l,
        AttentionMode::Bidirectional,
        None,
        DType::F64,
        &Device::Cpu,
    )
    .unwrap();
    let spec = AttentionSpec { heads, kv_heads: kv, head_dim: d, scale: 0.35, softcap: Some(3.0) };
    let (w_t, lin_bias, scale) = (random(&[16, 9], 3), random(&[9], 4), random(&[16], 5));
    let gated_case = |name, act| OpCase {
        name,
        inputs: vec![(random(&[2, 3, 20], 6).affine(3.0, 0.0).unwrap(), false)],
        op: Box::new(move |t: &[Tensor]| gated(&t[0], act).unwrap()),
    };
    vec![
        OpCase {
            name: "attention",
            inputs: vec![(random(&[b, l, (heads + 2 * kv) * d], 7), false)],
            op: Box::new(move |t: &[Tensor]| {
                let x = &t[0];
                attention(x, Some((&like(&cos, x), &like(&sin, x))), &like(&bias, x), spec, Some((0.2, 9))).unwrap()
            }),
        },
        OpCase {
            name: "lora linear",
            inputs: vec![
                (random(&[2, 3, 16], 8), false),
                (random(&[2, 16], 9), true),
                (random(&[4, 2], 10), true),
                (random(&[2, 16], 11), true),
                (random(&[2, 2], 12), true),
            ],
            // Parts (width, update): inputs `i` and `i + 1` as A and B, dropout, its seed.
            op: Box::new(move |t: &[Tensor]| {
                let spec = [(4, Some((1, 0.25, Some(13)))), (3, None), (2, Some((3, 0.0, None)))];
                let parts = spec.map(|(width, update)| Part {
                    width,
                    update: update.map(|(i, dropout, seed)| {
                        (LowRank { a: t[i].clone(), b: t[i + 1].clone(), scale: 2.0, dropout }, seed)
                    }),
                });
                lora_linear(&t[0], &like(&w_t, &t[0]), Some(&like(&lin_bias, &t[0])), &parts).unwrap()
            }),
        },
        OpCase {
            name: "rms norm",
            inputs: vec![(random(&[2, 3, 16], 14), false)],
            op: Box::new(move |t: &[Tensor]| rms_norm(&t[0], &like(&scale, &t[0]), 1e-6).unwrap()),
        },
        gated_case("gated silu", Activation::Silu),
        gated_case("gated gelu", Activation::GeluTanh),
        OpCase {
            name: "frozen matmul",
            inputs: vec![(random(&[2, 3, 9], 15), false)],
            op: Box::new(move |t: &[Tensor]| frozen_matmul(&t[0], &like(&random(&[9, 6], 16), &t[0])).unwrap()),
        },
    ]
}

#[test]
fn ops_match_the_cpu_f64_reference() {
    let device = device();
    for case in op_cases() {
        let reference = run_op(&case, DType::F64, &Device::Cpu);
        for (dtype, bound) in [(DType::F32, F32_BOUND), (DType::BF16, BF16_BOUND)] {
            let got = on_device(&device, || run_op(&case, dtype, &device));
            for (i, (g, r)) in got.iter().zip(&reference).enumerate() {
                let what = if i == 0 { "output".to_string() } else { format!("gradient of input {}", i - 1) };
                assert_close(g, r, bound, &format!("{} {dtype:?} {what}", case.name));
            }
        }
    }
}

/// The folder of the tiny fixture models: beside this crate, or under the working directory (the
/// repository root) when the executable runs from another copy of the tree.
fn fixtures() -> PathBuf {
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../llm2vec/tests/fixtures/parity");
    if built.is_dir() {
        return built;
    }
    PathBuf::from("crates/llm2vec/tests/fixtures/parity")
}

fn model_dir(family: &str) -> PathBuf {
    fixtures().join(family).join("model")
}

fn tiny(family: &str, dtype: DType, device: &Device) -> Box<dyn Backbone> {
    let loaded = llm2vec::load::load(model_dir(family).to_str().unwrap(), device).unwrap();
    loaded.config.build(&loaded.weights, dtype, device, false).unwrap()
}

/// LoRA on every projection of `backbone` with the values of `like` (or random, non-zero B without it).
fn lora(backbone: &dyn Backbone, values: Option<&LoraModel>) -> LoraModel {
    let settings = LoraSettings { r: 2, lora_alpha: 4.0, lora_dropout: 0.2 };
    let dtype = master_dtype(backbone.dtype());
    let lora = LoraModel::new(&backbone.sites(), &Projection::ALL, &settings, 1, dtype, backbone.device())
        .unwrap()
        .with_attention_dropout(0.1);
    for (i, v) in lora.vars().into_iter().enumerate() {
        let t = match values {
            Some(values) => values.vars()[i].as_tensor().clone(),
            None => (random(v.dims(), 100 + i as u64) * 0.3).unwrap(),
        };
        v.set(&t.to_dtype(dtype).unwrap().to_device(backbone.device()).unwrap()).unwrap();
    }
    lora
}

/// The weighted sum of the final hidden states of two rows (the second padded) and its LoRA gradients.
fn model_loss(backbone: &dyn Backbone, lora: &LoraModel, checkpoint: bool) -> (Tensor, Vec<Tensor>) {
    let batch = Batch::new(&[&[1, 5, 9, 14, 3, 8, 2], &[1, 7, 7, 2]], backbone.device()).unwrap();
    lora.set_rng(Some(Rng::new(21)));
    let out =
        loss_and_grads(backbone, lora, &[batch], AttentionMode::Bidirectional, checkpoint, |h| Ok(weighted(&h[0], 22)))
            .unwrap();
    (Tensor::new(out.loss, &Device::Cpu).unwrap(), out.grads)
}

/// Llama; Gemma 2 (soft-capping, GELU, sandwich norms, sliding windows); Qwen 2 (q/k/v biases): LoRA
/// with dropout and attention dropout, plain and checkpointed backprop.
#[test]
fn model_gradients_match_the_cpu_f64_reference() {
    let device = device();
    for family in ["llama", "gemma2", "qwen2"] {
        let cpu = tiny(family, DType::F64, &Device::Cpu);
        let cpu_lora = lora(cpu.as_ref(), None);
        let (loss, grads) = model_loss(cpu.as_ref(), &cpu_lora, false);
        let largest = grads.iter().map(max_abs).fold(0.0, f64::max);
        for (dtype, bound) in [(DType::F32, F32_BOUND), (DType::BF16, BF16_BOUND)] {
            let backbone = tiny(family, dtype, &device);
            let dev_lora = lora(backbone.as_ref(), Some(&cpu_lora));
            for checkpoint in [false, true] {
                let (got_loss, got) = on_device(&device, || model_loss(backbone.as_ref(), &dev_lora, checkpoint));
                let case = format!("{family} {dtype:?} checkpoint {checkpoint}");
                assert_close(&got_loss, &loss, bound, &format!("{case}: loss"));
                for (i, (g, r)) in got.iter().zip(&grads).enumerate() {
                    assert_eq!(g.dtype(), master_dtype(dtype), "{case}: LoRA gradients in the master dtype");
                    // In bf16 a variable whose gradient is small next to the others' carries their
                    // rounding: its error counts against the largest gradient of the model.
                    let (bound, scale) =
                        if dtype == DType::BF16 { (BF16_MODEL_BOUND, Some(largest)) } else { (bound, None) };
                    assert_close_to(g, r, bound, scale, &format!("{case}: LoRA variable {i}"));
                }
            }
        }
    }
}

/// A config of `stage` on the tiny Llama, with its data, in `dir`.
fn stage_config(dir: &Path, stage: Stage) -> PathBuf {
    let data = match stage {
        Stage::Mntp | Stage::SimCse => {
            let path = dir.join("sentences.txt");
            std::fs::write(&path, SENTENCES.repeat(2).join("\n")).unwrap();
            path
        }
        Stage::Supervised => triplets_folder(dir),
    };
    let config = json!({
        "model_name_or_path": model_dir("llama"),
        "train_file": data,
        "output_dir": dir.join("out"),
        "per_device_train_batch_size": 4,
        "max_seq_length": if stage == Stage::Supervised { 64 } else { 16 },
        "learning_rate": 1e-2,
        "lora_r": 4,
        "lora_dropout": 0.1,
        "simcse_dropout": 0.1,
        "bidirectional": true,
        "mask_token_type": "eos",
        "mlm_probability": 0.3,
        "gradient_checkpointing": stage == Stage::SimCse,
        "max_steps": 4,
        "save_steps": 2,
        "seed": 3,
    });
    let path = dir.join(format!("{}.json", trainer::stage_name(stage)));
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// The loss and LoRA gradients of the first step of `stage` with `opts`.
fn first_step(stage: Stage, path: &Path, opts: &RunOptions) -> (f64, Vec<Tensor>) {
    let config = config::load(path).unwrap().config;
    let model = trainer::trainee(stage, &config, path, opts).unwrap();
    let objective = trainer::objective(stage, &config, path, &model, opts).unwrap();
    let (out, _) = objective.step(&model, 0).unwrap();
    (out.loss, out.grads)
}

#[test]
fn a_step_of_each_stage_matches_the_cpu() {
    let device = device();
    let dir = tempfile::tempdir().unwrap();
    for stage in [Stage::Mntp, Stage::SimCse, Stage::Supervised] {
        let path = stage_config(dir.path(), stage);
        let (loss, grads) = first_step(stage, &path, &RunOptions::default());
        let opts = RunOptions { device: device.clone(), ..Default::default() };
        let (got_loss, got) = on_device(&device, || first_step(stage, &path, &opts));
        let name = trainer::stage_name(stage);
        assert!((got_loss - loss).abs() <= F32_BOUND * loss.abs(), "{name}: loss {got_loss} against {loss}");
        assert_eq!(got.len(), grads.len());
        for (i, (g, r)) in got.iter().zip(&grads).enumerate() {
            assert_close(g, r, F32_BOUND, &format!("{name}: LoRA variable {i}"));
        }
    }
}

/// Two steps on the CPU (fused kernels), then the last two resumed from that checkpoint on the device:
/// the losses of a run that stays on the CPU.
#[test]
fn a_run_saved_on_the_cpu_resumes_on_the_device() {
    let device = device();
    let dir = tempfile::tempdir().unwrap();
    let (path, config, whole) = mntp_on_the_cpu(dir.path());
    let restart = RunOptions { restart: true, ..Default::default() };
    let first = TrainConfig { stop_after_n_steps: 2, ..config.clone() };
    trainer::run(Stage::Mntp, &first, &path, &restart).unwrap();
    let opts = RunOptions { device: device.clone(), ..Default::default() };
    let resumed = on_device(&device, || trainer::run(Stage::Mntp, &config, &path, &opts)).unwrap();
    assert_eq!(resumed.state.step, 4);
    assert_losses_follow(&resumed, &whole, F32_BOUND);
}

/// The MNTP config in `dir` and its whole run on the CPU in f32.
fn mntp_on_the_cpu(dir: &Path) -> (PathBuf, TrainConfig, Outcome) {
    let path = stage_config(dir, Stage::Mntp);
    let config = config::load(&path).unwrap().config;
    let run = trainer::run(Stage::Mntp, &config, &path, &RunOptions::default()).unwrap();
    (path, config, run)
}

/// Each step's loss of `got` is within `bound` (relative) of `want`'s.
fn assert_losses_follow(got: &Outcome, want: &Outcome, bound: f64) {
    assert_eq!(got.state.steps.len(), want.state.steps.len());
    for (a, b) in got.state.steps.iter().zip(&want.state.steps) {
        assert!((a.loss - b.loss).abs() <= bound * b.loss.abs(), "step {}: {} against {}", a.step, a.loss, b.loss);
    }
}

/// A bf16 run on the device follows the f32 run on the CPU (losses within [`BF16_BOUND`]) and keeps its
/// LoRA weights and optimizer moments in f32.
#[test]
fn a_bf16_run_follows_the_f32_run_with_f32_master_weights() {
    let device = device();
    let dir = tempfile::tempdir().unwrap();
    let (path, config, f32_run) = mntp_on_the_cpu(dir.path());
    let opts = RunOptions { device: device.clone(), dtype: DType::BF16, restart: true, ..Default::default() };
    let bf16_run = on_device(&device, || trainer::run(Stage::Mntp, &config, &path, &opts)).unwrap();
    assert_losses_follow(&bf16_run, &f32_run, BF16_BOUND);
    let moments =
        candle_core::safetensors::load(dir.path().join("out/checkpoint-4/optimizer.safetensors"), &Device::Cpu)
            .unwrap();
    assert!(moments.iter().filter(|(k, _)| k.as_str() != "steps").all(|(_, t)| t.dtype() == DType::F32));
    let adapter = llm2vec_train::lora::load_adapter(&dir.path().join("out"), &Device::Cpu).unwrap();
    assert!(adapter.weights.values().all(|(a, b)| a.dtype() == DType::F32 && b.dtype() == DType::F32));
}
