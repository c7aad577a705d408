//! The default model (SmolLM2-135M-Instruct, Q4_1 GGUF) served over loopback: both endpoints, with and
//! without instructions, from concurrent clients, equal `Encoder::encode` on the same inputs. Skipped, with a
//! note, when the model has not been fetched.

mod common;

use std::sync::Arc;

use common::{assert_rows_match, float_rows, library, openai_rows, TestServer};
use llm2vec::{Encoder, Input, Options};
use llm2vec_server::Config;
use serde_json::json;

const INSTRUCTION: &str = "Given a web search query, retrieve relevant passages that answer the query:";
const QUERIES: [&str; 2] = ["how much protein should a female eat", "summit define"];
const DOCUMENTS: [&str; 2] = [
    "As a general guideline, the CDC's average requirement of protein for women ages 19 to 70 is 46 grams per day.",
    "Definition of summit for English Language Learners. : 1 the highest point of a mountain : the top of a mountain.",
];

#[test]
fn served_embeddings_equal_the_library_with_the_default_model() {
    let Some(model) = common::default_model() else { return };
    let encoder = Arc::new(Encoder::from_pretrained(&model, Options::default()).unwrap());
    let server = Arc::new(TestServer::start_with(encoder.clone(), Config::default()));
    let queries: Vec<Input> = QUERIES.iter().map(|q| Input::new(INSTRUCTION, *q)).collect();
    let documents: Vec<Input> = DOCUMENTS.iter().map(|d| Input::text(*d)).collect();
    let clients = [
        std::thread::spawn({
            let server = server.clone();
            move || {
                float_rows(
                    server
                        .post_json("/embed", &json!({"inputs": QUERIES, "instruction": INSTRUCTION}))
                        .json()
                        .as_array()
                        .unwrap(),
                )
            }
        }),
        std::thread::spawn({
            let server = server.clone();
            move || {
                openai_rows(
                    &server
                        .post_json("/v1/embeddings", &json!({"input": DOCUMENTS, "encoding_format": "base64"}))
                        .json(),
                )
            }
        }),
        std::thread::spawn({
            let server = server.clone();
            move || {
                let pairs = json!([[INSTRUCTION, QUERIES[1]], ["", DOCUMENTS[0]]]);
                float_rows(
                    server
                        .post_json("/embed", &json!({"inputs": pairs, "normalize": false}))
                        .json()
                        .as_array()
                        .unwrap(),
                )
            }
        }),
    ];
    let [q, d, mixed] = clients.map(|c| c.join().unwrap());
    assert_rows_match(&q, &library(&encoder, &queries, true));
    assert_rows_match(&d, &library(&encoder, &documents, true));
    assert_rows_match(&mixed, &library(&encoder, &[queries[1].clone(), documents[0].clone()], false));
}
