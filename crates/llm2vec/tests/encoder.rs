//! Encoder behaviour: batch and order invariance, and clear errors for bad models and inputs.

mod common;

use std::path::{Path, PathBuf};

use llm2vec::{io, Encoder, Error, Input, Options};

fn tiny(family: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity").join(family)
}

fn tiny_llama_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(tiny("llama").join("model")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn encoder(model: &str, batch_size: usize) -> Encoder {
    Encoder::from_pretrained(model, Options { batch_size, ..Options::default() }).unwrap()
}

fn sentences(n: usize) -> Vec<Input> {
    let path = common::shared().join("data/STSBenchmark/dev.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .take(n)
        .enumerate()
        .map(|(i, line)| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = v["sentence1"].as_str().unwrap();
            if i % 3 == 0 {
                Input::new("Retrieve semantically similar text:", text)
            } else {
                Input::text(text)
            }
        })
        .collect()
}

fn max_rel_diff(a: &llm2vec::Embeddings, b: &llm2vec::Embeddings, rows: &[usize]) -> f32 {
    (0..a.rows)
        .map(|i| {
            let (x, y) = (a.row(i), b.row(rows[i]));
            let scale = y.iter().fold(0f32, |m, v| m.max(v.abs()));
            x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max) / scale
        })
        .fold(0f32, f32::max)
}

fn assert_batch_invariant(model: &str, n: usize) {
    let inputs = sentences(n);
    let base = encoder(model, 1).encode(&inputs).unwrap();
    let identity: Vec<usize> = (0..n).collect();
    for batch in [7, 32] {
        let other = encoder(model, batch).encode(&inputs).unwrap();
        let diff = max_rel_diff(&base, &other, &identity);
        assert!(diff < 1e-4, "batch size {batch}: relative difference {diff}");
    }
    let budgeted = Options { max_batch_tokens: Some(100), ..Options::default() };
    let other = Encoder::from_pretrained(model, budgeted).unwrap().encode(&inputs).unwrap();
    let diff = max_rel_diff(&base, &other, &identity);
    assert!(diff < 1e-4, "100 padded tokens per batch: relative difference {diff}");
    let reversed: Vec<Input> = inputs.iter().rev().cloned().collect();
    let other = encoder(model, 7).encode(&reversed).unwrap();
    let rows: Vec<usize> = (0..n).rev().collect();
    assert!(max_rel_diff(&base, &other, &rows) < 1e-4, "input order changed the embeddings");
}

#[test]
fn tiny_model_is_batch_and_order_invariant() {
    assert_batch_invariant(tiny("llama").join("model").to_str().unwrap(), 40);
}

#[test]
fn default_model_is_batch_and_order_invariant() {
    let Some(model) = common::smollm2() else { return };
    assert_batch_invariant(&model, 40);
}

/// Batches hold at most `max_batch_tokens` padded tokens (rows times the longest), but for an input longer
/// than that alone, and at most `batch_size` rows.
#[test]
fn batches_keep_to_the_token_budget() {
    let model = tiny("llama").join("model");
    let inputs = sentences(40);
    for (batch_size, budget) in [(32, 60), (32, 1), (4, 100_000)] {
        let options = Options { batch_size, max_batch_tokens: Some(budget), ..Options::default() };
        let encoder = Encoder::from_pretrained(model.to_str().unwrap(), options).unwrap();
        let mut lengths: Vec<usize> = inputs.iter().map(|i| encoder.tokenize(i).unwrap().ids.len()).collect();
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        let mut done = Vec::new();
        encoder
            .encode_with_progress(&inputs, batch_size, |p| {
                done.push(p.done);
                Ok(())
            })
            .unwrap();
        let batches: Vec<&[usize]> = done.windows(2).map(|w| &lengths[w[0]..w[1]]).collect();
        assert_eq!(batches.iter().map(|b| b.len()).sum::<usize>(), 40);
        for b in &batches {
            assert!(b.len() <= batch_size, "{} rows over batch size {batch_size}", b.len());
            assert!(
                b.len() == 1 || b.len() * b[0] <= budget,
                "{} rows of up to {} tokens over {budget}",
                b.len(),
                b[0]
            );
        }
        // Filled: the next input would not have fitted.
        for (b, next) in batches.iter().zip(&batches[1..]) {
            assert!(
                b.len() == batch_size || (b.len() + 1) * b[0] > budget,
                "batch of {} could take {}",
                b.len(),
                next[0]
            );
        }
    }
}

