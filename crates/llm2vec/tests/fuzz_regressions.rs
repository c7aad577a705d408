//! Inputs the fuzz targets (fuzz/) found or were written to reach: each must give an error, quickly, without
//! a panic or a huge allocation. The files live in fuzz/regressions/<target>/.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use llm2vec::load::adapter::Adapter;
use llm2vec::weights::{parse_safetensors, Weights};
use llm2vec::{DType, Device};

#[path = "common/regressions.rs"]
mod regressions;
use regressions::regressions;

fn within(limit: Duration, what: &Path, f: impl FnOnce()) {
    let start = Instant::now();
    f();
    assert!(start.elapsed() < limit, "{} took {:?}", what.display(), start.elapsed());
}

#[test]
fn hostile_gguf_models_fail_fast() {
    for path in regressions("gguf_load") {
        within(Duration::from_secs(10), &path, || {
            let result = llm2vec::load::load(path.to_str().unwrap(), &Device::Cpu);
            if let Err(e) = result {
                eprintln!("{}: {e}", path.display());
            }
        });
    }
}

#[test]
fn hostile_configs_are_errors() {
    for path in regressions("config") {
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(llm2vec::model::Config::from_json(&json, &path).is_err(), "{}", path.display());
    }
}

/// The adapter target's layout: a little-endian u16 `n`, `n` bytes of config, then safetensors bytes. The base
/// weights are 1x1, as the harness makes them when the adapter's update would be huge.
#[test]
fn hostile_adapters_are_errors_without_huge_allocations() {
    for path in regressions("adapter") {
        let data = std::fs::read(&path).unwrap();
        let n = u16::from_le_bytes([data[0], data[1]]) as usize;
        let (config, weights) = data[2..].split_at(n.min(data.len() - 2));
        let Ok(adapter) = Adapter::from_bytes(config, weights, Path::new("adapter")) else { continue };
        let base: HashMap<String, Tensor> = parse_safetensors(weights, &Device::Cpu)
            .unwrap()
            .keys()
            .filter_map(|k| k.strip_suffix(".lora_A.weight"))
            .map(|m| {
                (
                    format!("model.{}.weight", m.trim_start_matches("base_model.model.").trim_start_matches("model.")),
                    Tensor::zeros((1, 1), DType::F32, &Device::Cpu).unwrap(),
                )
            })
            .collect();
        let mut base = Weights::new(base, "model.safetensors");
        assert!(adapter.merge_into(&mut base).is_err(), "{}", path.display());
    }
}
