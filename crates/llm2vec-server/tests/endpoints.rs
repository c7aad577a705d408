//! End to end over loopback with the tiny model: both embedding endpoints, float and base64, dimensions,
//! instructions, concurrent clients, /health, /info, /metrics. Served rows must equal `Encoder::encode`.

mod common;

use std::sync::Arc;

use common::{assert_rows_match, float_rows, library, norm, openai_rows, rel_diff, tiny_model, TestServer, MODEL_NAME};
use llm2vec::{Encoder, Input, Options};
use llm2vec_server::Config;
use serde_json::json;

const TEXTS: [&str; 4] = [
    "a girl is styling her hair .",
    "a group of men play soccer on the beach .",
    "one woman is measuring another woman 's ankle .",
    "summit define",
];
const INSTRUCTION: &str = "Given a web search query, retrieve relevant passages that answer the query:";

fn start() -> (TestServer, Arc<Encoder>) {
    let encoder = Arc::new(Encoder::from_pretrained(&tiny_model(), Options::default()).unwrap());
    (TestServer::start_with(encoder.clone(), Config::default()), encoder)
}

fn plain(texts: &[&str]) -> Vec<Input> {
    texts.iter().map(|t| Input::text(*t)).collect()
}

#[test]
fn openai_endpoint_matches_the_library_in_float_and_base64() {
    let (server, encoder) = start();
    let expected = library(&encoder, &plain(&TEXTS), true);
    let tokens: usize = plain(&TEXTS).iter().map(|i| encoder.tokenize(i).unwrap().ids.len()).sum();
    for format in ["float", "base64"] {
        let reply = server.post_json(
            "/v1/embeddings",
            &json!({"input": TEXTS, "model": "anything", "encoding_format": format, "user": "u1"}),
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        let body = reply.json();
        assert_eq!((body["object"].as_str(), body["model"].as_str()), (Some("list"), Some(MODEL_NAME)));
        assert_eq!(body["usage"]["prompt_tokens"], tokens);
        assert_eq!(body["usage"]["total_tokens"], tokens);
        let rows = openai_rows(&body);
        assert_rows_match(&rows, &expected);
        assert!(rows.iter().all(|r| (norm(r) - 1.0).abs() < 1e-5), "OpenAI embeddings are unit length");
    }
    // A single string, and no encoding_format (float).
    let body = server.post_json("/v1/embeddings", &json!({"input": TEXTS[3], "model": "m"})).json();
    assert!(body["data"][0]["embedding"].is_array());
    assert!(rel_diff(&openai_rows(&body)[0], expected.row(3)) < 1e-4);
}

#[test]
fn dimensions_cut_then_renormalise() {
    let (server, encoder) = start();
    let raw = library(&encoder, &plain(&TEXTS[..2]), false);
    for format in ["float", "base64"] {
        let body = server
            .post_json("/v1/embeddings", &json!({"input": &TEXTS[..2], "dimensions": 8, "encoding_format": format}))
            .json();
        let rows = openai_rows(&body);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.len(), 8);
            let cut = &raw.row(i)[..8];
            let expected: Vec<f32> = cut.iter().map(|v| v / norm(cut)).collect();
            assert!(rel_diff(row, &expected) < 1e-4, "row {i}");
        }
    }
    let full = server.post_json("/v1/embeddings", &json!({"input": TEXTS[0], "dimensions": encoder.dim()})).json();
    assert_eq!(openai_rows(&full)[0].len(), encoder.dim());
}

