//! Bad input over loopback: each is answered with the right status and a JSON error body, and the server
//! stays up and keeps serving.

mod common;

use std::sync::Arc;

use common::{tiny_model, TestServer};
use llm2vec::{Encoder, Input, Options};
use llm2vec_server::Config;
use serde_json::json;

fn start(options: Options, config: Config) -> TestServer {
    TestServer::start(&tiny_model(), options, config)
}

#[test]
fn malformed_or_mistyped_requests_get_json_errors() {
    let server = start(Options::default(), Config { max_client_batch_size: 4, ..Config::default() });
    let cases: &[(&str, &[u8], u16, &str)] = &[
        ("/embed", b"{\"inputs\": [\"a\"", 400, "malformed JSON"),
        ("/v1/embeddings", b"", 400, "malformed JSON"),
        ("/v1/embeddings", b"input=hello", 400, "malformed JSON"),
        ("/v1/embeddings", b"{\"input\": \"caf\xc3\xa9 \xff\xfe\"}", 400, "not valid UTF-8"),
        ("/embed", b"{\"inputs\": [\"\xe9t\xe9\"]}", 400, "not valid UTF-8"),
        ("/v1/embeddings", b"[\"a list\"]", 422, "invalid request"),
        ("/v1/embeddings", b"{\"model\": \"m\"}", 422, "missing field `input`"),
        ("/v1/embeddings", b"{\"input\": 5}", 422, "`input` must be a string or a list of strings"),
        ("/v1/embeddings", b"{\"input\": [1, 2, 3]}", 422, "`input` must be a string or a list of strings"),
        ("/v1/embeddings", b"{\"input\": \"a\", \"encoding_format\": \"hex\"}", 422, "unknown variant `hex`"),
        ("/v1/embeddings", b"{\"input\": \"a\", \"dimensions\": \"8\"}", 422, "invalid type"),
        ("/v1/embeddings", b"{\"input\": \"a\", \"dimensions\": -1}", 422, "invalid value"),
        ("/v1/embeddings", b"{\"input\": \"a\", \"dimensions\": 0}", 422, "`dimensions` must be between 1 and 32"),
        ("/v1/embeddings", b"{\"input\": \"a\", \"dimensions\": 33}", 422, "`dimensions` must be between 1 and 32"),
        ("/embed", b"{\"inputs\": [[\"only one\"]]}", 422, "`inputs` must be a string or a list"),
        ("/embed", b"{\"inputs\": [\"a\"], \"normalize\": \"yes\"}", 422, "invalid type"),
        ("/embed", b"{\"inputs\": [\"a\"], \"normalise\": true}", 422, "unknown field `normalise`"),
        ("/embed", b"{\"inputs\": [\"a\"], \"instruction\": 3}", 422, "invalid type"),
        ("/v1/embeddings", b"{\"input\": []}", 422, "`input` is empty"),
        ("/embed", b"{\"inputs\": []}", 422, "`inputs` is empty"),
        ("/v1/embeddings", b"{\"input\": \"\"}", 422, "input 1: empty text"),
        ("/embed", b"{\"inputs\": [\"fine\", \"   \"]}", 422, "input 2: empty text"),
        ("/embed", b"{\"inputs\": [[\"an instruction\", \"\"]]}", 422, "input 1: empty text"),
        (
            "/embed",
            b"{\"inputs\": [\"1\", \"2\", \"3\", \"4\", \"5\"]}",
            413,
            "`inputs` has 5 items, more than the limit of 4",
        ),
        ("/v1/embeddings", b"{\"input\": [\"1\", \"2\", \"3\", \"4\", \"5\"]}", 413, "more than the limit of 4"),
        ("/nowhere", b"{}", 404, "no route for POST /nowhere"),
    ];
    for &(path, body, status, needle) in cases {
        let reply = server.post(path, body);
        assert_eq!(reply.status, status, "{path} {:?}: {}", String::from_utf8_lossy(body), reply.text());
        reply.assert_error(status, needle);
    }
    server.get("/embed").assert_error(405, "GET is not allowed on /embed");
    server.assert_healthy();
    assert_eq!(server.post_json("/embed", &json!({"inputs": ["still serving"]})).status, 200);
    assert_eq!(server.metric("llm2vec_batch_size_sum"), 1.0, "no bad request reached the model");
}

