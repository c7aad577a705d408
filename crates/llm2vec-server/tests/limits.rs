//! Limits over loopback: a flood beyond --max-concurrent-requests (429, nothing queued), the per-request
//! timeout (504), a client that hangs up mid-request (its queued work dropped), graceful shutdown (in-flight
//! requests finish, new connections refused), and settings refused at start.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{head, read_reply, tiny_model, Reply, TestServer};
use llm2vec::{Encoder, Options};
use llm2vec_server::{Config, ServerError};
use serde_json::json;

/// A client that sends the head and only the first half of its body, then waits: its request is in flight
/// (holding a concurrency slot) until [`Stalled::finish`].
struct Stalled {
    stream: TcpStream,
    rest: Vec<u8>,
}

impl Stalled {
    fn start(addr: SocketAddr, path: &str, body: &[u8]) -> Self {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let half = body.len() / 2;
        stream.write_all(head("POST", path, body.len()).as_bytes()).unwrap();
        stream.write_all(&body[..half]).unwrap();
        Self { stream, rest: body[half..].to_vec() }
    }

    fn finish(mut self) -> Reply {
        self.stream.write_all(&self.rest).unwrap();
        read_reply(&mut self.stream)
    }

    /// Reads the reply without sending the rest (for a server that answers first, e.g. on timeout).
    fn reply(mut self) -> Reply {
        read_reply(&mut self.stream)
    }
}

fn embed_body(texts: &[&str]) -> Vec<u8> {
    json!({"inputs": texts}).to_string().into_bytes()
}

#[test]
fn a_flood_beyond_max_concurrent_requests_is_429_and_queues_nothing() {
    let config = Config { max_concurrent_requests: 2, ..Config::default() };
    let server = Arc::new(TestServer::start(&tiny_model(), Options::default(), config));
    let body = embed_body(&["held"]);
    let held: Vec<Stalled> = (0..2).map(|_| Stalled::start(server.addr, "/embed", &body)).collect();
    assert_eq!(server.wait_for_metric("llm2vec_requests_in_flight", |v| v == 2.0), 2.0);
    let flood: Vec<_> = (0..32)
        .map(|i| {
            let server = server.clone();
            std::thread::spawn(move || {
                server.post("/v1/embeddings", json!({"input": format!("flood {i}")}).to_string().as_bytes())
            })
        })
        .collect();
    for client in flood {
        let reply = client.join().unwrap();
        reply.assert_error(429, "too many concurrent requests (limit 2)");
        assert_eq!(reply.header("retry-after"), Some("1"));
    }
    assert_eq!(server.metric("llm2vec_queue_size"), 0.0);
    assert_eq!(server.metric("llm2vec_batch_size_count"), 0.0, "refused requests never reach the model");
    server.assert_healthy();
    for client in held {
        assert_eq!(client.finish().status, 200);
    }
    assert_eq!(server.wait_for_metric("llm2vec_requests_in_flight", |v| v == 0.0), 0.0);
    assert_eq!(server.post("/embed", &body).status, 200, "slots are free again");
}

#[test]
fn a_request_over_the_timeout_is_504() {
    let config = Config { request_timeout: 0.3, ..Config::default() };
    let server = TestServer::start(&tiny_model(), Options::default(), config);
    let start = Instant::now();
    let reply = Stalled::start(server.addr, "/embed", &embed_body(&["never finished"])).reply();
    reply.assert_error(504, "the request took more than 0.3 s");
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(server.wait_for_metric("llm2vec_requests_in_flight", |v| v == 0.0), 0.0);
    server.assert_healthy();
    assert_eq!(server.post("/embed", &embed_body(&["in time"])).status, 200);
}

#[test]
fn a_body_slower_than_the_body_timeout_is_408() {
    let config = Config { body_timeout: 0.3, ..Config::default() };
    let server = TestServer::start(&tiny_model(), Options::default(), config);
    let stalled = Stalled::start(server.addr, "/embed", &embed_body(&["never finished"]));
    stalled.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stalled.reply().assert_error(408, "the request body took more than 0.3 s to arrive");
    assert_eq!(server.wait_for_metric("llm2vec_requests_in_flight", |v| v == 0.0), 0.0);
    server.assert_healthy();
}

#[test]
fn a_client_that_disconnects_has_its_queued_work_dropped() {
    // One full-length input per batch, so a 64-input request keeps the inference thread busy a while.
    let config = Config { max_batch_tokens: Some(512), max_client_batch_size: 64, ..Config::default() };
    let server = Arc::new(TestServer::start(&tiny_model(), Options::default(), config));
    let long = "the quick brown fox jumps over the lazy dog ".repeat(40);
    let busy = {
        let server = server.clone();
        let body = json!({"inputs": vec![long; 64], "truncate": true}).to_string();
        std::thread::spawn(move || {
            let start = Instant::now();
            (server.post("/embed", body.as_bytes()).status, start.elapsed())
        })
    };
    server.wait_for_metric("llm2vec_batch_size_count", |v| v >= 1.0);
    // The victim queues 8 inputs behind the busy request, then hangs up.
    let mut victim = TcpStream::connect(server.addr).unwrap();
    let body = embed_body(&["gone 1", "gone 2", "gone 3", "gone 4", "gone 5", "gone 6", "gone 7", "gone 8"]);
    victim.write_all(head("POST", "/embed", body.len()).as_bytes()).unwrap();
    victim.write_all(&body).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    drop(victim);
    let (status, elapsed) = busy.join().unwrap();
    assert_eq!(status, 200);
    let dropped = server.wait_for_metric("llm2vec_dropped_inputs_total", |v| v == 8.0);
    let ran = server.metric("llm2vec_batch_size_sum");
    eprintln!("busy request took {elapsed:?}; dropped {dropped}, ran {ran} inputs");
    assert_eq!(ran, 64.0, "none of the victim's inputs was run");
    assert_eq!(dropped, 8.0);
    assert_eq!(server.metric("llm2vec_queue_size"), 0.0);
    server.assert_healthy();
}

#[test]
fn shutdown_finishes_requests_in_flight_and_refuses_new_ones() {
    let encoder = Arc::new(Encoder::from_pretrained(&tiny_model(), Options::default()).unwrap());
    let mut server = TestServer::start_with(encoder.clone(), Config::default());
    let addr = server.addr;
    let in_flight = Stalled::start(addr, "/embed", &embed_body(&["started before the signal"]));
    server.wait_for_metric("llm2vec_requests_in_flight", |v| v == 1.0);
    server.signal_shutdown();
    let start = Instant::now();
    while TcpStream::connect(addr).is_ok() {
        assert!(start.elapsed() < Duration::from_secs(5), "still accepting connections after the signal");
        std::thread::sleep(Duration::from_millis(5));
    }
    let reply = in_flight.finish();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let expected = common::library(&encoder, &[llm2vec::Input::text("started before the signal")], true);
    common::assert_rows_match(&common::float_rows(reply.json().as_array().unwrap()), &expected);
    server.stop().expect("serve returns cleanly");
}

#[test]
fn settings_that_cannot_work_are_refused_at_start() {
    let encoder = Arc::new(Encoder::from_pretrained(&tiny_model(), Options::default()).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = Config { max_batch_tokens: Some(100), ..Config::default() };
        llm2vec_server::serve(listener, encoder, "m".into(), config, std::future::pending()).await
    });
    match result {
        Err(ServerError::Config(msg)) => {
            assert!(msg.contains("--max-batch-tokens (100) must be at least the model's max_length (512)"));
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}
