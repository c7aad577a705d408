//! SmolLM2-135M-Instruct (Q4_1 GGUF) against llama.cpp's outputs in ../shared/reference:
//! token ids, causal mean-pooled embeddings and next-token logits. llama.cpp multiplies Q4_1 weights
//! with activations quantised to 8 bits and keeps an f16 KV cache, so values agree to about 1-2%
//! (the tolerances below), token ids and the top next token exactly. The exact f32 check is the
//! parity against the Python reference on the dequantised weights.

mod common;

use candle_core::Tensor;
use llm2vec::{AttentionMode, Encoder, Input, Options, Pooling};
use serde_json::Value;

fn reference() -> Value {
    let path = common::shared().join("reference/smollm2-135m-instruct-q4_1/llamacpp_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn causal_mean(model: &str) -> Encoder {
    let options = Options {
        attention: AttentionMode::Causal,
        pooling: Some(Pooling::Mean),
        ..Options::default()
    };
    Encoder::from_pretrained(model, options).unwrap()
}

#[test]
fn token_ids_and_embeddings_match_llamacpp() {
    let Some(model) = common::smollm2() else { return };
    let enc = causal_mean(&model);
    let reference = reference();
    let sentences = reference["sentences"].as_array().unwrap();
    let inputs: Vec<Input> = sentences.iter().map(|s| Input::text(s["text"].as_str().unwrap())).collect();
    let emb = enc.encode(&inputs).unwrap();
    for (i, s) in sentences.iter().enumerate() {
        let expected: Vec<u32> = serde_json::from_value(s["ids_no_bos"].clone()).unwrap();
        let t = enc.tokenize(&inputs[i]).unwrap();
        assert_eq!(t.ids, expected, "token ids of sentence {i}");
        assert_eq!(t.text_range, 0..expected.len(), "every token of sentence {i} is pooled, as llama.cpp does");
        let row = emb.row(i);
        let l2 = row.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let want_l2 = s["embedding_l2"].as_f64().unwrap();
        assert!((l2 / want_l2 - 1.0).abs() < 0.02, "sentence {i}: L2 {l2} vs llama.cpp {want_l2}");
        let first8: Vec<f64> = serde_json::from_value(s["mean_pooled_embedding_first8"].clone()).unwrap();
        for (k, want) in first8.iter().enumerate() {
            assert!((row[k] as f64 - want).abs() < 0.15, "sentence {i} dim {k}: {} vs {want}", row[k]);
        }
    }
    let matrix = reference["cosine_matrix_mean_pooled"].as_array().unwrap();
    for i in 0..inputs.len() {
        for j in 0..inputs.len() {
            let want = matrix[i][j].as_f64().unwrap();
            let got = common::cosine(emb.row(i), emb.row(j));
            assert!((got - want).abs() < 0.015, "cosine[{i}][{j}] = {got:.4}, llama.cpp {want:.4}");
        }
    }
}

#[test]
fn next_token_logits_match_llamacpp() {
    let Some(model) = common::smollm2() else { return };
    let enc = causal_mean(&model);
    for s in reference()["sentences"].as_array().unwrap() {
        let ids: Vec<u32> = serde_json::from_value(s["ids_no_bos"].clone()).unwrap();
        let n = ids.len();
        let input = Tensor::from_vec(ids, (1, n), &llm2vec::Device::Cpu).unwrap();
        let hidden = enc.backbone().forward(&input, &[n], AttentionMode::Causal).unwrap();
        let logits = enc.backbone().logits(&hidden.narrow(1, n - 1, 1).unwrap()).unwrap();
        let logits: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
        let top = logits.iter().enumerate().fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
        let want = s["next_token_top5"].as_array().unwrap();
        assert_eq!(top.0 as u64, want[0][0].as_u64().unwrap(), "top-1 next token after {:?}", s["text"]);
        for entry in want {
            let (id, value) = (entry[0].as_u64().unwrap() as usize, entry[2].as_f64().unwrap());
            assert!((logits[id] as f64 - value).abs() < 0.35, "logit of token {id}: {} vs llama.cpp {value}", logits[id]);
        }
    }
}
