//! The STS-dev score of a model in training, taken from its live LoRA in memory, equals the score of the
//! same adapter saved and loaded through the inference path (`Encoder::from_pretrained` with the adapter).

use candle_core::{Device, Tensor};
use llm2vec::model::{AttentionMode, Projection};
use llm2vec::{Encoder, Input, Options, Pooling};
use llm2vec_eval::metrics::{cosine, spearman};
use llm2vec_train::lora::{LoraModel, LoraSettings};
use llm2vec_train::rng::Rng;
use llm2vec_train::stage::{StsDev, Trainee};
use std::path::{Path, PathBuf};

fn model() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../llm2vec/tests/fixtures/parity/llama/model");
    path.to_string_lossy().into_owned()
}

const SENTENCES: &[&str] = &[
    "a man is playing a guitar .",
    "a woman is slicing an onion .",
    "the kids are playing outdoors near a man .",
    "a dog runs across the green field .",
    "two men are riding horses on the beach .",
    "a cat is sleeping on the warm sofa .",
    "the woman is cutting a tomato .",
    "a boy is jumping into the pool .",
];

/// Every pair of sentences, with gold scores in a fixed scrambled order.
fn pairs() -> Vec<(&'static str, &'static str, f64)> {
    let mut out = Vec::new();
    for (i, a) in SENTENCES.iter().enumerate() {
        for b in &SENTENCES[i + 1..] {
            out.push((*a, *b, ((out.len() * 11) % 29) as f64 / 5.0));
        }
    }
    out
}

fn options(adapters: Vec<PathBuf>) -> Options {
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
    let encoder = Encoder::from_pretrained(&model(), options(adapters)).unwrap();
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
    let path = dir.join("dev.jsonl");
    let lines: Vec<String> = pairs()
        .iter()
        .map(|(a, b, s)| serde_json::json!({ "sentence1": a, "sentence2": b, "score": s }).to_string())
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

#[test]
fn the_live_score_equals_the_saved_adapters() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = Encoder::from_pretrained(&model(), options(Vec::new())).unwrap();
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
