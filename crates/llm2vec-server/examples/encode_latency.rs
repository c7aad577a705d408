//! Offline single-encode latency, for the load test's concurrency-1 probe (`scripts/loadtest`): loads a model
//! as `llm2vec encode` does, prints `ready`, then for each line of stdin encodes that text alone with
//! `Encoder::encode` and prints the seconds it took. The probe alternates these with served requests so both
//! see the same machine load.
//!
//! ```text
//! cargo run --release -p llm2vec-server --example encode_latency -- MODEL
//! ```

use std::io::{BufRead, Write};
use std::time::Instant;

use llm2vec::{Encoder, Input, Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = std::env::args().nth(1).ok_or("usage: encode_latency MODEL")?;
    let encoder = Encoder::from_pretrained(&model, Options::default())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let input = Input::text(line?);
        let start = Instant::now();
        encoder.encode(std::slice::from_ref(&input))?;
        writeln!(out, "{}", start.elapsed().as_secs_f64())?;
        out.flush()?;
    }
    Ok(())
}
