//! The reproducers the fuzz targets found or were written to reach, kept in `fuzz/regressions/<target>/` and
//! replayed by each crate's `tests/fuzz_regressions.rs`.

use std::path::{Path, PathBuf};

/// The reproducer files of fuzz target `target`, in name order (at least one).
pub fn regressions(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty(), "no reproducers in {}", dir.display());
    files
}
