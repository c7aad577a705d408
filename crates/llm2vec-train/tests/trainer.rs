//! The training loop end to end on a tiny Llama: losses go down for the three stages, the outputs
//! (PEFT adapter, llm2vec_config.json, metrics.jsonl, loss.svg, checkpoints) are written and load into
//! the encoder, resume is exact, Ctrl-C saves, non-finite losses stop the run, and bad input is named.
//! A run resumes only its own checkpoints: other settings or data are refused, `--restart` sets the old run
//! aside, a corrupt checkpoint falls back to the one before, and stale temporary files are removed.
//! The STS-dev score of the live LoRA in memory equals that of the same adapter saved and loaded.

mod common;

use candle_core::{Device, Tensor};
use common::{triplets_folder, SENTENCES};
use llm2vec::model::{AttentionMode, Projection};
use llm2vec::{Encoder, Input, Options, Pooling};
use llm2vec_eval::metrics::{cosine, spearman};
use llm2vec_train::config::{self, Stage};
use llm2vec_train::lora::{LoraModel, LoraSettings};
use llm2vec_train::rng::Rng;
use llm2vec_train::stage::{StsDev, Trainee};
use llm2vec_train::trainer::{run, Outcome, RunOptions};
use llm2vec_train::TrainError;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

fn model() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../llm2vec/tests/fixtures/parity/llama/model");
    path.to_string_lossy().into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A config for `stage` on the tiny model with `extra` fields on top.
fn config(dir: &Path, stage: Stage, data: &Path, extra: Value) -> PathBuf {
    let mut c = json!({
        "model_name_or_path": model(),
        "train_file": data,
        "output_dir": dir.join("out"),
        "per_device_train_batch_size": 4,
        "max_seq_length": 16,
        "learning_rate": 2e-2,
        "lora_r": 4,
        "lora_dropout": 0.0,
        "bidirectional": true,
        "max_steps": 30,
        "stop_after_n_steps": 30,
        "save_steps": 10,
        "logging_steps": 1,
        "seed": 7,
    });
    if stage == Stage::Mntp {
        c["mask_token_type"] = json!("eos");
        c["mlm_probability"] = json!(0.3);
        c["validation_split_percentage"] = json!(10);
        c["eval_steps"] = json!(10);
    }
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    write(dir, "config.json", &serde_json::to_string(&c).unwrap())
}

fn train(stage: Stage, path: &Path, opts: &RunOptions) -> Result<Outcome, TrainError> {
    let loaded = config::load(path)?;
    run(stage, &loaded.config, path, opts)
}

fn mntp_data(dir: &Path) -> PathBuf {
    let lines: Vec<String> = (0..60).map(|i| SENTENCES[i % SENTENCES.len()].to_string()).collect();
    write(dir, "mntp.txt", &lines.join("\n"))
}

fn losses(outcome: &Outcome) -> Vec<f64> {
    outcome.state.steps.iter().map(|s| s.loss).collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn mntp_loss_goes_down_and_the_adapter_loads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Stage::Mntp, &mntp_data(dir.path()), json!({}));
    let outcome = train(Stage::Mntp, &cfg, &RunOptions::default()).unwrap();
    let l = losses(&outcome);
    assert_eq!(l.len(), 30);
    assert!(mean(&l[25..]) < 0.9 * mean(&l[..5]), "{l:?}");
    let acc: Vec<f64> = outcome.state.evals.iter().map(|e| e.value).collect();
    assert_eq!(outcome.state.evals.iter().map(|e| e.step).collect::<Vec<_>>(), [0, 10, 20, 30]);
    assert!(acc[3] > acc[0], "held-back accuracy rises: {acc:?}");
    let out = dir.path().join("out");
    for f in ["adapter_config.json", "adapter_model.safetensors", "llm2vec_config.json", "metrics.jsonl", "loss.svg"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    for step in [10, 20, 30] {
        assert!(out.join(format!("checkpoint-{step}/adapter_model.safetensors")).is_file());
    }
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 30 + 4);
    let embed = |adapters: Vec<PathBuf>| {
        let enc = Encoder::from_pretrained(&model(), Options { adapters, ..Options::default() }).unwrap();
        enc.encode(&[Input::text("a man is playing a guitar .")]).unwrap().data
    };
    let (base, tuned) = (embed(vec![]), embed(vec![out]));
    assert!(base.iter().zip(&tuned).any(|(a, b)| (a - b).abs() > 1e-4), "the adapter changes the model");
}

