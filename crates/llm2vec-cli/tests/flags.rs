//! The command refuses bad flags and outputs at once, before loading a model or encoding anything, and
//! never writes embeddings that are not finite. Each run is bounded in time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../llm2vec/tests/common/safetensors_edit.rs"]
mod safetensors_edit;
use safetensors_edit::fill_tensor;

/// A model name that resolves nowhere: a run that gets as far as loading fails on it.
const NO_MODEL: &str = "no-such-model-anywhere";

/// Runs `llm2vec args` (killed after 60 s) and returns its exit code and stderr.
fn run(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_llm2vec"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("llm2vec {args:?} still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn texts(dir: &Path) -> PathBuf {
    let path = dir.join("in.txt");
    std::fs::write(&path, "a man is playing a flute .\na woman is slicing an onion .\n").unwrap();
    path
}

fn encode(model: &str, input: &Path, output: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut args =
        vec!["encode", "--model", model, "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn output_is_checked_before_the_model_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let input = texts(dir.path());
    let (code, err) = encode(NO_MODEL, &input, &dir.path().join("missing/out.npy"), &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("missing/out.npy") && err.contains("does not exist") && !err.contains(NO_MODEL), "{err}");
    let (code, err) = encode(NO_MODEL, &input, &dir.path().join("out.csv"), &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("out.csv") && err.contains(".npy or .jsonl") && !err.contains(NO_MODEL), "{err}");
}

#[test]
fn out_of_range_flags_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let input = texts(dir.path());
    let output = dir.path().join("out.npy");
    let cases: [(&[&str], &str, &str); 6] = [
        (&["--batch-size", "0"], "--batch-size", "at least 1"),
        (&["--max-batch-tokens", "0"], "--max-batch-tokens", "at least 1"),
        (&["--doc-max-length", "0"], "--doc-max-length", "at least 1"),
        (&["--max-length", "1"], "--max-length", "at least 2"),
        (&["--threads", "0"], "--threads", "at least 1"),
        (&["--threads", "100000"], "--threads", "at most"),
    ];
    for (flags, flag, want) in cases {
        let (code, err) = encode(NO_MODEL, &input, &output, flags);
        assert_eq!(code, Some(2), "{flags:?}: {err}");
        assert!(err.contains(flag) && err.contains(want), "{flags:?}: {err}");
    }
    let (code, err) = run(&["train", "mntp", "config.json", "--threads", "100000"]);
    assert!(code == Some(2) && err.contains("--threads") && err.contains("at most"), "{err}");
}

/// A model whose activations overflow: the command fails and writes no file.
#[test]
fn embeddings_that_are_not_finite_are_not_written() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../llm2vec/tests/fixtures/parity/llama/model");
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for entry in std::fs::read_dir(fixture).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, model.join(path.file_name().unwrap())).unwrap();
    }
    fill_tensor(&model.join("model.safetensors"), "model.norm.weight", f32::MAX);
    let output = dir.path().join("out.npy");
    let (code, err) = encode(model.to_str().unwrap(), &texts(dir.path()), &output, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("NaN or infinite"), "{err}");
    assert!(!output.exists());
}

/// The library's names are the command's values: each is accepted (the run gets as far as loading the model),
/// anything else is refused with the list; a device is `cpu`, `cuda` or `cuda:N`, as in Python.
#[test]
fn enum_flags_take_the_library_names() {
    let dir = tempfile::tempdir().unwrap();
    let input = texts(dir.path());
    let output = dir.path().join("out.npy");
    let accepted: [&[&str]; 9] = [
        &["--pooling", "mean"],
        &["--pooling", "weighted_mean"],
        &["--pooling", "eos_token"],
        &["--pooling", "last_token"],
        &["--pooling", "bos_token"],
        &["--attention", "causal"],
        &["--attention", "bidirectional"],
        &["--dtype", "bf16"],
        &["--dtype", "q8", "--threads", "1"],
    ];
    for flags in accepted {
        let (code, err) = encode(NO_MODEL, &input, &output, flags);
        assert!(code == Some(1) && err.contains(NO_MODEL), "{flags:?}: {err}");
    }
    let refused: [(&[&str], &str); 4] = [
        (&["--pooling", "max"], "mean, weighted_mean, eos_token, last_token, bos_token"),
        (&["--pooling", "weighted-mean"], "mean, weighted_mean, eos_token, last_token, bos_token"),
        (&["--attention", "sideways"], "bidirectional, causal"),
        (&["--dtype", "float32"], "f32, bf16, f16, q8"),
    ];
    for (flags, values) in refused {
        let (code, err) = encode(NO_MODEL, &input, &output, flags);
        assert!(code == Some(2) && err.contains(flags[0]) && err.contains(values), "{flags:?}: {err}");
    }
    for device in ["cpu:7", "gpu", "cuda:x"] {
        let (code, err) = encode(NO_MODEL, &input, &output, &["--device", device]);
        assert!(code == Some(1) && err.contains(&format!("device `{device}`")) && !err.contains(NO_MODEL), "{err}");
    }
    let (code, err) = run(&["train", "sim-cse", "config.json"]);
    assert!(code == Some(2) && err.contains("mntp, simcse, supervised"), "{err}");
    let (code, err) = run(&["--threads", "1", "train", "simcse", "no-such-config.json"]);
    assert!(code == Some(1) && err.contains("no-such-config.json"), "{err}");
}

/// The recipe needs its data folder named: no default points into a checkout.
#[test]
fn recipe_needs_a_data_dir() {
    let (code, err) = run(&["recipe", "--quick"]);
    assert!(code == Some(2) && err.contains("--data-dir"), "{err}");
}
