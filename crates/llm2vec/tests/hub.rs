//! Hub ids: downloaded from an endpoint (here a loopback server standing in for the hub), cached, and a
//! clear error, at once, when offline or unreachable. One test, because it sets process-wide variables.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Instant;

use llm2vec::{Encoder, Input, Options};

fn fixture_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/llama/model")
}

/// Serves `root/<file>` for `GET /tiny-org/tiny-llama/resolve/main/<file>`; 404 otherwise. Returns the port.
fn serve(root: PathBuf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let body = path
                .strip_prefix("/tiny-org/tiny-llama/resolve/main/")
                .and_then(|file| std::fs::read(root.join(file)).ok());
            let head = match &body {
                Some(b) => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len()),
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
            };
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_deref().unwrap_or_default());
        }
    });
    port
}

fn load_err(spec: &str) -> String {
    match Encoder::from_pretrained(spec, Options::default()) {
        Ok(_) => panic!("{spec} loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn hub_ids_download_cache_and_fail_clearly() {
    let cache = tempfile::tempdir().unwrap();
    std::env::set_var("HF_HUB_CACHE", cache.path().join("hf"));
    std::env::set_var("LLM2VEC_MODELS_DIR", cache.path().join("models"));

    std::env::set_var("HF_HUB_OFFLINE", "1");
    let msg = load_err("tiny-org/tiny-llama");
    assert!(msg.contains("HF_HUB_OFFLINE forbids downloading"), "{msg}");
    std::env::remove_var("HF_HUB_OFFLINE");

    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::env::set_var("HF_ENDPOINT", format!("http://127.0.0.1:{closed}"));
    let start = Instant::now();
    let msg = load_err("tiny-org/tiny-llama");
    assert!(msg.contains("cannot download `tiny-org/tiny-llama`"), "{msg}");
    assert!(start.elapsed().as_secs() < 15, "an unreachable hub took {:?}", start.elapsed());

    std::env::set_var("HF_ENDPOINT", format!("http://127.0.0.1:{}", serve(fixture_model())));
    let inputs = [Input::new("Retrieve semantically similar text:", "a man is playing a flute .")];
    let from_hub =
        Encoder::from_pretrained("tiny-org/tiny-llama", Options::default()).unwrap().encode(&inputs).unwrap();
    let from_dir = Encoder::from_pretrained(fixture_model().to_str().unwrap(), Options::default())
        .unwrap()
        .encode(&inputs)
        .unwrap();
    assert_eq!(from_hub.data, from_dir.data);
    assert!(llm2vec::load::hub::download_dir("tiny-org/tiny-llama").join(".complete").is_file());

    std::env::set_var("HF_HUB_OFFLINE", "1");
    assert!(Encoder::from_pretrained("tiny-org/tiny-llama", Options::default()).is_ok(), "the download is cached");
    let msg = load_err("tiny-org/missing-model");
    assert!(msg.contains("not in the Hugging Face cache"), "{msg}");
}
