//! `Config::from_json` on any JSON value, then the family's `validate`.

#![no_main]

#[path = "common.rs"]
mod common;

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use llm2vec::model::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let path = Path::new("<fuzz>/config.json");
    if common::skip_known() && json.get("model_type").and_then(|v| v.as_str()) == Some("gemma3") {
        // Known: a `text_config` that is neither an object nor null panics in from_json (README.md).
        if json.get("text_config").is_some_and(|t| !t.is_object() && !t.is_null()) {
            return;
        }
    }
    let config = match Config::from_json(&json, path) {
        Ok(c) => c,
        Err(e) => {
            debug!("rejected: {e}");
            return;
        }
    };
    let model_type = config.model_type().to_string();
    let valid = match &config {
        Config::Llama(c) => c.validate(path),
        Config::Gemma(c) => c.validate(path),
        Config::Bert(c) => c.validate(path),
    };
    debug!("{model_type}: validate {:?}", valid.map_err(|e| e.to_string()));
});