#[test]
fn resume_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let data = mntp_data(dir.path());
    let straight = dir.path().join("straight");
    std::fs::create_dir_all(&straight).unwrap();
    let cfg =
        config(&straight, Stage::Mntp, &data, json!({"stop_after_n_steps": 6, "save_steps": 3, "lora_dropout": 0.1}));
    let a = train(Stage::Mntp, &cfg, &RunOptions::default()).unwrap();
    let split = dir.path().join("split");
    std::fs::create_dir_all(&split).unwrap();
    let first =
        config(&split, Stage::Mntp, &data, json!({"stop_after_n_steps": 3, "save_steps": 3, "lora_dropout": 0.1}));
    train(Stage::Mntp, &first, &RunOptions::default()).unwrap();
    let second =
        config(&split, Stage::Mntp, &data, json!({"stop_after_n_steps": 6, "save_steps": 3, "lora_dropout": 0.1}));
    let b = train(Stage::Mntp, &second, &RunOptions::default()).unwrap();
    assert_eq!(losses(&a), losses(&b));
    let weights = |d: &Path| std::fs::read(d.join("out/adapter_model.safetensors")).unwrap();
    assert_eq!(weights(&straight), weights(&split));
}

#[test]
fn rerunning_a_finished_run_leaves_its_weights_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        config(dir.path(), Stage::Mntp, &mntp_data(dir.path()), json!({"stop_after_n_steps": 4, "save_steps": 2}));
    train(Stage::Mntp, &cfg, &RunOptions::default()).unwrap();
    let out = dir.path().join("out");
    let files = [
        "adapter_model.safetensors",
        "adapter_config.json",
        "llm2vec_config.json",
        "checkpoint-4/adapter_model.safetensors",
    ];
    let times = || files.map(|f| std::fs::metadata(out.join(f)).unwrap().modified().unwrap());
    let before = times();
    let again = train(Stage::Mntp, &cfg, &RunOptions::default()).unwrap();
    assert_eq!(again.state.step, 4);
    assert_eq!(times(), before, "an embedding cache keyed on these files' times stays valid");
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_the_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Stage::Mntp, &mntp_data(dir.path()), json!({"stop_after_n_steps": 4}));
    let opts = RunOptions::default();
    opts.stop.store(true, Ordering::SeqCst);
    match train(Stage::Mntp, &cfg, &opts) {
        Err(TrainError::Interrupted { step: 1, checkpoint, restarted: false }) => {
            assert!(checkpoint.join("trainer_state.json").is_file());
        }
        other => panic!("expected an interruption after step 1, got {other:?}"),
    }
    let outcome = train(Stage::Mntp, &cfg, &RunOptions::default()).unwrap();
    assert_eq!(outcome.state.step, 4);
    assert_eq!(outcome.state.steps.len(), 4);
}

#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Stage::Mntp, &mntp_data(dir.path()), json!({"learning_rate": 1e30, "save_steps": 1}));
    let err = train(Stage::Mntp, &cfg, &RunOptions::default()).unwrap_err();
    let TrainError::NonFiniteLoss { step, last_good, .. } = &err else { panic!("{err}") };
    let last_good = last_good.as_ref().expect("a checkpoint");
    assert!(last_good.ends_with(format!("checkpoint-{}", step - 1)), "{err}");
    assert!(err.to_string().contains(&format!("at step {step}")), "{err}");
}

