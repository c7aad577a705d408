//! GGUF loader tests: dequantization against the `gguf` Python package, hostile headers, and the real
//! SmolLM2 and Gemma 3 models (see `common/files.rs` for when a missing one skips or fails), and
//! comparisons with Python conversions of them when those are present.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use candle_core::{Device, Tensor};
use llm2vec::load::gguf::{self, Array, GgmlType, GgufFile, GgufModel, Value};

#[path = "common/files.rs"]
mod files;

// ---------------------------------------------------------------------------------------------------------
// Allocation tracking: the largest single allocation made by the current thread.

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` or `realloc` above with this `layout`, both served by `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(new_size)));
        // SAFETY: as for `dealloc`; the caller's contract for `new_size` is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Runs `f` and returns its result with the largest single allocation it made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

// ---------------------------------------------------------------------------------------------------------
// Paths.

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> PathBuf {
    manifest_dir().join("tests/fixtures/gguf/quants.gguf")
}

/// `shared/` beside the repository root.
fn shared_dir() -> PathBuf {
    manifest_dir().join("../../../shared")
}

fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LLM2VEC_MODELS_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"), PathBuf::from);
    cache.join("llm2vec/models")
}

fn present(path: &Path, what: &str) -> bool {
    if path.exists() {
        return true;
    }
    println!("SKIPPED: {what} not found at {}", path.display());
    false
}

// ---------------------------------------------------------------------------------------------------------
// Dequantization and reading, against the fixture written by scripts/reference/make_gguf_fixtures.py.

#[test]
fn dequantization_matches_python_gguf_package() {
    let file = GgufFile::read(&fixture()).unwrap();
    let mut checked = Vec::new();
    for info in file.tensors().iter().filter(|t| !t.name.ends_with(".expected")) {
        let Some(expected) = file.tensor(&format!("{}.expected", info.name)) else { continue };
        assert_eq!(info.shape(), expected.shape(), "{}", info.name);
        let ours = file.dequantize(info).unwrap();
        let direct = gguf::dequantize(info.ggml_type, file.tensor_bytes(info).unwrap(), info.n_elements).unwrap();
        assert_eq!(ours, direct);
        let want = file.dequantize(expected).unwrap();
        assert!(want.iter().any(|&v| v != 0.0), "{}: expected values are all zero", info.name);
        for (i, (&a, &b)) in ours.iter().zip(&want).enumerate() {
            assert!(b.is_finite(), "{}: expected[{i}] = {b}", info.name);
            let tol = 1e-6 * b.abs().max(f32::MIN_POSITIVE);
            assert!((a - b).abs() <= tol, "{} [{i}]: ours {a} vs gguf-py {b}", info.name);
        }
        checked.push(info.ggml_type);
    }
    use GgmlType::*;
    for ty in [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ4_NL, IQ4_XS] {
        assert!(checked.contains(&ty), "fixture has no checked {ty} tensor");
    }
}

#[test]
fn unsupported_type_error_names_type_and_tensor() {
    let file = GgufFile::read(&fixture()).unwrap();
    let info = file.tensor("iq2_xxs").unwrap();
    let msg = file.dequantize(info).unwrap_err().to_string();
    assert!(msg.contains("iq2_xxs") && msg.contains("IQ2_XXS (16)") && msg.contains("quants.gguf"), "{msg}");
    assert!(!gguf::is_supported(GgmlType::IQ2_XXS));
}

#[test]
fn dequantize_rejects_wrong_sizes() {
    assert!(gguf::dequantize(GgmlType::Q4_0, &[0u8; 18], 33).is_err());
    assert!(gguf::dequantize(GgmlType::Q4_0, &[0u8; 17], 32).is_err());
    assert!(gguf::dequantize(GgmlType::Q4_K, &[0u8; 144 * 2], 256).is_err());
    assert_eq!(gguf::dequantize(GgmlType::F32, &1.5f32.to_le_bytes(), 1).unwrap(), vec![1.5]);
}