fn load_err(model: &Path, options: Options) -> String {
    match Encoder::from_pretrained(model.to_str().unwrap(), options) {
        Ok(_) => panic!("{} loaded", model.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_weights_name_the_directory() {
    let dir = tiny_llama_copy();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let msg = load_err(dir.path(), Options::default());
    assert!(msg.contains("no model.safetensors"), "{msg}");
}

#[test]
fn truncated_weights_name_the_file() {
    let dir = tiny_llama_copy();
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let msg = load_err(dir.path(), Options::default());
    assert!(msg.contains("model.safetensors") && msg.contains("invalid safetensors"), "{msg}");
}

#[test]
fn config_that_disagrees_with_weights_names_the_tensor() {
    let dir = tiny_llama_copy();
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["intermediate_size"] = 96.into();
    std::fs::write(&path, config.to_string()).unwrap();
    let msg = load_err(dir.path(), Options::default());
    assert!(msg.contains("gate_proj.weight") && msg.contains("shape"), "{msg}");
}

#[test]
fn unknown_architecture_lists_the_supported_ones() {
    let dir = tiny_llama_copy();
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["model_type"] = "gpt_neox".into();
    std::fs::write(&path, config.to_string()).unwrap();
    let msg = load_err(dir.path(), Options::default());
    assert!(msg.contains("gpt_neox") && msg.contains("llama, mistral, qwen2"), "{msg}");
}

#[test]
fn adapter_for_another_base_model_is_refused() {
    let options = Options { adapters: vec![tiny("gemma").join("adapter")], ..Options::default() };
    let msg = load_err(&tiny("llama").join("model"), options);
    assert!(msg.contains("another base model"), "{msg}");
}

#[test]
fn empty_text_is_an_error_naming_the_input() {
    let enc = encoder(tiny("llama").join("model").to_str().unwrap(), 4);
    let err = enc.encode(&[Input::text("fine"), Input::new("an instruction", "  ")]).unwrap_err();
    assert!(matches!(err, Error::Input(_)) && err.to_string().contains("input 2: empty text"), "{err}");
}

#[test]
fn long_texts_are_truncated_and_reported() {
    let model = tiny("llama").join("model");
    let options = Options { max_length: Some(32), doc_max_length: Some(1000), ..Options::default() };
    let enc = Encoder::from_pretrained(model.to_str().unwrap(), options).unwrap();
    let long = "a man is playing a large flute . ".repeat(200);
    let out = enc.encode(&[Input::text("short text"), Input::text(long.clone())]).unwrap();
    assert_eq!(out.truncated, vec![1]);
    assert_eq!(enc.tokenize(&Input::text(long)).unwrap().ids.len(), 32);
    assert!(out.row(1).iter().all(|v| v.is_finite()));
}

#[test]
fn input_file_errors_carry_the_line_number() {
    let path = Path::new("inputs.jsonl");
    let jsonl = b"{\"text\": \"ok\"}\n{\"text\": \"ok\", \"instruction\": \"q:\"}\n{\"txt\": \"typo\"}\n";
    let msg = io::parse_inputs(jsonl, io::InputFormat::Jsonl, "", path).unwrap_err().to_string();
    assert!(msg.contains("inputs.jsonl: line 3") && msg.contains("txt"), "{msg}");
    let broken = b"{\"text\": \"ok\"}\n{\"text\": \"unterminated}\n";
    let msg = io::parse_inputs(broken, io::InputFormat::Jsonl, "", path).unwrap_err().to_string();
    assert!(msg.contains("line 2") && msg.contains("invalid JSON"), "{msg}");
    let lines = b"first\nsecond \xff\xfe\nthird\n";
    let msg = io::parse_inputs(lines, io::InputFormat::Lines, "", Path::new("t.txt")).unwrap_err().to_string();
    assert!(msg.contains("t.txt: line 2") && msg.contains("UTF-8"), "{msg}");
    let blank = b"first\n\nthird\n";
    let msg = io::parse_inputs(blank, io::InputFormat::Lines, "", Path::new("t.txt")).unwrap_err().to_string();
    assert!(msg.contains("line 2: empty text"), "{msg}");
}

#[test]
fn input_files_parse_instructions() {
    let jsonl = b"{\"text\": \"a\"}\r\n{\"text\": \"b\", \"instruction\": \"own:\"}\n";
    let inputs = io::parse_inputs(jsonl, io::InputFormat::Jsonl, "default:", Path::new("x.jsonl")).unwrap();
    assert_eq!(inputs, vec![Input::new("default:", "a"), Input::new("own:", "b")]);
}

#[test]
fn npy_output_round_trips_its_header() {
    let e =
        llm2vec::Embeddings { data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], rows: 2, dim: 3, tokens: 0, truncated: vec![] };
    let bytes = io::npy_bytes(&e);
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + header_len) % 64, 0);
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'shape': (2, 3)") && header.contains("'<f4'"), "{header}");
    assert_eq!(f32::from_le_bytes(bytes[10 + header_len + 20..10 + header_len + 24].try_into().unwrap()), 6.0);
}