#[test]
fn simcse_loss_goes_down() {
    let dir = tempfile::tempdir().unwrap();
    let data = write(dir.path(), "wiki.txt", &SENTENCES.join("\n"));
    let cfg = config(
        dir.path(),
        Stage::SimCse,
        &data,
        json!({"simcse_dropout": 0.1, "lora_dropout": 0.05, "loss_scale": 20}),
    );
    let sts = write(
        dir.path(),
        "dev.jsonl",
        "{\"sentence1\":\"a man is playing a guitar .\",\"sentence2\":\"a man plays a guitar .\",\"score\":4.8}\n\
         {\"sentence1\":\"a cat is sleeping .\",\"sentence2\":\"two men ride horses .\",\"score\":0.2}\n\
         {\"sentence1\":\"a woman is slicing an onion .\",\"sentence2\":\"the woman is cutting an onion .\",\"score\":4.2}\n",
    );
    let outcome = train(Stage::SimCse, &cfg, &RunOptions { sts_dev: Some(sts), ..Default::default() }).unwrap();
    let l = losses(&outcome);
    assert!(mean(&l[25..]) < mean(&l[..5]), "{l:?}");
    assert_eq!(outcome.state.evals.first().map(|e| e.metric.as_str()), Some("sts_dev_spearman"));
}

#[test]
fn supervised_loss_goes_down_with_hard_negatives_and_instructions() {
    let dir = tempfile::tempdir().unwrap();
    let folder = triplets_folder(dir.path());
    let cfg = config(dir.path(), Stage::Supervised, &folder, json!({"loss_scale": 50, "max_seq_length": 64}));
    let outcome = train(Stage::Supervised, &cfg, &RunOptions::default()).unwrap();
    let l = losses(&outcome);
    assert!(mean(&l[25..]) < 0.5 * mean(&l[..5]), "{l:?}");
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = |stage, data: &Path, extra| {
        train(stage, &config(dir.path(), stage, data, extra), &RunOptions::default()).unwrap_err().to_string()
    };
    let missing = dir.path().join("nope.txt");
    assert!(err(Stage::Mntp, &missing, json!({})).contains("nope.txt"));
    let empty = write(dir.path(), "empty.txt", "\n\n");
    assert!(err(Stage::Mntp, &empty, json!({})).contains("empty.txt"));
    let bad = write(dir.path(), "bad.jsonl", "{\"query\":\"q\",\"positive\":\"p\"}\n{\"query\":\"q\"}\n");
    let e = err(Stage::Supervised, &bad, json!({}));
    assert!(e.contains("bad.jsonl:2") && e.contains("positive"), "{e}");
    let e = err(Stage::Mntp, &mntp_data(dir.path()), json!({"model_name_or_path": dir.path().join("no-model")}));
    assert!(e.contains("no-model"), "{e}");
}

#[test]
fn a_failed_save_leaves_the_previous_checkpoint_intact() {
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        config(dir.path(), Stage::Mntp, &mntp_data(dir.path()), json!({"stop_after_n_steps": 2, "save_steps": 1}));
    train(Stage::Mntp, &cfg, &RunOptions::default()).unwrap();
    let out = dir.path().join("out");
    let before = std::fs::read(out.join("checkpoint-2/adapter_model.safetensors")).unwrap();
    // The next save cannot write its files: its staging folder's place is taken by a file we cannot remove
    // as a folder (standing in for a full disk).
    std::fs::write(out.join(".checkpoint-3.partial"), "in the way").unwrap();
    let cfg =
        config(dir.path(), Stage::Mntp, &mntp_data(dir.path()), json!({"stop_after_n_steps": 3, "save_steps": 1}));
    assert!(train(Stage::Mntp, &cfg, &RunOptions::default()).is_err());
    assert_eq!(std::fs::read(out.join("checkpoint-2/adapter_model.safetensors")).unwrap(), before);
    assert_eq!(llm2vec_train::checkpoint::latest(&out), Some(out.join("checkpoint-2")));
}

#[test]
fn a_merged_model_encodes_like_base_plus_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Stage::Mntp, &mntp_data(dir.path()), json!({"stop_after_n_steps": 5}));
    train(Stage::Mntp, &cfg, &RunOptions::default()).unwrap();
    let (adapter, merged) = (dir.path().join("out"), dir.path().join("merged"));
    llm2vec::load::export::save_merged(&model(), &[adapter.as_path()], &merged).unwrap();
    let encode = |model: &str, adapters: Vec<PathBuf>| {
        let enc = Encoder::from_pretrained(model, Options { adapters, ..Options::default() }).unwrap();
        enc.encode(&[Input::new("Retrieve the sentence:", "a dog runs across the green field .")]).unwrap().data
    };
    let a = encode(&model(), vec![adapter]);
    let b = encode(merged.to_str().unwrap(), vec![]);
    let diff = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff < 1e-5, "{diff}");
}