#[test]
fn metadata_of_every_type_is_read() {
    let file = GgufFile::read(&fixture()).unwrap();
    assert_eq!(file.version(), 3);
    assert_eq!(file.alignment(), 64);
    let get = |k: &str| file.get(k).unwrap_or_else(|| panic!("missing {k}")).clone();
    assert_eq!(get("test.u8"), Value::U8(200));
    assert_eq!(get("test.i8"), Value::I8(-100));
    assert_eq!(get("test.u16"), Value::U16(60000));
    assert_eq!(get("test.i16"), Value::I16(-30000));
    assert_eq!(get("test.u32"), Value::U32(4_000_000_000));
    assert_eq!(get("test.i32"), Value::I32(-2_000_000_000));
    assert_eq!(get("test.u64"), Value::U64(1 << 62));
    assert_eq!(get("test.i64"), Value::I64(-(1 << 62)));
    assert_eq!(get("test.f32"), Value::F32(0.5));
    assert_eq!(get("test.f64"), Value::F64(-0.25));
    assert_eq!(get("test.bool"), Value::Bool(true));
    assert_eq!(get("test.string"), Value::String("héllo ▁ world".into()));
    assert_eq!(get("test.array.u16"), Value::Array(Array::U16(vec![1, 2, 65535])));
    assert_eq!(get("test.array.f32"), Value::Array(Array::F32(vec![1.5, -2.0])));
    assert_eq!(get("test.array.bool"), Value::Array(Array::Bool(vec![true, false, true])));
    assert_eq!(get("test.array.string"), Value::Array(Array::String(vec!["a".into(), "bc".into(), String::new()])));
    let nested = Array::Array(vec![Array::I32(vec![1, 2]), Array::I32(vec![3])]);
    assert_eq!(get("test.array.nested"), Value::Array(nested));
    let f32_info = file.tensor("f32").unwrap();
    assert_eq!(f32_info.dims, vec![4, 3, 2]);
    assert_eq!(f32_info.shape(), vec![2, 3, 4]);
    assert!(file.tensors().iter().all(|t| t.offset % 64 == 0));
}

// ---------------------------------------------------------------------------------------------------------
// Hostile input: errors, never panics, never large allocations.

/// A little-endian GGUF byte builder.
#[derive(Clone, Default)]
struct W(Vec<u8>);

impl W {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> W {
        W::default().raw(b"GGUF").u32(version).u64(n_tensors).u64(n_kv)
    }
    fn raw(mut self, b: &[u8]) -> W {
        self.0.extend_from_slice(b);
        self
    }
    fn u32(self, v: u32) -> W {
        self.raw(&v.to_le_bytes())
    }
    fn u64(self, v: u64) -> W {
        self.raw(&v.to_le_bytes())
    }
    fn str(self, s: &str) -> W {
        self.u64(s.len() as u64).raw(s.as_bytes())
    }
    fn kv_u32(self, key: &str, v: u32) -> W {
        self.str(key).u32(4).u32(v)
    }
    /// A tensor info: name, dims (GGUF order), type id, offset.
    fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> W {
        let mut w = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            w = w.u64(d);
        }
        w.u32(ty).u64(offset)
    }
    /// Pads to 32 bytes and appends `n` data bytes.
    fn data(mut self, n: usize) -> W {
        let padded = self.0.len().div_ceil(32) * 32;
        self.0.resize(padded + n, 0);
        self
    }
}

/// Parses `bytes`, which must fail with a message containing `want`, allocating at most 1 MiB at once.
fn assert_rejected(bytes: &[u8], want: &str) {
    let (result, largest) = largest_allocation(|| GgufFile::parse(bytes));
    let msg = result.expect_err("hostile input was accepted").to_string();
    assert!(msg.contains(want), "error `{msg}` does not mention `{want}`");
    assert!(msg.contains("<memory>"), "error `{msg}` does not name the file");
    assert!(largest < 1 << 20, "parsing allocated {largest} bytes at once for `{want}`");
}