#[test]
fn a_body_over_the_limit_is_413() {
    let server = start(Options::default(), Config { max_body_bytes: 4096, ..Config::default() });
    for size in [4097, 64 * 1024, 4 * 1024 * 1024] {
        let body = json!({"inputs": ["x".repeat(size)]}).to_string();
        server.post("/embed", body.as_bytes()).assert_error(413, "request body is larger than the limit of 4096 bytes");
    }
    let body = json!({"input": "y ".repeat(1500), "truncate": true}).to_string();
    let reply = server.post("/v1/embeddings", body.as_bytes());
    assert_eq!(reply.status, 200, "under the limit: {}", reply.text());
    server.assert_healthy();
}

#[test]
fn a_text_over_max_length_without_truncate_is_413_with_its_token_count() {
    let options = Options { max_length: Some(32), ..Options::default() };
    let server = start(options.clone(), Config { max_batch_tokens: Some(32), ..Config::default() });
    let long = "the quick brown fox jumps over the lazy dog ".repeat(6);
    // The count the error reports: the whole input, instruction included, with no max_length cut.
    let uncut =
        Encoder::from_pretrained(&tiny_model(), Options { max_length: Some(100_000), ..Options::default() }).unwrap();
    let count = uncut.tokenize(&Input::new("Retrieve:", long.as_str())).unwrap().ids.len();
    assert!(count > 32);
    let request = json!({"inputs": ["short", ["Retrieve:", long]], "truncate": false});
    server
        .post_json("/embed", &request)
        .assert_error(413, &format!("input 2 has {count} tokens, more than max_length 32"));
    let plain_count = uncut.tokenize(&Input::text(long.as_str())).unwrap().ids.len();
    server
        .post_json("/v1/embeddings", &json!({"input": [long]}))
        .assert_error(413, &format!("input 1 has {plain_count} tokens, more than max_length 32"));
    // With truncate: cut to max_length, as `llm2vec encode` does.
    let reply =
        server.post_json("/embed", &json!({"inputs": [["Retrieve:", long]], "truncate": true, "normalize": false}));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let cut = Encoder::from_pretrained(&tiny_model(), options).unwrap();
    let expected = common::library(&cut, &[Input::new("Retrieve:", long.as_str())], false);
    common::assert_rows_match(&common::float_rows(reply.json().as_array().unwrap()), &expected);
    server.assert_healthy();
}

#[test]
fn a_text_over_doc_max_length_is_413_without_truncate_and_counted_with_it() {
    let options = Options { doc_max_length: Some(8), ..Options::default() };
    let encoder = Arc::new(Encoder::from_pretrained(&tiny_model(), options).unwrap());
    let server = TestServer::start_with(encoder.clone(), Config::default());
    let long = "the quick brown fox jumps over the lazy dog";
    let count = encoder.tokenizer().count(long).unwrap();
    assert!(count > 8);
    let message = |n: usize| format!("input {n} has {count} tokens of text, more than doc_max_length 8");
    server.post_json("/embed", &json!({"inputs": ["short", long]})).assert_error(413, &message(2));
    server.post_json("/v1/embeddings", &json!({"input": [long]})).assert_error(413, &message(1));
    // With truncate: cut as `llm2vec encode` cuts it, and counted.
    let inputs = [Input::text("short"), Input::text(long)];
    let reply = server.post_json("/embed", &json!({"inputs": ["short", long], "truncate": true, "normalize": false}));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-truncated-inputs"), Some("1"));
    let expected = common::library(&encoder, &inputs, false);
    common::assert_rows_match(&common::float_rows(reply.json().as_array().unwrap()), &expected);
    let reply = server.post_json("/v1/embeddings", &json!({"input": ["short", long], "truncate": true}));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["usage"]["truncated_inputs"], 1);
    common::assert_rows_match(&common::openai_rows(&body), &common::library(&encoder, &inputs, true));
    let body = server.post_json("/v1/embeddings", &json!({"input": ["short"]})).json();
    assert_eq!(body["usage"]["truncated_inputs"], 0);
}

#[test]
fn a_megabyte_text_is_refused_by_its_size_before_tokenizing() {
    let server = start(Options::default(), Config::default());
    let words = "word ".repeat(200_000);
    let one_word = "x".repeat(1_000_000);
    for text in [words, one_word] {
        server
            .post_json("/v1/embeddings", &json!({"input": ["short", text]}))
            .assert_error(413, "input 2 is 1000000 bytes, too long to fit in 400 tokens");
        server.post_json("/embed", &json!({"inputs": text})).assert_error(413, "input 1 is 1000000 bytes");
    }
    server.assert_healthy();
}