/// `mask_token_type: "mask"` on a tokenizer without `<mask>`: the token is added (one more embedding row)
/// and MNTP trains with it.
#[test]
fn mntp_with_an_added_mask_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Stage::Mntp, &mntp_data(dir.path()), json!({"mask_token_type": "mask"}));
    let outcome = train(Stage::Mntp, &cfg, &RunOptions::default()).unwrap();
    let l = losses(&outcome);
    assert!(mean(&l[25..]) < 0.9 * mean(&l[..5]), "{l:?}");
    let encoder =
        Encoder::from_pretrained(&model(), Options { adapters: vec![dir.path().join("out")], ..Options::default() })
            .unwrap();
    assert!(encoder.tokenizer().inner().token_to_id("<mask>").is_none(), "the base model is unchanged");
    assert!(encoder.encode(&[Input::text("a dog runs")]).unwrap().data.iter().all(|v| v.is_finite()));
}

#[test]
fn resuming_with_other_settings_or_data_is_refused_naming_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let data = mntp_data(dir.path());
    let base = json!({"stop_after_n_steps": 2, "save_steps": 2});
    train(Stage::Mntp, &config(dir.path(), Stage::Mntp, &data, base.clone()), &RunOptions::default()).unwrap();
    let refusal = |extra: Value, data: &Path| {
        let mut fields = base.clone();
        fields.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let err =
            train(Stage::Mntp, &config(dir.path(), Stage::Mntp, data, fields), &RunOptions::default()).unwrap_err();
        assert!(matches!(err, TrainError::OtherRun { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("checkpoint-2") && msg.contains("--restart"), "{msg}");
        msg
    };
    let msg = refusal(json!({"learning_rate": 0.01, "seed": 8}), &data);
    assert!(msg.contains("`learning_rate` was 0.02, is now 0.01") && msg.contains("`seed` was 7, is now 8"), "{msg}");
    assert!(refusal(json!({"max_seq_length": 12}), &data).contains("`max_seq_length` was 16, is now 12"));
    let copy = write(dir.path(), "copy.txt", &std::fs::read_to_string(&data).unwrap());
    assert!(refusal(json!({}), &copy).contains("`train_file`"));
    std::fs::write(&data, std::fs::read_to_string(&data).unwrap() + "\none more line .").unwrap();
    assert!(refusal(json!({}), &data).contains("the training data's contents differ"));
    std::fs::write(&data, std::fs::read_to_string(&copy).unwrap()).unwrap();
    // The step budget and logging may change: the run goes on.
    let more = json!({"stop_after_n_steps": 3, "max_steps": 40, "logging_steps": 5, "save_steps": 1, "eval_steps": 3});
    let outcome = train(Stage::Mntp, &config(dir.path(), Stage::Mntp, &data, more), &RunOptions::default()).unwrap();
    assert_eq!(outcome.state.steps.len(), 3);
}

#[test]
fn a_checkpoint_without_a_fingerprint_is_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let data = mntp_data(dir.path());
    train(
        Stage::Mntp,
        &config(dir.path(), Stage::Mntp, &data, json!({"stop_after_n_steps": 2, "save_steps": 2})),
        &RunOptions::default(),
    )
    .unwrap();
    let state_file = dir.path().join("out/checkpoint-2/trainer_state.json");
    let mut state: Value = serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    state.as_object_mut().unwrap().remove("fingerprint").expect("a fingerprint is saved");
    std::fs::write(&state_file, state.to_string()).unwrap();
    let outcome = train(
        Stage::Mntp,
        &config(dir.path(), Stage::Mntp, &data, json!({"stop_after_n_steps": 3})),
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(outcome.state.steps.len(), 3);
    assert!(outcome.state.fingerprint.is_some());
}

#[test]
fn restart_sets_the_old_run_aside_even_when_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        config(dir.path(), Stage::Mntp, &mntp_data(dir.path()), json!({"stop_after_n_steps": 4, "save_steps": 2}));
    let first = train(Stage::Mntp, &cfg, &RunOptions::default()).unwrap();
    let out = dir.path().join("out");
    let restart = RunOptions { restart: true, ..Default::default() };
    restart.stop.store(true, Ordering::SeqCst);
    let err = train(Stage::Mntp, &cfg, &restart).unwrap_err();
    assert!(matches!(err, TrainError::Interrupted { step: 1, restarted: true, .. }), "{err}");
    assert!(err.to_string().contains("run the same command again without --restart"), "{err}");
    assert_eq!(
        llm2vec_train::checkpoint::latest(&out),
        Some(out.join("checkpoint-1")),
        "the old run's checkpoint-4 is out of reach"
    );
    let previous = out.join("previous-run");
    for f in ["checkpoint-2", "checkpoint-4", "adapter_model.safetensors", "metrics.jsonl"] {
        assert!(previous.join(f).exists(), "{f}");
    }
    assert!(
        !out.join("adapter_model.safetensors").exists(),
        "no final adapter of the old run is left beside the new checkpoints"
    );
    let second = train(Stage::Mntp, &cfg, &RunOptions::default()).unwrap();
    assert_eq!(second.state.steps.len(), 4);
    assert_eq!(losses(&second), losses(&first), "the same seed replays the same run");
    // A restart cut short right after writing its mark (the older set-aside run already removed) is
    // completed by the next run, whatever its options.
    std::fs::remove_dir_all(&previous).unwrap();
    std::fs::write(out.join(".restart-pending"), "").unwrap();
    let third = train(Stage::Mntp, &cfg, &RunOptions::default()).unwrap();
    assert_eq!(losses(&third), losses(&first));
    assert!(previous.join("checkpoint-1").exists() && previous.join("checkpoint-4").exists());
    assert!(!out.join("checkpoint-1").exists() && !out.join(".restart-pending").exists());
}

