//! `encode` draws a progress line on stderr when stderr is a terminal, and nothing of it otherwise.

use std::path::Path;
use std::process::Command;

fn tiny_model() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../llm2vec/tests/fixtures/parity/llama/model");
    path.to_str().unwrap().to_string()
}

fn encode_args(dir: &Path) -> Vec<String> {
    let input = dir.join("in.txt");
    std::fs::write(&input, "a man is playing a flute .\na woman is slicing an onion .\n").unwrap();
    let output = dir.join("out.npy");
    ["encode", "--model", &tiny_model(), "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()]
        .map(String::from)
        .into()
}

#[test]
fn no_progress_line_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llm2vec")).args(encode_args(dir.path())).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("encoded 2 inputs") && !err.contains('\r') && !err.contains("tokens/s"), "{err:?}");
    assert!(err.contains(&format!("[f32, cpu, {} kernels]", llm2vec::cpu_kernels())), "{err:?}");
}

/// Runs the command under `script`, which gives it a terminal; skipped where `script` is missing.
#[test]
fn progress_line_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let command = std::iter::once(env!("CARGO_BIN_EXE_llm2vec").to_string())
        .chain(encode_args(dir.path()))
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let Ok(out) = Command::new("script").args(["-qec", &command, "/dev/null"]).output() else {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("\r2/2 texts, ") && text.contains(" tokens/s, ") && text.contains(" left"), "{text:?}");
}
