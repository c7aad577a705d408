//! SmolLM2-135M-Instruct (Q4_1 GGUF) against llama.cpp's outputs in ../shared/reference:
//! token ids, causal mean-pooled embeddings and next-token logits. llama.cpp multiplies Q4_1 weights
//! with activations quantised to 8 bits and keeps an f16 KV cache, so values agree to about 1-2%
//! (the tolerances below), token ids and the top next token exactly. The exact f32 check is the
//! parity against the Python reference on the dequantised weights.

mod common;

use candle_core::Tensor;
use llm2vec::model::Pass;
use llm2vec::{AttentionMode, Encoder, Input, Options, Pooling};
use serde_json::Value;

fn reference() -> Value {
    let path = common::shared().join("reference/smollm2-135m-instruct-q4_1/llamacpp_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn causal_mean(model: &str) -> Encoder {
    let options = Options { attention: AttentionMode::Causal, pooling: Some(Pooling::Mean), ..Options::default() };
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
    assert_eq!(matrix.len(), inputs.len());
    for (i, wants) in matrix.iter().enumerate() {
        for (j, want) in wants.as_array().unwrap().iter().enumerate() {
            let want = want.as_f64().unwrap();
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
        let logits = enc.backbone().logits(&hidden.narrow(1, n - 1, 1).unwrap(), Pass::Infer).unwrap();
        let logits: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
        let top = logits.iter().enumerate().fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
        let want = s["next_token_top5"].as_array().unwrap();
        assert_eq!(top.0 as u64, want[0][0].as_u64().unwrap(), "top-1 next token after {:?}", s["text"]);
        for entry in want {
            let (id, value) = (entry[0].as_u64().unwrap() as usize, entry[2].as_f64().unwrap());
            assert!(
                (logits[id] as f64 - value).abs() < 0.35,
                "logit of token {id}: {} vs llama.cpp {value}",
                logits[id]
            );
        }
    }
}

/// Greedy next token after "The capital of France is" (llama.cpp continues with " Paris.").
fn next_token(model: &str, prompt: &str) -> String {
    let enc = causal_mean(model);
    let t = enc.tokenize(&Input::text(prompt)).unwrap();
    let n = t.ids.len();
    let input = Tensor::from_vec(t.ids, (1, n), &llm2vec::Device::Cpu).unwrap();
    let hidden = enc.backbone().forward(&input, &[n], AttentionMode::Causal).unwrap();
    let logits: Vec<f32> = enc
        .backbone()
        .logits(&hidden.narrow(1, n - 1, 1).unwrap(), Pass::Infer)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let best = logits.iter().enumerate().fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0;
    enc.tokenizer().decode(&[best as u32]).unwrap()
}

#[test]
fn smollm2_knows_the_capital_of_france() {
    let Some(model) = common::smollm2() else { return };
    assert_eq!(next_token(&model, "The capital of France is"), " Paris");
}

/// Perplexity of a WikiText-2 passage (lines 10,993-11,000 of the training mix, 900+ tokens, longer than
/// Gemma 3's 512-token sliding window). A wrong norm, rope or mask sends it far above 100.
fn wikitext_perplexity(model: &str) -> f64 {
    let path = common::shared().join("data/train/unsup/english_mix.txt");
    let text: Vec<String> =
        std::fs::read_to_string(path).unwrap().lines().skip(10_992).take(8).map(String::from).collect();
    let options = Options {
        attention: AttentionMode::Causal,
        max_length: Some(2048),
        doc_max_length: Some(2048),
        ..Options::default()
    };
    let enc = Encoder::from_pretrained(model, options).unwrap();
    let t = enc.tokenize(&Input::text(text.join(" "))).unwrap();
    let n = t.ids.len();
    let ids = Tensor::from_vec(t.ids.clone(), (1, n), &llm2vec::Device::Cpu).unwrap();
    let hidden = enc.backbone().forward(&ids, &[n], AttentionMode::Causal).unwrap();
    let logits = enc.backbone().logits(&hidden, Pass::Infer).unwrap().squeeze(0).unwrap();
    let log_probs: Vec<Vec<f32>> = candle_nn::ops::log_softmax(&logits, 1).unwrap().to_vec2().unwrap();
    let start = usize::from(enc.tokenizer().bos_id() == Some(t.ids[0]));
    let nll: f64 = (start..n - 1).map(|i| -log_probs[i][t.ids[i + 1] as usize] as f64).sum();
    assert!(n > 600, "passage has {n} tokens");
    (nll / (n - 1 - start) as f64).exp()
}

#[test]
fn smollm2_wikitext_perplexity_is_low() {
    let Some(model) = common::smollm2() else { return };
    let ppl = wikitext_perplexity(&model);
    assert!(ppl < 20.0, "perplexity {ppl}");
}

#[test]
fn gemma3_wikitext_perplexity_is_low() {
    let path = llm2vec::load::models_dir().join("gemma-3-270m-q4_k_m.gguf");
    if !common::available(&path, "run scripts/fetch-gemma3.sh") {
        return;
    }
    let ppl = wikitext_perplexity(path.to_str().unwrap());
    assert!(ppl < 20.0, "perplexity {ppl}");
}