#[test]
fn a_corrupt_checkpoint_falls_back_to_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let data = mntp_data(dir.path());
    let cfg =
        |steps: usize| config(dir.path(), Stage::Mntp, &data, json!({"stop_after_n_steps": steps, "save_steps": 2}));
    let straight = train(Stage::Mntp, &cfg(6), &RunOptions::default()).unwrap();
    let out = dir.path().join("out");
    for step in [4, 6] {
        std::fs::remove_dir_all(out.join(format!("checkpoint-{step}"))).unwrap();
    }
    train(Stage::Mntp, &cfg(4), &RunOptions::default()).unwrap();
    std::fs::write(out.join("checkpoint-4/adapter_model.safetensors"), b"\x08\0\0\0\0\0\0\0{}").unwrap();
    let resumed = train(Stage::Mntp, &cfg(6), &RunOptions::default()).unwrap();
    assert_eq!(losses(&resumed), losses(&straight), "resumed from checkpoint-2 and replayed steps 3 to 6");
    std::fs::write(out.join("checkpoint-6/trainer_state.json"), "{").unwrap();
    std::fs::write(out.join("checkpoint-4/optimizer.safetensors"), "").unwrap();
    std::fs::write(out.join("checkpoint-2/adapter_model.safetensors"), "").unwrap();
    let err = train(Stage::Mntp, &cfg(8), &RunOptions::default()).unwrap_err();
    assert!(matches!(err, TrainError::NoUsableCheckpoint { .. }), "{err}");
    let msg = err.to_string();
    for file in [
        "checkpoint-6/trainer_state.json",
        "checkpoint-4/optimizer.safetensors",
        "checkpoint-2/adapter_model.safetensors",
        "--restart",
    ] {
        assert!(msg.contains(file), "{file}: {msg}");
    }
}

