//! Hostile and idle connections over loopback: a head sent too slowly, connections left idle, more
//! connections than --max-connections, a shutdown while idle, half-sent and stalled clients hold connections,
//! and `Expect: 100-continue` with a body over the limit. Short timeouts keep each test within seconds.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{head, read_reply, tiny_model, KeepAlive, TestServer};
use llm2vec::Options;
use llm2vec_server::Config;
use serde_json::json;

fn start(config: Config) -> TestServer {
    TestServer::start(&tiny_model(), Options::default(), config)
}

/// Whether the server closes `stream` within `limit` (reading and discarding whatever it sends first).
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut sink = [0u8; 1024];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return false,
            Err(_) => return true,
        }
    }
}

const SLOW: Duration = Duration::from_secs(5);

#[test]
fn a_head_sent_too_slowly_is_disconnected_after_the_header_timeout() {
    let server = start(Config { header_timeout: 0.3, keep_alive_timeout: 30.0, ..Config::default() });
    let start = Instant::now();
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
    assert!(closed_within(&mut slow, SLOW), "a half-sent head kept its connection open");
    assert!(start.elapsed() >= Duration::from_millis(300));
    server.assert_healthy();
}

#[test]
fn idle_connections_are_closed_after_the_keep_alive_timeout() {
    let server = start(Config { keep_alive_timeout: 0.3, header_timeout: 30.0, ..Config::default() });
    let mut silent = TcpStream::connect(server.addr).unwrap();
    let mut used = KeepAlive::connect(server.addr);
    assert_eq!(used.get("/health").status, 200);
    assert!(closed_within(&mut silent, SLOW), "a connection that never sent a byte stayed open");
    assert!(closed_within(&mut used.stream, SLOW), "an idle keep-alive connection stayed open");
    server.assert_healthy();
}

#[test]
fn connections_beyond_the_limit_wait_while_open_ones_are_served() {
    let server = start(Config { max_connections: 2, ..Config::default() });
    let mut first = KeepAlive::connect(server.addr);
    let mut second = KeepAlive::connect(server.addr);
    assert_eq!(first.get("/health").status, 200);
    assert_eq!(second.get("/health").status, 200);
    let mut third = KeepAlive::connect(server.addr);
    third.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    third.send_get("/health");
    let early = third.read();
    assert!(early.is_err(), "a connection beyond --max-connections was served: {early:?}");
    assert_eq!(first.get("/health").status, 200, "open connections keep being served");
    drop(second);
    third.stream.set_read_timeout(Some(SLOW)).unwrap();
    assert_eq!(third.read().expect("served once a slot is free").status, 200);
}

#[test]
fn shutdown_ends_within_the_drain_timeout_whatever_clients_hold() {
    let config = Config {
        drain_timeout: 0.5,
        header_timeout: 30.0,
        keep_alive_timeout: 30.0,
        body_timeout: 30.0,
        request_timeout: 30.0,
        ..Config::default()
    };
    let server = start(config);
    let _silent = TcpStream::connect(server.addr).unwrap();
    let mut kept = KeepAlive::connect(server.addr);
    assert_eq!(kept.get("/health").status, 200);
    let mut half_head = TcpStream::connect(server.addr).unwrap();
    half_head.write_all(b"POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
    let body = json!({"inputs": ["never finished"]}).to_string();
    let mut half_body = TcpStream::connect(server.addr).unwrap();
    half_body.write_all(head("POST", "/embed", body.len()).as_bytes()).unwrap();
    half_body.write_all(&body.as_bytes()[..body.len() / 2]).unwrap();
    server.wait_for_metric("llm2vec_requests_in_flight", |v| v == 1.0);
    let start = Instant::now();
    let (done, stopped) = mpsc::channel();
    std::thread::spawn(move || done.send(server.stop()));
    let result = stopped.recv_timeout(SLOW).expect("the server did not stop within 5 s");
    result.expect("serve returns cleanly");
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(500), "the request in flight had its drain time ({elapsed:?})");
    assert!(elapsed < Duration::from_secs(3), "shutdown took {elapsed:?}");
    for stream in [&mut kept.stream, &mut half_head, &mut half_body] {
        assert!(closed_within(stream, SLOW), "a connection outlived the server");
    }
}

#[test]
fn expect_continue_over_the_body_limit_is_413_without_100() {
    let server = start(Config { max_body_bytes: 1024, ..Config::default() });
    let expect = |length: usize| {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream.set_read_timeout(Some(SLOW)).unwrap();
        let head = head("POST", "/embed", length);
        let head = format!("{}Expect: 100-continue\r\n\r\n", head.strip_suffix("\r\n").unwrap());
        stream.write_all(head.as_bytes()).unwrap();
        stream
    };
    let mut refused = expect(1_000_000);
    let reply = read_reply(&mut refused);
    reply.assert_error(413, "request body is larger than the limit of 1024 bytes");
    // Within the limit, the client is told to go on and its request is served.
    let body = json!({"inputs": ["sent after 100 Continue"]}).to_string();
    let mut accepted = expect(body.len());
    let mut interim = [0u8; 25];
    accepted.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    accepted.write_all(body.as_bytes()).unwrap();
    assert_eq!(read_reply(&mut accepted).status, 200);
}
