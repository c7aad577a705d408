//! The Rust side of the encode benchmark (`scripts/bench/run-encode-bench.sh`): loads a model, encodes the
//! inputs of a text or JSONL file exactly as `llm2vec encode` does, writes the `.npy` and prints one JSON
//! line of measurements on stdout.
//!
//! ```text
//! cargo run --release -p llm2vec --example bench_encode -- --model DIR_OR_GGUF --input texts.jsonl \
//!     --output out.npy [--threads N] [--batch-size 32] [--dtype f32|q8] [--load-only]
//! ```
//!
//! Fields: `load_s` (model load), `encode_s` (the `Encoder::encode` call alone), `tokenize_s` (tokenizing
//! all inputs again after the timed call, to show its share), `tokens` (real tokens, padding excluded),
//! `padded_tokens` (rows x longest row, summed over the batches `encode` forms), `cpu_s` (user + system CPU
//! time of the process during `encode`, in clock ticks converted with `clk_tck`), `peak_rss_load_kb`
//! (VmHWM after loading), `rss_after_load_kb` (VmRSS), `peak_rss_encode_kb` (VmHWM during `encode`: the
//! high-water mark is reset through `/proc/self/clear_refs` after loading, when the kernel allows it;
//! `hwm_reset` says whether it did) and `peak_rss_kb` (the larger of the two peaks).

use std::path::PathBuf;
use std::time::Instant;

use llm2vec::{io, Encoder, Options, Pooling};

struct Args {
    model: String,
    input: Option<PathBuf>,
    output: Option<PathBuf>,
    threads: Option<usize>,
    batch_size: usize,
    quantize: bool,
    load_only: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: bench_encode --model MODEL --input FILE --output FILE.npy [--threads N] [--batch-size N] [--dtype f32|q8] [--load-only]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        model: String::new(),
        input: None,
        output: None,
        threads: None,
        batch_size: 32,
        quantize: false,
        load_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--model" => args.model = value(),
            "--input" => args.input = Some(value().into()),
            "--output" => args.output = Some(value().into()),
            "--threads" => args.threads = Some(value().parse().unwrap_or_else(|_| usage())),
            "--batch-size" => args.batch_size = value().parse().unwrap_or_else(|_| usage()),
            "--dtype" => {
                args.quantize = match value().as_str() {
                    "f32" => false,
                    "q8" => true,
                    _ => usage(),
                }
            }
            "--load-only" => args.load_only = true,
            _ => usage(),
        }
    }
    if args.model.is_empty() || (!args.load_only && (args.input.is_none() || args.output.is_none())) {
        usage()
    }
    args
}

/// A `kB` field of `/proc/self/status` (VmHWM, VmRSS), 0 where unreadable.
fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// utime + stime of this process in clock ticks (`/proc/self/stat` fields 14 and 15).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) is parenthesised and may hold spaces: count fields after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')' come field 3 (state) onwards, so field n sits at index n - 3.
    let get = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(14) + get(15)
}

/// Resets VmHWM to the current RSS (Linux >= 4.0); false where the kernel refuses.
fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn main() -> llm2vec::Result<()> {
    let args = parse_args();
    if let Some(n) = args.threads {
        llm2vec::set_num_threads(n);
    }
    let inputs = match &args.input {
        Some(path) if !args.load_only => io::read_inputs(path, "")?,
        _ => Vec::new(),
    };

    let start = Instant::now();
    let options = Options {
        pooling: Some(Pooling::Mean),
        batch_size: args.batch_size,
        quantize: args.quantize,
        ..Options::default()
    };
    let encoder = Encoder::from_pretrained(&args.model, options)?;
    let load_s = start.elapsed().as_secs_f64();
    let peak_load = status_kb("VmHWM");
    let rss_after_load = status_kb("VmRSS");
    let threads = candle_core::utils::get_num_threads();

    let mut out = serde_json::json!({
        "model": args.model,
        "threads": threads,
        "batch_size": args.batch_size,
        "dtype": if args.quantize { "q8" } else { "f32" },
        "load_s": load_s,
        "peak_rss_load_kb": peak_load,
        "rss_after_load_kb": rss_after_load,
        "dim": encoder.dim(),
    });

    if !args.load_only {
        let hwm_reset = reset_hwm();
        let cpu0 = cpu_ticks();
        let start = Instant::now();
        let embeddings = encoder.encode(&inputs)?;
        let encode_s = start.elapsed().as_secs_f64();
        let cpu_ticks_encode = cpu_ticks() - cpu0;
        let peak_encode = status_kb("VmHWM");

        // Untimed extras: tokenizing alone, and the padding `encode`'s length-sorted batches carry.
        let start = Instant::now();
        let mut lengths = Vec::with_capacity(inputs.len());
        for input in &inputs {
            lengths.push(encoder.tokenize(input)?.ids.len());
        }
        let tokenize_s = start.elapsed().as_secs_f64();
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        let padded: usize = lengths.chunks(args.batch_size.max(1)).map(|c| c[0] * c.len()).sum();

        io::write_embeddings(args.output.as_ref().expect("checked in parse_args"), &embeddings)?;
        let extra = serde_json::json!({
            "sentences": embeddings.rows,
            "tokens": embeddings.tokens,
            "padded_tokens": padded,
            "max_tokens": lengths.first().copied().unwrap_or(0),
            "truncated": embeddings.truncated.len(),
            "encode_s": encode_s,
            "tokenize_s": tokenize_s,
            "cpu_ticks": cpu_ticks_encode,
            "hwm_reset": hwm_reset,
            "peak_rss_encode_kb": peak_encode,
            "peak_rss_kb": peak_load.max(peak_encode),
        });
        for (k, v) in extra.as_object().expect("object") {
            out[k] = v.clone();
        }
    } else {
        out["peak_rss_kb"] = peak_load.into();
    }
    println!("{out}");
    Ok(())
}
