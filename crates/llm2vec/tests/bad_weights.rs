//! Weights that would give wrong embeddings are refused with an error naming the file and tensor: adapters
//! whose config disagrees with their matrices, and NaN or infinite values in model or adapter weights.

use std::path::{Path, PathBuf};

use llm2vec::{Encoder, Input, Options};

fn tiny_llama() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/llama")
}

/// A copy of the tiny llama's `folder` (model or adapter) to change.
fn copy_of(folder: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(tiny_llama().join(folder)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(path, json.to_string()).unwrap();
}

fn with_adapter(adapter: &Path) -> Result<Encoder, llm2vec::Error> {
    let options = Options { adapters: vec![adapter.to_path_buf()], ..Options::default() };
    Encoder::from_pretrained(tiny_llama().join("model").to_str().unwrap(), options)
}

fn load_err(result: Result<Encoder, llm2vec::Error>) -> String {
    match result {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn adapter_rank_that_disagrees_with_its_matrices_is_refused() {
    let adapter = copy_of("adapter");
    edit_json(&adapter.path().join("adapter_config.json"), |c| c["r"] = 8.into());
    let msg = load_err(with_adapter(adapter.path()));
    let expected = ["adapter_config.json", "field `r`: 8", "lora_A.weight", "[4, "];
    assert!(expected.iter().all(|part| msg.contains(part)), "{msg}");
}

#[test]
fn adapter_rank_pattern_that_disagrees_with_its_matrices_is_refused() {
    let adapter = copy_of("adapter");
    edit_json(&adapter.path().join("adapter_config.json"), |c| c["rank_pattern"] = serde_json::json!({"q_proj": 2}));
    let msg = load_err(with_adapter(adapter.path()));
    let expected = ["adapter_config.json", "field `rank_pattern.q_proj`: 2", "q_proj.lora_A.weight", "[4, 32]"];
    assert!(expected.iter().all(|part| msg.contains(part)), "{msg}");
}

/// `rank_pattern` and `alpha_pattern` that give every module the matrices' rank and the same scale load and
/// encode exactly as the plain config.
#[test]
fn adapter_patterns_matching_the_matrices_are_used() {
    let inputs = [Input::text("a man is playing a flute .")];
    let plain = with_adapter(&tiny_llama().join("adapter")).unwrap().encode(&inputs).unwrap();
    let adapter = copy_of("adapter");
    edit_json(&adapter.path().join("adapter_config.json"), |c| {
        let modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
        c["r"] = 16.into();
        c["lora_alpha"] = 1.into();
        c["rank_pattern"] = modules.iter().map(|m| (m.to_string(), 4.into())).collect::<serde_json::Map<_, _>>().into();
        c["alpha_pattern"] =
            modules.iter().map(|m| (m.to_string(), 8.into())).collect::<serde_json::Map<_, _>>().into();
    });
    let patterned = with_adapter(adapter.path()).unwrap().encode(&inputs).unwrap();
    assert_eq!(plain.data, patterned.data);
}

/// Overwrites the first `n` elements (at most all) of the f32 tensor `name` in the safetensors file at `path`.
fn set_elements(path: &Path, name: &str, n: usize, value: f32) {
    let mut bytes = std::fs::read(path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    assert_eq!(header[name]["dtype"], "F32");
    let offsets: Vec<usize> =
        header[name]["data_offsets"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let data = &mut bytes[8 + header_len + offsets[0]..8 + header_len + offsets[1]];
    for element in data.chunks_exact_mut(4).take(n) {
        element.copy_from_slice(&value.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn nan_in_model_weights_is_refused_naming_file_and_tensor() {
    let model = copy_of("model");
    set_elements(&model.path().join("model.safetensors"), "model.layers.1.mlp.up_proj.weight", 1, f32::NAN);
    let msg = load_err(Encoder::from_pretrained(model.path().to_str().unwrap(), Options::default()));
    let expected = ["model.safetensors", "model.layers.1.mlp.up_proj.weight", "NaN or infinite"];
    assert!(expected.iter().all(|part| msg.contains(part)), "{msg}");
}

#[test]
fn infinity_in_adapter_weights_is_refused_naming_file_and_tensor() {
    let adapter = copy_of("adapter");
    let tensor = "base_model.model.layers.0.self_attn.v_proj.lora_B.weight";
    set_elements(&adapter.path().join("adapter_model.safetensors"), tensor, 1, f32::NEG_INFINITY);
    let msg = load_err(with_adapter(adapter.path()));
    let expected = ["adapter_model.safetensors", tensor, "NaN or infinite"];
    assert!(expected.iter().all(|part| msg.contains(part)), "{msg}");
}

#[test]
fn nan_in_gguf_weights_is_refused_naming_file_and_tensor() {
    use llm2vec::load::gguf::{GgmlType, GgufFile};
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/tiny_llama.gguf");
    let file = GgufFile::read(&fixture).unwrap();
    let info = file.tensors().iter().find(|t| t.ggml_type == GgmlType::F32 && t.name != "rope_freqs.weight").unwrap();
    let mut bytes = std::fs::read(&fixture).unwrap();
    let at = file.data_offset() + info.offset as usize;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("poisoned.gguf");
    std::fs::write(&path, bytes).unwrap();
    let msg = load_err(Encoder::from_pretrained(path.to_str().unwrap(), Options::default()));
    assert!(msg.contains("poisoned.gguf") && msg.contains(&info.name) && msg.contains("NaN or infinite"), "{msg}");
}

/// Finite weights whose activations overflow: the encode fails, naming the input (here the longest, which
/// runs first), instead of returning NaN or infinite rows.
#[test]
fn embeddings_that_overflow_are_an_error_naming_the_input() {
    let model = copy_of("model");
    set_elements(&model.path().join("model.safetensors"), "model.norm.weight", usize::MAX, f32::MAX);
    let options = Options { batch_size: 1, ..Options::default() };
    let encoder = Encoder::from_pretrained(model.path().to_str().unwrap(), options).unwrap();
    let inputs = [
        Input::text("a flute ."),
        Input::text("a man ."),
        Input::text("a man is playing a large flute on the stage ."),
    ];
    let err = encoder.encode(&inputs).unwrap_err();
    assert!(matches!(err, llm2vec::Error::NonFinite { input: 2 }), "{err}");
    assert!(err.to_string().contains("input 3: the embedding has NaN or infinite values"), "{err}");
}
