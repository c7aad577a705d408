//! `parse_inputs` on arbitrary bytes, as JSONL and as plain lines.

#![no_main]

#[path = "common.rs"]
mod common;

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use llm2vec::io::{parse_inputs, InputFormat};

fuzz_target!(|data: &[u8]| {
    for (format, name) in [(InputFormat::Jsonl, "<fuzz>/inputs.jsonl"), (InputFormat::Lines, "<fuzz>/inputs.txt")] {
        match parse_inputs(data, format, "instr", Path::new(name)) {
            Ok(inputs) => {
                debug!("{name}: {} inputs", inputs.len());
                // Every line is one input; none is blank.
                let body = data.strip_suffix(b"\n").unwrap_or(data);
                assert_eq!(inputs.len(), body.split(|&b| b == b'\n').count());
                for input in &inputs {
                    assert!(!input.text.trim().is_empty());
                }
            }
            Err(e) => debug!("{name}: rejected: {e}"),
        }
    }
});
