//! Atomic writes: a symlink planted where a temporary file used to be named does not redirect the write,
//! and only the temporary files of killed writes are cleaned up.

use llm2vec::fs::{remove_stale_temps, write_atomic};

#[cfg(unix)]
#[test]
fn a_symlink_at_a_temporary_name_is_not_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    let pid = std::process::id();
    for name in [format!(".out.json.tmp{pid}"), format!(".out.json.tmp-{pid}-0")] {
        std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
    }
    let out = dir.path().join("out.json");
    write_atomic(&out, b"new").unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(!std::fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "new");
}

#[test]
fn stale_temporary_files_are_removed_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let stale = [".adapter_model.safetensors.0123456789abcdef.tmp", ".metrics.jsonl.tmp4242"];
    let kept = [
        "adapter_model.safetensors",
        ".hidden",
        "notes.tmp",
        ".notes.tmp",
        ".x.0123456789abcdef.tmp.bak",
        ".x.tmpfile",
    ];
    for name in stale.iter().chain(&kept) {
        std::fs::write(dir.path().join(name), "x").unwrap();
    }
    std::fs::create_dir(dir.path().join(".folder.0123456789abcdef.tmp")).unwrap();
    write_atomic(&dir.path().join("fresh.json"), b"{}").unwrap();
    let mut removed = remove_stale_temps(dir.path()).unwrap();
    removed.sort();
    let mut expected: Vec<_> = stale.iter().map(|n| dir.path().join(n)).collect();
    expected.sort();
    assert_eq!(removed, expected);
    for name in kept.iter().chain(&[".folder.0123456789abcdef.tmp", "fresh.json"]) {
        assert!(dir.path().join(name).exists(), "{name}");
    }
    assert!(remove_stale_temps(&dir.path().join("missing")).unwrap().is_empty());
}
