//! 8-bit linear layers (`Options::quantize`): embeddings close to f32's on each family, and a clear
//! error where they cannot run. (The kernels' own tests, on every instruction-set path, are in
//! `model/cpu/q8.rs`; `scripts/test.sh` reruns this file with the narrower paths forced.)

mod common;

use std::path::Path;

use candle_core::{Device, Tensor};
use llm2vec::model::Pass;
use llm2vec::{DType, Encoder, Input, Options};

fn sentences(n: usize) -> Vec<Input> {
    let path = common::shared().join("data/STSBenchmark/test.jsonl");
    let text = std::fs::read_to_string(path).unwrap();
    let lines = text.lines().take(n);
    lines
        .map(|line| {
            Input::text(serde_json::from_str::<serde_json::Value>(line).unwrap()["sentence1"].as_str().unwrap())
        })
        .collect()
}

/// Cosines between each input's f32 and 8-bit embeddings, sorted.
fn cosines(model: &str, inputs: &[Input]) -> Vec<f64> {
    let run = |quantize| {
        let options = Options { quantize, ..Options::default() };
        Encoder::from_pretrained(model, options).unwrap().encode(inputs).unwrap()
    };
    let (full, eight) = (run(false), run(true));
    let mut cosines: Vec<f64> = (0..inputs.len()).map(|i| common::cosine(full.row(i), eight.row(i))).collect();
    cosines.sort_by(f64::total_cmp);
    cosines
}

/// Every decoder family's tiny model, Qwen2's biased q, k and v projections among them.
#[test]
fn tiny_decoders_keep_their_embeddings() {
    for family in ["llama", "mistral", "qwen2", "gemma", "gemma2"] {
        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/parity/{family}/model"));
        let cosines = cosines(model.to_str().unwrap(), &sentences(16));
        assert!(cosines[0] > 0.999, "{family}: lowest cosine {}", cosines[0]);
    }
}

/// SmolLM2 (untrained for embeddings, so sensitive: its outlier channels are 20 times a row's RMS, and
/// a few inputs move far under any rounding) keeps the median input's embedding closely, all but three
/// of 64 nearly, and every input's direction.
#[test]
fn smollm2_keeps_its_embeddings() {
    let Some(model) = common::smollm2() else { return };
    let cosines = cosines(&model, &sentences(64));
    let (lowest, fourth, median) = (cosines[0], cosines[3], cosines[cosines.len() / 2]);
    assert!(median > 0.997 && fourth > 0.9 && lowest > 0.75, "cosines: median {median}, 4th {fourth}, lowest {lowest}");
}

#[test]
fn bert_keeps_its_embeddings() {
    let model = llm2vec::load::models_dir().join("all-MiniLM-L6-v2");
    if !common::available(&model, "run scripts/fetch-minilm.sh") {
        return;
    }
    let cosines = cosines(model.to_str().unwrap(), &sentences(64));
    assert!(cosines[0] > 0.995, "lowest cosine {}", cosines[0]);
}

#[test]
fn eight_bit_products_need_f32_on_the_cpu() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/llama/model");
    let options = Options { quantize: true, dtype: DType::BF16, ..Options::default() };
    let err = Encoder::from_pretrained(model.to_str().unwrap(), options)
        .err()
        .expect("bf16 with 8-bit products loaded")
        .to_string();
    assert!(err.contains("quantize") && err.contains("f32"), "{err}");
}

/// 8-bit models are for embeddings: their LM head is not loaded, and asking for logits says so.
#[test]
fn an_8_bit_model_has_no_lm_head() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/llama/model");
    let encoder = Encoder::from_pretrained(model.to_str().unwrap(), Options { quantize: true, ..Options::default() });
    let backbone = encoder.as_ref().unwrap().backbone();
    let hidden = Tensor::zeros((1, 1, backbone.hidden_size()), DType::F32, &Device::Cpu).unwrap();
    let err = backbone.logits(&hidden, Pass::Infer).unwrap_err().to_string();
    assert!(err.contains("quantize") && err.contains("no LM head"), "{err}");
}