#[test]
fn stale_temporary_files_are_removed_when_a_run_starts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        config(dir.path(), Stage::Mntp, &mntp_data(dir.path()), json!({"stop_after_n_steps": 2, "save_steps": 2}));
    train(Stage::Mntp, &cfg, &RunOptions::default()).unwrap();
    let out = dir.path().join("out");
    let stale = [
        ".adapter_model.safetensors.0123456789abcdef.tmp",
        ".metrics.jsonl.tmp4242",
        "checkpoint-2/.trainer_state.json.tmp77",
    ];
    let kept = ["notes.tmp", ".keep", "checkpoint-2/.notes"];
    for f in stale.iter().chain(&kept) {
        std::fs::write(out.join(f), "x").unwrap();
    }
    train(Stage::Mntp, &cfg, &RunOptions::default()).unwrap();
    for f in stale {
        assert!(!out.join(f).exists(), "{f}");
    }
    for f in kept {
        assert!(out.join(f).exists(), "{f}");
    }
}

/// STS-dev data: every pair of sentences, with gold scores in a fixed scrambled order.
fn pairs() -> Vec<(&'static str, &'static str, f64)> {
    let mut out = Vec::new();
    for (i, a) in SENTENCES.iter().enumerate() {
        for b in &SENTENCES[i + 1..] {
            out.push((*a, *b, ((out.len() * 11) % 29) as f64 / 5.0));
        }
    }
    out
}

fn dev_options(adapters: Vec<PathBuf>) -> Options {
    Options {
        adapters,
        pooling: Some(Pooling::Mean),
        max_length: Some(32),
        attention: AttentionMode::Bidirectional,
        ..Options::default()
    }
}

/// The score through the inference path: the encoder's own embeddings, cosine against the gold scores.
fn inference_score(adapters: Vec<PathBuf>) -> f64 {
    let encoder = Encoder::from_pretrained(&model(), dev_options(adapters)).unwrap();
    let inputs: Vec<Input> = pairs().iter().flat_map(|(a, b, _)| [Input::text(*a), Input::text(*b)]).collect();
    let e = encoder.encode(&inputs).unwrap();
    let cosines: Vec<f64> = (0..inputs.len() / 2).map(|i| cosine(e.row(2 * i), e.row(2 * i + 1))).collect();
    spearman(&cosines, &pairs().iter().map(|p| p.2).collect::<Vec<_>>())
}

/// A LoRA on every projection with a non-zero B (a fresh one leaves the model as it is) and dropout on.
fn trained_lora(encoder: &Encoder) -> LoraModel {
    let backbone = encoder.backbone();
    let settings = LoraSettings { r: 4, lora_alpha: 8.0, lora_dropout: 0.2 };
    let lora = LoraModel::new(&backbone.sites(), &Projection::ALL, &settings, 3, backbone.dtype(), backbone.device())
        .unwrap()
        .with_attention_dropout(0.2);
    for (k, var) in lora.vars().into_iter().enumerate().filter(|(k, _)| k % 2 == 1) {
        let values: Vec<f32> = (0..var.elem_count()).map(|i| ((i * 7 + k) % 13) as f32 * 0.5 - 3.0).collect();
        var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu).unwrap()).unwrap();
    }
    lora
}

fn write_dev(dir: &Path) -> PathBuf {
    let lines: Vec<String> =
        pairs().iter().map(|(a, b, s)| json!({ "sentence1": a, "sentence2": b, "score": s }).to_string()).collect();
    write(dir, "dev.jsonl", &lines.join("\n"))
}

#[test]
fn the_live_score_equals_the_saved_adapters() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = Encoder::from_pretrained(&model(), dev_options(Vec::new())).unwrap();
    let lora = trained_lora(&encoder);
    let dev = StsDev::load(&write_dev(dir.path()), &encoder).unwrap();
    let model = Trainee { encoder, lora, mode: AttentionMode::Bidirectional, checkpoint: false, seed: 1 };
    // As in the middle of training: a dropout stream is set, and evaluation must not use it.
    model.lora.set_rng(Some(Rng::new(5)));
    let live = dev.spearman(&model).unwrap();
    let adapter = dir.path().join("adapter");
    model.lora.save(&adapter, None).unwrap();
    let saved = inference_score(vec![adapter]);
    assert!((live - saved).abs() < 1e-4, "live {live} vs saved adapter {saved}");
    let base = inference_score(Vec::new());
    assert!((live - base).abs() > 1e-2, "the adapter should change the score (base {base}, adapted {live})");
}
