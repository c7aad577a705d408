//! A model name that looks like a local path is never sent to the hub: a mistyped path says it was not found
//! locally. One test, because it sets process-wide variables (the hub is a closed loopback port).

use std::net::TcpListener;

use llm2vec::load::resolve;

#[test]
fn mistyped_paths_are_not_looked_up_on_the_hub() {
    let cache = tempfile::tempdir().unwrap();
    std::env::set_var("HF_HUB_CACHE", cache.path().join("hf"));
    std::env::set_var("LLM2VEC_MODELS_DIR", cache.path().join("models"));
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::env::set_var("HF_ENDPOINT", format!("http://127.0.0.1:{closed}"));

    // Tests run in the crate's folder, where `tests/` exists.
    for spec in ["tests/does-not-exist", "org/model.gguf", "Model.GGUF", "./missing", "/no/such/model", "~/models/x"] {
        let msg = resolve(spec).unwrap_err().to_string();
        assert!(msg.contains(&format!("`{spec}` was not found locally")) && !msg.contains("download"), "{spec}: {msg}");
    }
    let msg = resolve("~/models/x").unwrap_err().to_string();
    assert!(msg.contains("expanded by the shell"), "{msg}");

    let msg = resolve("tiny-org/tiny-llama").unwrap_err().to_string();
    assert!(msg.contains("cannot download `tiny-org/tiny-llama`"), "a hub id still goes to the hub: {msg}");
}