#[test]
fn embed_endpoint_applies_instructions_the_llm2vec_way() {
    let (server, encoder) = start();
    // Plain texts take the request's instruction; [instruction, text] pairs bring their own.
    let request = json!({
        "inputs": [TEXTS[0], ["Retrieve semantically similar text:", TEXTS[1]], ["", TEXTS[2]]],
        "instruction": INSTRUCTION,
        "normalize": false,
        "truncate": true,
    });
    let inputs = vec![
        Input::new(INSTRUCTION, TEXTS[0]),
        Input::new("Retrieve semantically similar text:", TEXTS[1]),
        Input::text(TEXTS[2]),
    ];
    let reply = server.post_json("/embed", &request);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_rows_match(&float_rows(reply.json().as_array().unwrap()), &library(&encoder, &inputs, false));
    // The instruction changes the embedding (attended to), and normalize defaults to true.
    let reply = server.post_json("/embed", &json!({"inputs": TEXTS[0]}));
    let without = float_rows(reply.json().as_array().unwrap());
    assert_rows_match(&without, &library(&encoder, &[Input::text(TEXTS[0])], true));
    assert!(rel_diff(&without[0], library(&encoder, &inputs[..1], true).row(0)) > 1e-3);
}

#[test]
fn concurrent_clients_each_get_their_own_embeddings() {
    let (server, encoder) = start();
    let server = Arc::new(server);
    let clients: Vec<_> = (0..16)
        .map(|client| {
            let server = server.clone();
            std::thread::spawn(move || {
                (0..4)
                    .map(|round| {
                        let texts: Vec<String> = (0..1 + (client + round) % 3)
                            .map(|k| format!("client {client} round {round} text {k} {}", TEXTS[k]))
                            .collect();
                        let rows = if client % 2 == 0 {
                            openai_rows(
                                &server
                                    .post_json("/v1/embeddings", &json!({"input": texts, "encoding_format": "base64"}))
                                    .json(),
                            )
                        } else {
                            float_rows(server.post_json("/embed", &json!({"inputs": texts})).json().as_array().unwrap())
                        };
                        (texts, rows)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for client in clients {
        for (texts, rows) in client.join().unwrap() {
            let inputs: Vec<Input> = texts.iter().map(Input::text).collect();
            assert_rows_match(&rows, &library(&encoder, &inputs, true));
        }
    }
    assert!(server.metric("llm2vec_batch_size_count") >= 1.0);
    assert_eq!(server.metric("llm2vec_requests_in_flight"), 0.0);
}

#[test]
fn health_info_and_metrics_describe_the_server() {
    let config = Config { max_batch_tokens: Some(2048), max_client_batch_size: 7, ..Config::default() };
    let server = TestServer::start(&tiny_model(), Options::default(), config);
    server.assert_healthy();
    let info = server.get("/info").json();
    assert_eq!(info["model"], MODEL_NAME);
    assert_eq!(info["architecture"], "llama");
    assert_eq!(info["pooling"], "mean");
    assert_eq!(info["dims"], 32);
    assert_eq!(info["max_length"], 512);
    assert_eq!((&info["precision"], &info["device"]), (&json!("f32"), &json!("cpu")));
    assert_eq!(info["cpu_kernels"], llm2vec::cpu_kernels());
    assert_eq!(info["limits"]["max_batch_tokens"], 2048);
    let defaults = TestServer::start(&tiny_model(), Options::default(), Config::default());
    assert_eq!(defaults.get("/info").json()["limits"]["max_batch_tokens"], llm2vec::CPU_MAX_BATCH_TOKENS);
    assert_eq!(info["limits"]["max_client_batch_size"], 7);
    assert_eq!(server.post_json("/embed", &json!({"inputs": ["one", "two"]})).status, 200);
    let reply = server.get("/metrics");
    assert!(reply.header("content-type").unwrap().starts_with("text/plain"));
    let text = reply.text();
    for family in [
        "llm2vec_requests_total{endpoint=\"/embed\",status=\"200\"} 1",
        "# TYPE llm2vec_request_duration_seconds histogram",
        "llm2vec_request_duration_seconds_count{endpoint=\"/embed\"} 1",
        "# TYPE llm2vec_queue_duration_seconds histogram",
        "llm2vec_queue_duration_seconds_count 2",
        "# TYPE llm2vec_batch_size histogram",
        "llm2vec_batch_size_sum 2",
        "# TYPE llm2vec_batch_tokens histogram",
        "# TYPE llm2vec_inference_duration_seconds histogram",
        "llm2vec_queue_size 0",
        "llm2vec_dropped_inputs_total 0",
    ] {
        assert!(text.contains(family), "{family} missing from:\n{text}");
    }
}
