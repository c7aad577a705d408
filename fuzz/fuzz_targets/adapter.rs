//! `Adapter::from_bytes` on a fuzzed adapter_config.json and adapter_model.safetensors, then a merge into
//! base weights shaped after the adapter's own matrices (so shape checks and the merge itself run).
//!
//! Input layout: a little-endian u16 `n`, then `n` bytes of config (fewer if the input is shorter), then the
//! safetensors bytes.

#![no_main]

#[path = "common.rs"]
mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use libfuzzer_sys::fuzz_target;
use llm2vec::load::adapter::Adapter;
use llm2vec::weights::{parse_safetensors, Weights};
use llm2vec::{DType, Device};

/// PEFT module name -> Hugging Face weight name, as the adapter loader maps them.
fn base_name(peft: &str) -> String {
    let inner = peft.strip_prefix("base_model.model.").unwrap_or(peft);
    if inner.starts_with("model.") {
        format!("{inner}.weight")
    } else {
        format!("model.{inner}.weight")
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = u16::from_le_bytes([data[0], data[1]]) as usize;
    let rest = &data[2..];
    let (config, weights) = rest.split_at(n.min(rest.len()));
    let dir = Path::new("<fuzz>/adapter");
    let adapter = match Adapter::from_bytes(config, weights, dir) {
        Ok(a) => a,
        Err(e) => {
            debug!("rejected: {e}");
            return;
        }
    };
    debug!(
        "adapter: r={} alpha={} fan_in_fan_out={}",
        adapter.config.r, adapter.config.lora_alpha, adapter.config.fan_in_fan_out
    );
    // Base weights: for each A/B pair, a zero weight of the shape the update has ([out, in], transposed for
    // fan_in_fan_out), or a 1x1 weight when that would be large, so that the shape check fails.
    let tensors = parse_safetensors(weights, &Device::Cpu).expect("the adapter parsed these weights");
    let dims = |suffix: &str| -> HashMap<String, Vec<usize>> {
        tensors.iter().filter_map(|(k, t)| Some((base_name(k.strip_suffix(suffix)?), t.dims().to_vec()))).collect()
    };
    let (a_dims, b_dims) = (dims(".lora_A.weight"), dims(".lora_B.weight"));
    let mut base = HashMap::new();
    for (name, a) in &a_dims {
        let Some(b) = b_dims.get(name) else { continue };
        let (out, inp) = (b.first().copied().unwrap_or(1), a.last().copied().unwrap_or(1));
        let mut shape = if out.saturating_mul(inp) <= common::MAX_ELEMENTS { vec![out, inp] } else { vec![1, 1] };
        if adapter.config.fan_in_fan_out {
            shape.reverse();
        }
        base.insert(name.clone(), Tensor::zeros(shape, DType::F32, &Device::Cpu).expect("zeros"));
    }
    let mut base = Weights::new(base, "<fuzz>/model.safetensors");
    // The merge is applied when a tensor is read: read them all, as building a model would.
    let merged = adapter.merge_into(&mut base).and_then(|()| base.into_tensors());
    debug!("merge: {:?}", merged.map(|t| t.len()).map_err(|e| e.to_string()));
});
