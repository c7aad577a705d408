//! The GGUF container reader on arbitrary bytes, then every tensor it accepts dequantized (bounded).

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use llm2vec::load::gguf::{self, GgufFile};

fuzz_target!(|data: &[u8]| {
    let file = match GgufFile::parse(data) {
        Ok(file) => file,
        Err(e) => {
            debug!("rejected: {e}");
            return;
        }
    };
    debug!("parsed: v{} {} metadata, {} tensors", file.version(), file.metadata().len(), file.tensors().len());
    // Accessors must agree with what was parsed.
    for (key, value) in file.metadata() {
        assert!(file.get(key).is_some(), "metadata `{key}` not found by get()");
        let _ = (value.as_u64(), value.as_f64(), value.as_str(), value.type_name());
    }
    let arch = gguf::architecture(&file);
    debug!("architecture: {:?}", arch.as_ref().map(|a| a.name()).map_err(|e| e.to_string()));
    for info in file.tensors() {
        assert!(file.tensor(&info.name).is_some(), "tensor `{}` not found by tensor()", info.name);
        let shape = info.shape();
        assert_eq!(shape.iter().product::<usize>(), info.n_elements, "tensor `{}`", info.name);
        if let Ok(arch) = &arch {
            let _ = gguf::hf_name(*arch, &info.name);
        }
        // The reader checked the data bounds of its own tensors.
        let bytes = file.tensor_bytes(info).expect("tensor bytes of a parsed tensor");
        assert_eq!(bytes.len(), info.n_bytes);
        if info.n_elements > common::MAX_ELEMENTS {
            continue;
        }
        match file.dequantize(info) {
            Ok(values) => {
                assert_eq!(values.len(), info.n_elements, "tensor `{}`", info.name);
                let direct = gguf::dequantize(info.ggml_type, bytes, info.n_elements).expect("dequantize agrees");
                assert_eq!(direct.len(), values.len());
                debug!("tensor `{}` {}: {} values", info.name, info.ggml_type, values.len());
                if shape.len() == 2 && shape[0] > 0 && shape[1] > 0 {
                    // Row un-permutation as the Llama loader uses it, with a head count taken from the shape
                    // (rows of at least one value: the function loops over rows even when they are empty).
                    let rows = shape[0];
                    let n_head = if rows % 2 == 0 { 2 } else { 1 };
                    let _ = gguf::unpermute_rows(&values, n_head, rows / n_head);
                }
            }
            Err(e) => {
                assert!(!gguf::is_supported(info.ggml_type), "supported type failed: {e}");
                debug!("tensor `{}`: {e}", info.name);
            }
        }
    }
});
