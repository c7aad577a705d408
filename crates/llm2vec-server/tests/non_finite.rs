//! A model whose embeddings come out NaN or infinite: the request fails with 500 and a message naming the
//! problem, instead of a 200 with `null` embeddings, and the server keeps serving.

mod common;

use common::{tiny_model, TestServer};
use llm2vec::Options;
use llm2vec_server::Config;
use serde_json::json;

#[path = "../../llm2vec/tests/common/safetensors_edit.rs"]
mod safetensors_edit;
use safetensors_edit::fill_tensor;

#[test]
fn embeddings_that_are_not_finite_are_a_500() {
    let dir = std::env::temp_dir().join(format!("llm2vec-non-finite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(tiny_model()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    // Finite weights whose activations overflow.
    fill_tensor(&dir.join("model.safetensors"), "model.norm.weight", f32::MAX);
    let server = TestServer::start(dir.to_str().unwrap(), Options::default(), Config::default());
    let reply = server.post_json("/v1/embeddings", &json!({"input": ["a man is playing a flute ."]}));
    reply.assert_error(500, "NaN or infinite");
    let reply = server.post_json("/embed", &json!({"inputs": ["a man is playing a flute ."]}));
    reply.assert_error(500, "NaN or infinite");
    server.assert_healthy();
    server.stop().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
