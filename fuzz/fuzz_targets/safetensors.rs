//! `parse_safetensors` on arbitrary bytes; accepted tensors are converted to f32 and read back (bounded).

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use llm2vec::weights::parse_safetensors;
use llm2vec::{DType, Device};

fuzz_target!(|data: &[u8]| {
    let tensors = match parse_safetensors(data, &Device::Cpu) {
        Ok(t) => t,
        Err(e) => {
            debug!("rejected: {e}");
            return;
        }
    };
    debug!("parsed: {} tensors", tensors.len());
    for (name, t) in &tensors {
        let n = t.elem_count();
        assert_eq!(t.dims().iter().product::<usize>(), n, "tensor `{name}`");
        if n > common::MAX_ELEMENTS {
            continue;
        }
        // What the model loaders do with every weight: convert it to the compute dtype.
        let values = t.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>());
        debug!(
            "tensor `{name}` {:?} {:?}: {:?}",
            t.dims(),
            t.dtype(),
            values.as_ref().map(Vec::len).map_err(|e| e.to_string())
        );
        if let Ok(values) = values {
            assert_eq!(values.len(), n, "tensor `{name}`");
        }
    }
});
