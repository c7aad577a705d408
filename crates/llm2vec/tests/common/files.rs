//! Model files the tests read. `scripts/test.sh` fetches them and sets `LLM2VEC_REQUIRE_TEST_FILES`, so there
//! (and in CI) a missing file fails the test, and a broken fetch cannot pass as skipped tests; a plain
//! `cargo test` skips such tests with a note.

use std::path::Path;

/// Whether `path` exists; when it does not, panics if `LLM2VEC_REQUIRE_TEST_FILES` is set, else prints
/// that the test is skipped and how to get the file (`how`).
pub fn available(path: &Path, how: &str) -> bool {
    if path.exists() {
        return true;
    }
    let missing = format!("{} is absent ({how})", path.display());
    assert!(
        std::env::var_os("LLM2VEC_REQUIRE_TEST_FILES").is_none(),
        "{missing}, and LLM2VEC_REQUIRE_TEST_FILES is set"
    );
    eprintln!("skipped: {missing}");
    false
}
