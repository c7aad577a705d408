//! Test harness: the real server on a loopback port (in-process, on its own runtime thread), a raw
//! HTTP/1.1 client over `TcpStream` (so tests can also send broken bytes, stall or hang up), and helpers to
//! compare served embeddings with `Encoder::encode`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use llm2vec::{Embeddings, Encoder, Input, Options};
use llm2vec_server::{Config, ServerError};
use serde_json::Value;
use tokio::sync::oneshot;

#[path = "../../../llm2vec/tests/common/files.rs"]
mod files;

/// The tiny random Llama of the parity fixtures (hidden size 32): loads and runs in milliseconds.
pub fn tiny_model() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../llm2vec/tests/fixtures/parity/llama/model");
    dir.to_string_lossy().into_owned()
}

/// The default model's GGUF, or None (with a note) when it has not been fetched.
pub fn default_model() -> Option<String> {
    let path: PathBuf = llm2vec::load::models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    files::available(&path, "run scripts/fetch-default-model.sh").then(|| path.to_string_lossy().into_owned())
}

pub const MODEL_NAME: &str = "test-model";

/// A server running in this process on 127.0.0.1 with an OS-chosen port.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    pub fn start(model: &str, options: Options, config: Config) -> Self {
        let encoder = Arc::new(Encoder::from_pretrained(model, options).expect("model loads"));
        Self::start_with(encoder, config)
    }

    pub fn start_with(encoder: Arc<Encoder>, config: Config) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let shutdown = async move {
                    let _ = rx.await;
                };
                llm2vec_server::serve(listener, encoder, MODEL_NAME.to_string(), config, shutdown).await
            })
        });
        Self { addr, shutdown: Some(tx), thread: Some(thread) }
    }

    /// Sends the shutdown signal without waiting.
    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Signals shutdown and waits for `serve` to return.
    pub fn stop(mut self) -> Result<(), ServerError> {
        self.signal_shutdown();
        self.thread.take().unwrap().join().expect("server thread")
    }

    pub fn post(&self, path: &str, body: &[u8]) -> Reply {
        request(self.addr, "POST", path, body)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.post(path, body.to_string().as_bytes())
    }

    pub fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, b"")
    }

    /// The value of an unlabelled metric in /metrics.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").text();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} not in:\n{text}"))
    }

    /// Waits (up to 10 s) until `metric` satisfies `ok`.
    pub fn wait_for_metric(&self, name: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let start = Instant::now();
        loop {
            let value = self.metric(name);
            if ok(value) || start.elapsed() > Duration::from_secs(10) {
                return value;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn assert_healthy(&self) {
        let reply = self.get("/health");
        assert_eq!((reply.status, reply.json()["status"].as_str()), (200, Some("ok")));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.signal_shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Status, headers (lower-cased names) and body of one HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Asserts an error reply: this status, a JSON body `{"error": {"message", "type", "code"}}` whose message
    /// contains `needle`.
    pub fn assert_error(&self, status: u16, needle: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        let body = self.json();
        let message = body["error"]["message"].as_str().unwrap_or_else(|| panic!("no error message: {body}"));
        assert!(message.contains(needle), "message {message:?} lacks {needle:?}");
        assert_eq!(body["error"]["code"], status);
        assert!(body["error"]["type"].is_string());
    }
}

/// The request head for `body_len` bytes of body.
pub fn head(method: &str, path: &str, body_len: usize) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {body_len}\r\nConnection: close\r\n\r\n"
    )
}

/// One request on a fresh connection. Write errors are ignored (a server may answer and close before
/// reading a body it refuses); the reply is whatever comes back.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let _ = stream.write_all(head(method, path, body.len()).as_bytes()).and_then(|()| stream.write_all(body));
    read_reply(&mut stream)
}

/// Reads a whole `Connection: close` response.
pub fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply { status, headers, body: raw[split + 4..].to_vec() }
}

/// `Encoder::encode` of the same inputs, optionally L2-normalised: what the server must return.
pub fn library(encoder: &Encoder, inputs: &[Input], normalize: bool) -> Embeddings {
    let mut e = encoder.encode(inputs).expect("library encode");
    if normalize {
        e.normalize();
    }
    e
}

/// Max |a - b| over max |b|: batching differs between server and library, so rows agree to rounding.
pub fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dimension");
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max) / scale
}

pub fn assert_rows_match(served: &[Vec<f32>], expected: &Embeddings) {
    assert_eq!(served.len(), expected.rows, "rows");
    for (i, row) in served.iter().enumerate() {
        let d = rel_diff(row, expected.row(i));
        assert!(d < 1e-4, "row {i}: relative difference {d}");
    }
}

/// JSON arrays of numbers as rows.
pub fn float_rows(values: &[Value]) -> Vec<Vec<f32>> {
    values.iter().map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()).collect()
}

/// Decodes an OpenAI base64 embedding (little-endian float32).
pub fn base64_row(text: &str) -> Vec<f32> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).expect("base64");
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// The embeddings of an OpenAI response, whatever their encoding.
pub fn openai_rows(body: &Value) -> Vec<Vec<f32>> {
    body["data"]
        .as_array()
        .expect("data")
        .iter()
        .enumerate()
        .map(|(i, item)| {
            assert_eq!((item["object"].as_str(), item["index"].as_u64()), (Some("embedding"), Some(i as u64)));
            match &item["embedding"] {
                Value::String(s) => base64_row(s),
                Value::Array(values) => values.iter().map(|v| v.as_f64().unwrap() as f32).collect(),
                other => panic!("embedding is {other}"),
            }
        })
        .collect()
}

pub fn norm(row: &[f32]) -> f32 {
    row.iter().map(|v| v * v).sum::<f32>().sqrt()
}