#[test]
fn a_minimal_valid_file_parses() {
    let w = W::header(3, 1, 1).kv_u32("general.alignment", 32).tensor("t", &[32, 2], 2, 0).data(36);
    let file = GgufFile::parse(&w.0).unwrap();
    assert_eq!(file.tensor("t").unwrap().n_bytes, 36);
    let w2 = W::header(2, 0, 0);
    assert_eq!(GgufFile::parse(&w2.0).unwrap().version(), 2);
}

#[test]
fn hostile_headers_are_rejected() {
    assert_rejected(b"GGUX\x03\0\0\0", "bad magic");
    assert_rejected(&W::header(1, 0, 0).0, "unsupported GGUF version 1");
    assert_rejected(&W::header(4, 0, 0).0, "unsupported GGUF version 4");
    assert_rejected(&W::header(3, 1 << 60, 0).0, "tensor count 1152921504606846976");
    assert_rejected(&W::header(3, 0, 1 << 60).0, "metadata count");
    assert_rejected(&W::header(3, 0, 1).u64(1 << 40).raw(&[b'a'; 64]).0, "string length 1099511627776");
    assert_rejected(&W::header(3, 0, 1).str("k").u32(13).0, "unknown value type 13");
    assert_rejected(&W::header(3, 0, 1).str("k").u32(9).u32(0).u64(1 << 62).0, "array length");
    assert_rejected(&W::header(3, 0, 1).str("k").u32(9).u32(8).u64(1 << 40).0, "array length");
    assert_rejected(&W::header(3, 0, 1).str("k").u32(9).u32(99).u64(1).0, "unknown array element type 99");
    assert_rejected(&W::header(3, 0, 1).str("k").u32(7).raw(&[2]).0, "invalid bool");
    assert_rejected(&W::header(3, 0, 1).str("k").u32(8).u64(2).raw(&[0xff, 0xfe]).0, "not valid UTF-8");
    assert_rejected(&W::header(3, 0, 2).kv_u32("k", 1).kv_u32("k", 2).0, "duplicate metadata key `k`");
    assert_rejected(&W::header(3, 0, 1).kv_u32("general.alignment", 0).0, "general.alignment");
    assert_rejected(&W::header(3, 0, 1).kv_u32("general.alignment", 48).0, "general.alignment");
}

#[test]
fn deeply_nested_arrays_are_rejected() {
    let mut w = W::header(3, 0, 1).str("k").u32(9);
    for _ in 0..20 {
        w = w.u32(9).u64(1);
    }
    assert_rejected(&w.u32(4).u64(0).0, "nested deeper");
}

#[test]
fn hostile_tensor_infos_are_rejected() {
    let h = || W::header(3, 1, 0);
    assert_rejected(
        &h().tensor("blk.3.attn_q.weight", &[32], 99, 0).data(64).0,
        "tensor `blk.3.attn_q.weight`: unknown ggml type 99",
    );
    assert_rejected(&h().tensor("t", &[1, 1, 1, 1, 1], 0, 0).data(4).0, "5 dimensions");
    assert_rejected(&h().tensor("t", &[1 << 40, 1 << 40], 0, 0).data(4).0, "overflows");
    assert_rejected(&h().tensor("t", &[1 << 62, 4], 0, 0).data(4).0, "overflows");
    assert_rejected(&h().tensor("t", &[33], 2, 0).data(64).0, "not a multiple of the Q4_0 block size 32");
    assert_rejected(&h().tensor("t", &[8], 0, 7).data(64).0, "not a multiple of the alignment");
    assert_rejected(&h().tensor("t", &[8], 0, 0).data(31).0, "outside the file");
    assert_rejected(&h().tensor("t", &[8], 0, 1 << 40).data(32).0, "outside the file");
    assert_rejected(&h().tensor("t", &[8], 0, u64::MAX - 31).data(32).0, "outside the file");
    assert_rejected(&h().tensor("t", &[1 << 30, 1 << 30], 0, 0).data(32).0, "outside the file");
    let two = W::header(3, 2, 0).tensor("t", &[8], 0, 0).tensor("t", &[8], 0, 32).data(64);
    assert_rejected(&two.0, "duplicate tensor `t`");
}

