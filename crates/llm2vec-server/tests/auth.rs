//! The API key over loopback: every route but /health needs `Authorization: Bearer <key>`.

mod common;

use common::{request_with, tiny_model, Reply, TestServer};
use llm2vec::Options;
use llm2vec_server::Config;

const KEY: &str = "s3cret-key";

#[test]
fn routes_but_health_need_the_key() {
    let config = Config { api_key: Some(KEY.to_string()), ..Config::default() };
    let server = TestServer::start(&tiny_model(), Options::default(), config);
    let body = br#"{"input": ["a sentence"]}"#;
    let post = |headers: &[&str]| -> Reply { request_with(server.addr, "POST", "/v1/embeddings", headers, body) };
    let missing = post(&[]);
    missing.assert_error(401, "missing API key");
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    post(&["Authorization: Bearer wrong-key"]).assert_error(401, "invalid API key");
    post(&["Authorization: Bearer s3cret-ke"]).assert_error(401, "invalid API key");
    post(&["Authorization: Basic czNjcmV0LWtleQ=="]).assert_error(401, "missing API key");
    let reply = post(&["Authorization: Bearer s3cret-key"]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(post(&["authorization: bearer s3cret-key"]).status, 200);
    for path in ["/info", "/metrics", "/nowhere"] {
        server.get(path).assert_error(401, "missing API key");
    }
    let embed = request_with(server.addr, "POST", "/embed", &[], br#"{"inputs": "x"}"#);
    embed.assert_error(401, "missing API key");
    server.assert_healthy();
    let info = request_with(server.addr, "GET", "/info", &["Authorization: Bearer s3cret-key"], b"");
    assert_eq!(info.status, 200);
    assert!(!info.text().contains(KEY), "/info does not show the key");
}

#[test]
fn without_a_key_every_route_is_open() {
    let server = TestServer::start(&tiny_model(), Options::default(), Config::default());
    assert_eq!(server.post("/v1/embeddings", br#"{"input": "open"}"#).status, 200);
    assert_eq!(server.get("/info").status, 200);
}
