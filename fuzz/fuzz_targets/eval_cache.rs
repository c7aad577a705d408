//! `llm2vec_eval::cache::Cache::open` on a cache folder holding one fuzzed shard. The shard reader is only
//! reachable through a folder, so each input is written to `<fingerprint dir>/shard.bin` under
//! `/dev/shm/llm2vec-fuzz-cache-<pid>/` first. An accepted shard must serve every one of its keys with a row
//! of its width.

#![no_main]

#[path = "common.rs"]
mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use llm2vec_eval::cache::{Cache, Key};

const FINGERPRINT: &str = "fuzz";

/// The cache root and the fingerprint's folder in it (made by a first `open`).
fn dirs() -> &'static (PathBuf, PathBuf) {
    static DIRS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    DIRS.get_or_init(|| {
        let root = PathBuf::from(format!("/dev/shm/llm2vec-fuzz-cache-{}", std::process::id()));
        let cache = Cache::open(&root, FINGERPRINT, &serde_json::json!({})).expect("an empty cache opens");
        let dir = cache.dir().to_path_buf();
        (root, dir)
    })
}

fuzz_target!(|data: &[u8]| {
    let (root, dir) = dirs();
    std::fs::write(dir.join("shard.bin"), data).expect("write the shard");
    let cache = match Cache::open(root, FINGERPRINT, &serde_json::json!({})) {
        Ok(c) => c,
        Err(e) => {
            debug!("rejected: {e}");
            return;
        }
    };
    // Accepted: the header is whole and the sizes add up; every key gives a row of `dim` values.
    let dim = u32::from_le_bytes(data[8..12].try_into().unwrap()) as usize;
    let count = u32::from_le_bytes(data[12..16].try_into().unwrap()) as usize;
    debug!("accepted: {count} rows of {dim}, {} distinct keys", cache.len());
    assert!(cache.len() <= count);
    for k in data[16..16 + count * 32].chunks_exact(32) {
        let key: Key = k.try_into().unwrap();
        assert_eq!(cache.get(&key).map(<[f32]>::len), Some(dim));
    }
});
