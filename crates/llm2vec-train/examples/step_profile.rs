//! Times the phases of one training step (inference forward for comparison; forward with graph; forward +
//! backward; optimizer update) on
//! random token ids, and the resident memory after each, for profiling the training ops:
//!
//!     cargo run --release -p llm2vec-train --example step_profile -- [model] [batch] [seq] [checkpoint: 0|1]

use std::time::Instant;

use candle_core::DType;
use llm2vec::model::{AttentionMode, Pass, Projection};
use llm2vec::{Encoder, Options};
use llm2vec_train::backprop::{loss_and_grads, Batch};
use llm2vec_train::lora::{LoraModel, LoraSettings};
use llm2vec_train::optim::AdamW;
use llm2vec_train::rng::Rng;

fn rss_mb() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    pages * 4096.0 / 1e6
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model = args.get(1).map_or("smollm2-135m-instruct", String::as_str);
    let batch: usize = args.get(2).map_or(Ok(8), |s| s.parse())?;
    let seq: usize = args.get(3).map_or(Ok(128), |s| s.parse())?;
    let checkpoint = args.get(4).is_some_and(|s| s == "1");
    let encoder = Encoder::from_pretrained(model, Options { dtype: DType::F32, ..Options::default() })?;
    let backbone = encoder.backbone();
    let settings = LoraSettings { r: 16, lora_alpha: 32.0, lora_dropout: 0.05 };
    let lora = LoraModel::new(&backbone.sites(), &Projection::ALL, &settings, 1, backbone.dtype(), backbone.device())?;
    let mut optimizer = AdamW::new(&lora.vars(), Default::default())?;
    let mut rng = Rng::new(3);
    let ids: Vec<u32> = (0..batch * seq).map(|_| rng.below(1000) as u32 + 100).collect();
    let rows: Vec<&[u32]> = ids.chunks(seq).collect();
    println!("loaded: {:.0} MB", rss_mb());
    for round in 0..3u64 {
        let batch = Batch::new(&rows, backbone.device())?;
        lora.set_rng(Some(Rng::new(round)));
        let start = Instant::now();
        drop(backbone.forward(&batch.ids, &batch.lengths, AttentionMode::Bidirectional)?);
        let inference = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let hidden =
            backbone.forward_pass(&batch.ids, &batch.lengths, AttentionMode::Bidirectional, Pass::Train(&lora))?;
        let forward = start.elapsed().as_secs_f64();
        let after_forward = rss_mb();
        drop(hidden);
        lora.set_rng(Some(Rng::new(round)));
        let start = Instant::now();
        let out = loss_and_grads(backbone, &lora, &[batch], AttentionMode::Bidirectional, checkpoint, |h| {
            // A stand-in loss through the LM head on an eighth of the positions (MNTP's masked share).
            let logits = backbone.logits(&h[0].narrow(1, 0, seq / 8)?, Pass::Train(&lora))?;
            Ok(logits.sqr()?.mean_all()?)
        })?;
        let both = start.elapsed().as_secs_f64();
        let start = Instant::now();
        optimizer.step(&lora.vars(), &out.grads, 5e-5)?;
        println!(
            "round {round}: inference forward {inference:.2}s, training forward {forward:.2}s (rss {after_forward:.0} MB), forward+backward {both:.2}s (rss {:.0} MB), update {:.3}s",
            rss_mb(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