#[test]
fn foreign_tensor_infos_are_rejected() {
    let file = GgufFile::read(&fixture()).unwrap();
    let mut info = file.tensor("f32").unwrap().clone();
    info.offset = u64::MAX - 8;
    assert!(file.tensor_bytes(&info).is_err());
    assert!(file.dequantize(&info).unwrap_err().to_string().contains("`f32`"));
}

#[test]
fn every_truncation_of_the_fixture_is_rejected() {
    let bytes = std::fs::read(fixture()).unwrap();
    let file = GgufFile::parse(&bytes).unwrap();
    let data_end = file.tensors().iter().map(|t| file.data_offset() + t.offset as usize + t.n_bytes).max().unwrap();
    for len in 0..data_end {
        let (result, largest) = largest_allocation(|| GgufFile::parse(&bytes[..len]));
        assert!(result.is_err(), "truncation to {len} bytes was accepted");
        assert!(largest <= bytes.len().max(1 << 16), "truncation to {len}: allocated {largest} bytes");
    }
}

#[test]
fn random_corruptions_never_panic_or_allocate_much() {
    let bytes = std::fs::read(fixture()).unwrap();
    let header_len = GgufFile::parse(&bytes).unwrap().data_offset();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let mut corrupt = bytes.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % header_len;
            corrupt[at] = next() as u8;
        }
        let (result, largest) = largest_allocation(|| GgufFile::parse(&corrupt).map(|f| f.tensors().len()));
        drop(result);
        assert!(largest <= 1 << 20, "a corrupted header made a {largest}-byte allocation");
    }
}

/// A GGUF model with every tensor read (the tests compare them all).
struct Model {
    config: serde_json::Value,
    tensors: HashMap<String, Tensor>,
    tokenizer: tokenizers::Tokenizer,
}

fn read(path: &Path) -> Model {
    let GgufModel { config, weights, tokenizer } = gguf::load(path, &Device::Cpu).unwrap();
    Model { config, tensors: weights.into_tensors().unwrap(), tokenizer }
}

// ---------------------------------------------------------------------------------------------------------
// A tiny random llama written as llama.cpp's converter writes one (scripts/reference/make_gguf_fixtures.py).

#[test]
fn tiny_llama_loads_back_to_its_hf_tensors() {
    let dir = manifest_dir().join("tests/fixtures/gguf");
    let model = read(&dir.join("tiny_llama.gguf"));
    let expected = read_safetensors(&dir.join("tiny_llama.expected.safetensors"));
    assert_eq!(expected.len(), 20, "20 tensors; rope_freqs.weight must not become one");
    assert_same_tensors(&model, &expected);
}

#[test]
fn tiny_llama_config_has_llama3_rope_scaling() {
    let model = read(&manifest_dir().join("tests/fixtures/gguf/tiny_llama.gguf"));
    let c = &model.config;
    let want = serde_json::json!({
        "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192
    });
    assert_eq!(c["rope_scaling"], want);
    assert_eq!(
        (c["num_attention_heads"].clone(), c["num_key_value_heads"].clone(), c["head_dim"].clone()),
        (2.into(), 1.into(), 8.into())
    );
    assert_eq!(c["rope_theta"], 500000.0);
    assert_eq!(c["rms_norm_eps"], 1e-5);
    assert_eq!(c["tie_word_embeddings"], true);
    assert_eq!((c["bos_token_id"].clone(), c["eos_token_id"].clone()), (0.into(), 1.into()));
    assert!(c["pad_token_id"].is_null());
}

#[test]
fn tiny_llama_tokenizer_adds_bos_and_splits_digits() {
    let model = read(&manifest_dir().join("tests/fixtures/gguf/tiny_llama.gguf"));
    let tok = &model.tokenizer;
    // ids: 0 <|bos|>, 1 <|eos|>, 2 + byte for the 256 byte tokens, 258 th, 259 the, 260 Ġthe, 261 Ġa, 262 12, 263 <|user|>
    let enc = tok.encode("the 12 the", true).unwrap();
    assert_eq!(enc.get_ids(), [0, 259, 2 + 32, 2 + b'1' as u32, 2 + b'2' as u32, 260]);
    assert_eq!(tok.decode(enc.get_ids(), true).unwrap(), "the 12 the");
    assert_eq!(tok.encode("the", false).unwrap().get_ids(), [259]);
    assert_eq!(tok.encode("<|user|>the", false).unwrap().get_ids(), [263, 259]);
}

