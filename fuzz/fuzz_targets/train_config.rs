//! `llm2vec_train::config::parse` on any UTF-8 input, then `validate` for each stage and the accessors the
//! trainer calls. An accepted config serialises and parses back to itself; an unknown field's suggestion is
//! a field the parser knows.

#![no_main]

#[path = "common.rs"]
mod common;

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use llm2vec_train::config::{closest_field, parse, Stage};
use llm2vec_train::TrainError;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = Path::new("<fuzz>/train_config.json");
    let loaded = match parse(text, file) {
        Ok(l) => l,
        Err(e) => {
            debug!("rejected: {e}");
            if let TrainError::UnknownField { closest: Some(c), .. } = &e {
                // The suggestion must itself be accepted (as a known or an ignored field).
                assert_eq!(closest_field(c), Some(c.as_str()));
            }
            return;
        }
    };
    let config = &loaded.config;
    for stage in [Stage::Mntp, Stage::SimCse, Stage::Supervised] {
        let valid = config.validate(stage, file);
        debug!("{stage:?}: {:?}", valid.as_ref().map_err(ToString::to_string));
        if valid.is_ok() {
            assert!(config.model(file).is_ok() && config.data_file(file).is_ok() && config.output_dir.is_some());
            assert!(config.lora_r > 0 && config.lora_alpha() > 0.0);
        }
    }
    let again = serde_json::to_string(config).expect("a config serialises");
    let back = parse(&again, file).expect("a serialised config parses");
    let (a, b) = (serde_json::to_value(config).unwrap(), serde_json::to_value(&back.config).unwrap());
    assert!(same(&a, &b), "{a} != {b}");
    assert!(back.notes.is_empty());
});

/// Equal JSON, floats within a few ulps (serde_json's default float parsing is not always exact).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-15 * x.abs().max(y.abs())
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w)),
        _ => a == b,
    }
}