/// bf16 and f16 weights and activations give embeddings close to f32 (RMSNorm accumulates in f32).
#[test]
fn half_precision_is_close_to_f32() {
    let model = tiny("llama").join("model");
    let inputs = sentences(8);
    let run = |dtype| {
        let options = Options { dtype, ..Options::default() };
        Encoder::from_pretrained(model.to_str().unwrap(), options).unwrap().encode(&inputs).unwrap()
    };
    let full = run(llm2vec::DType::F32);
    for dtype in [llm2vec::DType::BF16, llm2vec::DType::F16] {
        let half = run(dtype);
        for i in 0..inputs.len() {
            let c = common::cosine(full.row(i), half.row(i));
            assert!(c > 0.999, "{dtype:?}: cosine {c} for input {i}");
        }
    }
}

/// Poolings that share forward passes give what an encoder of each pooling gives alone.
#[test]
fn shared_passes_pool_like_separate_encoders() {
    use llm2vec::Pooling;
    let model = tiny("llama").join("model");
    let inputs = sentences(12);
    let with = |pooling| Options { pooling: Some(pooling), batch_size: 5, ..Options::default() };
    let shared = Encoder::from_pretrained(model.to_str().unwrap(), with(Pooling::Mean)).unwrap();
    let modes = [Pooling::Mean, Pooling::WeightedMean, Pooling::LastToken];
    let all = shared.encode_poolings(&inputs, &modes).unwrap();
    let identity: Vec<usize> = (0..inputs.len()).collect();
    for (mode, got) in modes.iter().zip(&all) {
        let alone = Encoder::from_pretrained(model.to_str().unwrap(), with(*mode)).unwrap().encode(&inputs).unwrap();
        assert!(max_rel_diff(got, &alone, &identity) < 1e-6, "{}", mode.name());
    }
    let err = shared.encode_poolings(&inputs, &[Pooling::EosToken]).unwrap_err().to_string();
    assert!(err.contains("eos_token") && err.contains("cannot share"), "{err}");
}

/// A token added to a loaded model grows the tokenizer and the embedding table by one row, from `new_rows`.
#[test]
fn an_added_token_gets_a_new_embedding_row() {
    let mut loaded = llm2vec::load::load(tiny("llama").join("model").to_str().unwrap(), &llm2vec::Device::Cpu).unwrap();
    let before = loaded.tokenizer.inner().get_vocab_size(true);
    let table = loaded.weights.get("model.embed_tokens.weight").unwrap();
    let id = loaded.add_token("<mask>", |rows, hidden| vec![0.5; rows * hidden]).unwrap();
    assert_eq!(id as usize, before);
    let grown = loaded.weights.get("model.embed_tokens.weight").unwrap();
    assert_eq!(grown.dims2().unwrap().0, before + 1);
    assert_eq!(
        grown.narrow(0, 0, table.dim(0).unwrap()).unwrap().to_vec2::<f32>().unwrap(),
        table.to_vec2::<f32>().unwrap()
    );
    assert!(grown.get(before).unwrap().to_vec1::<f32>().unwrap().iter().all(|&v| v == 0.5));
    assert_eq!(loaded.config_json["vocab_size"], before + 1);
    let encoder = Encoder::from_loaded(loaded, Options::default()).unwrap();
    let ids = encoder.tokenize(&Input::text("a <mask> b")).unwrap().ids;
    assert!(ids.contains(&id), "{ids:?}");
    assert!(encoder.encode(&[Input::text("a <mask> b")]).unwrap().data.iter().all(|v| v.is_finite()));
}

/// A decoder saved without its LM head (as the reference's `LLM2Vec.save` writes it: `layers.0...`, not
/// `model.layers.0...`) gives the full model's embeddings.
#[test]
fn a_decoder_saved_without_its_head_loads() {
    let dir = tiny_llama_copy();
    let file = dir.path().join("model.safetensors");
    let tensors = candle_core::safetensors::load(&file, &candle_core::Device::Cpu).unwrap();
    let bare: std::collections::HashMap<String, candle_core::Tensor> =
        tensors.into_iter().filter_map(|(name, t)| Some((name.strip_prefix("model.")?.to_string(), t))).collect();
    assert!(bare.contains_key("embed_tokens.weight"), "{:?}", bare.keys());
    candle_core::safetensors::save(&bare, &file).unwrap();
    let inputs = sentences(4);
    let full = encoder(tiny("llama").join("model").to_str().unwrap(), 4).encode(&inputs).unwrap();
    let saved = encoder(dir.path().to_str().unwrap(), 4).encode(&inputs).unwrap();
    assert_eq!(max_rel_diff(&full, &saved, &[0, 1, 2, 3]), 0.0);
}