// ---------------------------------------------------------------------------------------------------------
// The real SmolLM2-135M-Instruct Q4_1 model.

fn smollm2_path() -> PathBuf {
    models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn smollm2() -> Option<&'static Model> {
    static MODEL: OnceLock<Option<Model>> = OnceLock::new();
    load_once(&MODEL, &smollm2_path(), "run scripts/fetch-default-model.sh")
}

/// The model at `path`, loaded once per test binary; `None` (after `files::available`'s note, or its
/// failure when the test files are required) when it is not there.
fn load_once(cell: &'static OnceLock<Option<Model>>, path: &Path, hint: &str) -> Option<&'static Model> {
    cell.get_or_init(|| {
        if !files::available(path, hint) {
            return None;
        }
        let start = Instant::now();
        let model = read(path);
        println!("loaded {} in {:.2?}", path.display(), start.elapsed());
        Some(model)
    })
    .as_ref()
}

fn smollm2_reference_dir() -> PathBuf {
    shared_dir().join("reference/smollm2-135m-instruct-q4_1")
}

#[test]
fn smollm2_config() {
    let Some(model) = smollm2() else { return };
    let c = &model.config;
    assert_eq!(c["model_type"], "llama");
    assert_eq!(c["architectures"][0], "LlamaForCausalLM");
    assert_eq!(c["num_hidden_layers"], 30);
    assert_eq!(c["hidden_size"], 576);
    assert_eq!(c["intermediate_size"], 1536);
    assert_eq!(c["num_attention_heads"], 9);
    assert_eq!(c["num_key_value_heads"], 3);
    assert_eq!(c["head_dim"], 64);
    assert_eq!(c["vocab_size"], 49152);
    assert_eq!(c["max_position_embeddings"], 8192);
    assert_eq!(c["tie_word_embeddings"], true);
    assert_eq!(c["rope_theta"], 100000.0);
    assert_eq!(c["rms_norm_eps"], 1e-5);
    assert_eq!(
        (c["bos_token_id"].clone(), c["eos_token_id"].clone(), c["pad_token_id"].clone()),
        (1.into(), 2.into(), 2.into())
    );
    assert!(c["rope_scaling"].is_null());
}

#[test]
fn smollm2_tensors() {
    let Some(model) = smollm2() else { return };
    let t = &model.tensors;
    assert_eq!(t.len(), 272);
    assert!(!t.contains_key("lm_head.weight"));
    let dims = |n: &str| t.get(n).unwrap_or_else(|| panic!("missing {n}")).dims().to_vec();
    assert_eq!(dims("model.embed_tokens.weight"), [49152, 576]);
    assert_eq!(dims("model.norm.weight"), [576]);
    assert_eq!(dims("model.layers.29.self_attn.q_proj.weight"), [576, 576]);
    assert_eq!(dims("model.layers.0.self_attn.k_proj.weight"), [192, 576]);
    assert_eq!(dims("model.layers.0.self_attn.v_proj.weight"), [192, 576]);
    assert_eq!(dims("model.layers.0.self_attn.o_proj.weight"), [576, 576]);
    assert_eq!(dims("model.layers.0.mlp.gate_proj.weight"), [1536, 576]);
    assert_eq!(dims("model.layers.0.mlp.down_proj.weight"), [576, 1536]);
    assert_eq!(dims("model.layers.0.input_layernorm.weight"), [576]);
    assert_eq!(dims("model.layers.0.post_attention_layernorm.weight"), [576]);
}

fn llamacpp_sentences() -> Vec<(String, Vec<u32>)> {
    let path = smollm2_reference_dir().join("llamacpp_reference.json");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let sentences = json["sentences"].as_array().unwrap();
    sentences
        .iter()
        .map(|s| {
            let ids = s["ids_no_bos"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect();
            (s["text"].as_str().unwrap().to_string(), ids)
        })
        .collect()
}

#[test]
fn smollm2_tokenizer_matches_llamacpp() {
    let Some(model) = smollm2() else { return };
    if !files::available(&smollm2_reference_dir(), "the llama.cpp reference outputs in ../shared/reference") {
        return;
    }
    let sentences = llamacpp_sentences();
    assert_eq!(sentences.len(), 6);
    for (text, want) in sentences {
        let enc = model.tokenizer.encode(text.as_str(), true).unwrap();
        assert_eq!(enc.get_ids(), want.as_slice(), "{text}");
        assert_eq!(model.tokenizer.decode(enc.get_ids(), true).unwrap(), text);
    }
}

fn sts_sentences(n_rows: usize) -> Vec<String> {
    let path = shared_dir().join("data/STSBenchmark/test.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = Vec::new();
    for line in text.lines().take(n_rows) {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        out.push(row["sentence1"].as_str().unwrap().to_string());
        out.push(row["sentence2"].as_str().unwrap().to_string());
    }
    out
}

#[test]
fn smollm2_tokenizer_matches_derived_tokenizer_json() {
    let Some(model) = smollm2() else { return };
    let derived_path = smollm2_reference_dir().join("tokenizer.derived.json");
    if !files::available(&derived_path, "the derived tokenizer in ../shared/reference") {
        return;
    }
    let derived = tokenizers::Tokenizer::from_file(&derived_path).unwrap();
    let mut sentences = sts_sentences(500);
    assert_eq!(sentences.len(), 1000);
    sentences.extend(
        ["<|im_start|>user\nHi 12345 there!<|im_end|>", "  leading  spaces\ttabs\n\nnewlines 3.14159"]
            .map(String::from),
    );
    for s in &sentences {
        for special in [false, true] {
            let ours = model.tokenizer.encode(s.as_str(), special).unwrap();
            let theirs = derived.encode(s.as_str(), special).unwrap();
            assert_eq!(ours.get_ids(), theirs.get_ids(), "{s:?} (special tokens: {special})");
        }
    }
}

/// Where the Python conversions live unless an environment variable says: `reference/<name>` beside the models
/// folder (`~/.cache/llm2vec/reference/`, where scripts/bench/run-encode-bench.sh writes SmolLM2's).
fn reference_dir(var: &str, name: &str) -> PathBuf {
    std::env::var_os(var)
        .map_or_else(|| llm2vec::load::models_dir().with_file_name("reference").join(name), PathBuf::from)
}

/// The HF directory written by scripts/reference/dequantize_gguf_to_hf.py from the same GGUF.
fn smollm2_hf_dir() -> PathBuf {
    reference_dir("LLM2VEC_SMOLLM2_HF_DIR", "smollm2-hf")
}

fn read_safetensors(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let file = std::fs::File::open(path).unwrap();
    // SAFETY: read-only map of a reference file nobody modifies during the test.
    let bytes = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let data = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            (name, (view.shape().to_vec(), data))
        })
        .collect()
}

/// Asserts that `model` has exactly the tensors of `reference`, with identical values.
fn assert_same_tensors(model: &Model, reference: &HashMap<String, (Vec<usize>, Vec<f32>)>) {
    assert_eq!(reference.len(), model.tensors.len());
    for (name, (shape, want)) in reference {
        let ours = model.tensors.get(name).unwrap_or_else(|| panic!("we lack {name}"));
        assert_eq!(ours.dims(), shape.as_slice(), "{name}");
        assert!(values(ours) == *want, "{name} differs from the reference");
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn smollm2_tensors_match_python_conversion() {
    let Some(model) = smollm2() else { return };
    let dir = smollm2_hf_dir();
    if !present(&dir.join("model.safetensors"), "Python HF conversion (scripts/reference/dequantize_gguf_to_hf.py)") {
        return;
    }
    assert_same_tensors(model, &read_safetensors(&dir.join("model.safetensors")));
}

#[test]
fn q_k_unpermutation_inverts_llamacpp_permutation() {
    // convert_hf_to_gguf: w.reshape(n_head, 2, head_dim / 2, in).swapaxes(1, 2).reshape(w.shape)
    let (n_head, head_dim, cols) = (3, 8, 5);
    let hf: Vec<f32> = (0..n_head * head_dim * cols).map(|v| v as f32).collect();
    let mut gguf_rows = vec![0f32; hf.len()];
    for h in 0..n_head {
        for j in 0..2 {
            for i in 0..head_dim / 2 {
                let src = (h * head_dim + j * head_dim / 2 + i) * cols;
                let dst = (h * head_dim + i * 2 + j) * cols;
                gguf_rows[dst..dst + cols].copy_from_slice(&hf[src..src + cols]);
            }
        }
    }
    assert_ne!(gguf_rows, hf);
    assert_eq!(gguf::unpermute_rows(&gguf_rows, n_head, head_dim).unwrap(), hf);
    assert!(gguf::unpermute_rows(&gguf_rows, n_head, 7).is_err());
}

#[test]
fn gguf_names_map_to_hf_names() {
    use gguf::Arch::*;
    let m = |arch, n| gguf::hf_name(arch, n);
    assert_eq!(m(Llama, "blk.7.ffn_norm.weight").unwrap(), "model.layers.7.post_attention_layernorm.weight");
    assert_eq!(m(Qwen2, "blk.0.attn_q.bias").unwrap(), "model.layers.0.self_attn.q_proj.bias");
    assert_eq!(m(Gemma3, "blk.2.ffn_norm.weight").unwrap(), "model.layers.2.pre_feedforward_layernorm.weight");
    assert_eq!(
        m(Gemma3, "blk.2.post_attention_norm.weight").unwrap(),
        "model.layers.2.post_attention_layernorm.weight"
    );
    assert_eq!(m(Gemma2, "blk.2.post_ffw_norm.weight").unwrap(), "model.layers.2.post_feedforward_layernorm.weight");
    assert_eq!(m(Gemma3, "blk.1.attn_k_norm.weight").unwrap(), "model.layers.1.self_attn.k_norm.weight");
    assert_eq!(m(Gemma, "output_norm.weight").unwrap(), "model.norm.weight");
    assert_eq!(m(Llama, "output.weight").unwrap(), "lm_head.weight");
    assert!(m(Llama, "blk.x.attn_q.weight").is_none());
    assert!(m(Llama, "blk.0.post_ffw_norm.weight").is_none());
}

#[test]
fn unknown_architecture_is_reported() {
    let w = W::header(3, 0, 1).str("general.architecture").u32(8).str("mamba");
    let path = std::env::temp_dir().join(format!("llm2vec-gguf-arch-{}.gguf", std::process::id()));
    std::fs::write(&path, &w.0).unwrap();
    let err = gguf::load(&path, &Device::Cpu).unwrap_err().to_string();
    std::fs::remove_file(&path).unwrap();
    assert!(err.contains("mamba") && err.contains("llama, qwen2, gemma, gemma2, gemma3"), "{err}");
}

// ---------------------------------------------------------------------------------------------------------
// The real Gemma 3 270M Q4_K_M model (scripts/fetch-gemma3.sh).

fn gemma3_path() -> PathBuf {
    models_dir().join("gemma-3-270m-q4_k_m.gguf")
}

fn gemma3() -> Option<&'static Model> {
    static MODEL: OnceLock<Option<Model>> = OnceLock::new();
    load_once(&MODEL, &gemma3_path(), "run scripts/fetch-gemma3.sh")
}

#[test]
fn gemma3_loads_with_sane_config_and_tokenizer() {
    let Some(model) = gemma3() else { return };
    let path = gemma3_path();
    let c = &model.config;
    assert_eq!(c["model_type"], "gemma3_text");
    assert_eq!(c["num_hidden_layers"], 18);
    assert_eq!(c["hidden_size"], 640);
    assert_eq!(c["head_dim"], 256);
    assert_eq!(c["num_attention_heads"], 4);
    assert_eq!(c["num_key_value_heads"], 1);
    assert_eq!(c["vocab_size"], 262144);
    assert_eq!(c["sliding_window"], 512);
    assert_eq!(c["sliding_window_pattern"], 6);
    assert_eq!(c["query_pre_attn_scalar"], 256);
    assert_eq!(c["rope_theta"], 1_000_000.0);
    assert_eq!(c["rope_local_base_freq"], 10_000.0);
    assert_eq!(c["layer_types"][5], "full_attention");
    assert_eq!(c["layer_types"][4], "sliding_attention");
    assert_eq!(
        (c["bos_token_id"].clone(), c["eos_token_id"].clone(), c["pad_token_id"].clone()),
        (2.into(), 1.into(), 0.into())
    );
    assert_eq!(model.tensors["model.embed_tokens.weight"].dims(), [262144, 640]);
    assert_eq!(model.tensors["model.layers.0.self_attn.q_proj.weight"].dims(), [1024, 640]);
    assert_eq!(model.tensors["model.layers.0.self_attn.q_norm.weight"].dims(), [256]);
    assert!(model.tensors.contains_key("model.layers.17.post_feedforward_layernorm.weight"));
    // llama.cpp's converter stored Gemma norms as (1 + w); Hugging Face keeps w.
    let file = GgufFile::read(&path).unwrap();
    for (gguf_name, hf_name) in [
        ("blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"),
        ("blk.3.attn_q_norm.weight", "model.layers.3.self_attn.q_norm.weight"),
        ("output_norm.weight", "model.norm.weight"),
    ] {
        let stored = file.dequantize(file.tensor(gguf_name).unwrap()).unwrap();
        let ours = values(&model.tensors[hf_name]);
        assert!(stored.iter().zip(&ours).all(|(s, o)| *o == s - 1.0), "{hf_name}");
    }
    let q = file.dequantize(file.tensor("blk.0.attn_q.weight").unwrap()).unwrap();
    assert!(values(&model.tensors["model.layers.0.self_attn.q_proj.weight"]) == q, "gemma q must not be permuted");

    let text = "Hello world, this is a test.";
    let enc = model.tokenizer.encode(text, true).unwrap();
    let pieces = enc.get_tokens();
    println!("{pieces:?} {:?}", enc.get_ids());
    assert_eq!(pieces[0], "<bos>");
    assert_eq!(&pieces[1..], ["Hello", "▁world", ",", "▁this", "▁is", "▁a", "▁test", "."]);
    assert_eq!(model.tokenizer.decode(enc.get_ids(), true).unwrap(), text);
    let odd = "naïve café 東京 🦀\n\n  x";
    let enc = model.tokenizer.encode(odd, false).unwrap();
    assert_eq!(model.tokenizer.decode(enc.get_ids(), false).unwrap(), odd);
}

/// The HF directory written by scripts/reference/dequantize_gguf_to_hf.py from the Gemma 3 GGUF.
fn gemma3_hf_dir() -> PathBuf {
    reference_dir("LLM2VEC_GEMMA3_HF_DIR", "gemma3-hf")
}

#[test]
fn gemma3_matches_python_conversion() {
    let Some(model) = gemma3() else { return };
    let dir = gemma3_hf_dir();
    if !present(&dir.join("model.safetensors"), "Python HF conversion of Gemma 3") {
        return;
    }
    assert_same_tensors(model, &read_safetensors(&dir.join("model.safetensors")));
    let theirs = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let mut texts = sts_sentences(200);
    texts.extend(["naïve café 東京 🦀\n\n  x", "<start_of_turn>user\n<b>bold</b>\t\ttabs", "   "].map(String::from));
    for text in &texts {
        let ours = model.tokenizer.encode(text.as_str(), true).unwrap();
        assert_eq!(ours.get_ids(), theirs.encode(text.as_str(), true).unwrap().get_ids(), "{text:?}");
    }
}
