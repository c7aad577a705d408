//! The whole GGUF model loader (hyper-parameters, Hugging Face config, tokenizer rebuilt from the GGUF
//! vocabulary, tensors) on arbitrary bytes, then one input tokenized with the rebuilt tokenizer.
//!
//! `llm2vec::load::gguf::load` and `llm2vec::load::load` take a path (the tokenizer and hyper-parameter
//! builders are not public), so each input is written to a per-process file under /dev/shm first.

#![no_main]

#[path = "common.rs"]
mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use llm2vec::model::Config;
use llm2vec::tokenize::TokenizeOptions;
use llm2vec::Device;

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir =
            if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        dir.join(format!("llm2vec-fuzz-{}.gguf", std::process::id()))
    })
}

/// Inputs that hit the known problems listed in README.md: a head count or `attention.key_length` so large
/// that un-permuting the Q/K rows loops for ages or overflows, and very long SentencePiece tokens (building the
/// merges is quadratic in a token's length).
fn has_known_problem(data: &[u8]) -> bool {
    use llm2vec::load::gguf::{Array, GgufFile};
    let Ok(file) = GgufFile::parse(data) else { return false };
    let big = |v: Option<&llm2vec::load::gguf::Value>| v.and_then(|v| v.as_u64()).is_some_and(|n| n > 1 << 12);
    let hparams = file
        .metadata()
        .iter()
        .any(|(k, v)| (k.ends_with(".attention.key_length") || k.ends_with(".attention.head_count")) && big(Some(v)));
    let long_token = matches!(
        file.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()),
        Some(Array::String(tokens)) if tokens.iter().any(|t| t.len() > 1024)
    );
    hparams || long_token
}

fuzz_target!(|data: &[u8]| {
    // Hostile tensor tables can name many small tensors, all of which are dequantized below, so bound the
    // input instead (a run's -max_len is the usual bound; this one guards against large seeds).
    if data.len() > 1 << 20 {
        return;
    }
    if common::skip_known() && has_known_problem(data) {
        return;
    }
    let path = scratch();
    std::fs::write(path, data).expect("write scratch file");
    let spec = path.to_str().expect("utf-8 scratch path");
    let loaded = match llm2vec::load::load(spec, &Device::Cpu) {
        Ok(loaded) => loaded,
        Err(e) => {
            debug!("rejected: {e}");
            return;
        }
    };
    debug!("loaded: {}", loaded.config.model_type());
    match &loaded.config {
        Config::Llama(c) => debug!("validate: {:?}", c.validate(path).map_err(|e| e.to_string())),
        Config::Gemma(c) => debug!("validate: {:?}", c.validate(path).map_err(|e| e.to_string())),
        Config::Bert(c) => debug!("validate: {:?}", c.validate(path).map_err(|e| e.to_string())),
    }
    let opts = TokenizeOptions { max_length: 64, doc_max_length: 32, append_eos: true };
    for (instruction, text) in [("Retrieve passages", "Hello wörld 123 ▁ <s> \u{0}\t\n end"), ("", "a")] {
        let t = loaded.tokenizer.tokenize(instruction, text, &opts);
        debug!("tokenized: {t:?}");
        if let Ok(t) = t {
            assert!(t.text_range.start <= t.text_range.end && t.text_range.end <= t.ids.len(), "{t:?}");
        }
        let _ = loaded.tokenizer.count(text);
    }
    // Tensors are read when taken: read them all, as building a model would.
    debug!("tensors: {:?}", loaded.weights.into_tensors().map(|t| t.len()).map_err(|e| e.to_string()));
});
