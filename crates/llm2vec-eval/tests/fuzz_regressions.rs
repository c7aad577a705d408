//! Shards the `eval_cache` fuzz target (fuzz/) found or was written to reach, in fuzz/regressions/eval_cache/:
//! a cache folder holding one of them must fail to open with an error that names the shard, without a panic.

use llm2vec_eval::cache::Cache;
use llm2vec_eval::Error;

#[path = "../../llm2vec/tests/common/regressions.rs"]
mod regressions;
use regressions::regressions;

/// Opens a cache whose folder holds `shard` as `shard.bin`.
fn open_with(shard: &[u8]) -> (tempfile::TempDir, llm2vec_eval::Result<Cache>) {
    let root = tempfile::tempdir().unwrap();
    let dir = Cache::open(root.path(), "fp", &serde_json::json!({})).unwrap().dir().to_path_buf();
    std::fs::write(dir.join("shard.bin"), shard).unwrap();
    let opened = Cache::open(root.path(), "fp", &serde_json::json!({}));
    (root, opened)
}

#[test]
fn hostile_shards_are_errors_that_name_the_shard() {
    for path in regressions("eval_cache") {
        let (_root, opened) = open_with(&std::fs::read(&path).unwrap());
        match opened {
            Err(Error::Cache { path: at, msg }) => {
                assert!(at.ends_with("shard.bin"), "{}: {}", path.display(), at.display());
                eprintln!("{}: {msg}", path.display());
            }
            Err(e) => panic!("{}: not a cache error: {e}", path.display()),
            Ok(_) => panic!("{}: accepted", path.display()),
        }
    }
}

/// A header claiming u32::MAX rows of u32::MAX values: the expected size is computed without overflow (it used
/// to overflow usize: a panic with overflow checks, a wrong size in the message without).
#[test]
fn a_huge_header_reports_its_true_expected_size() {
    let mut shard = b"L2VEMB1\n".to_vec();
    shard.extend_from_slice(&u32::MAX.to_le_bytes());
    shard.extend_from_slice(&u32::MAX.to_le_bytes());
    let (_root, opened) = open_with(&shard);
    let msg = opened.err().expect("refused").to_string();
    let expected = 16 + u32::MAX as u128 * (32 + 4 * u32::MAX as u128);
    assert!(msg.contains(&format!("16 bytes, expected {expected} for 4294967295 rows of 4294967295")), "{msg}");
}
