//! Times one MNTP-shaped training step on a model and reports resident memory after each phase.
//!
//!     cargo run --release -p llm2vec-train --example step_profile -- [model] [batch] [seq] [checkpoint: 0|1]

use std::time::Instant;

use candle_core::{DType, Tensor};
use llm2vec::model::{AttentionMode, Pass, Projection};
use llm2vec::{Encoder, Options};
use llm2vec_train::backprop::{loss_and_grads, Batch};
use llm2vec_train::lora::{LoraModel, LoraSettings};
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
    let mut rng = Rng::new(3);
    let ids: Vec<u32> = (0..batch * seq).map(|_| rng.below(1000) as u32 + 100).collect();
    let rows: Vec<&[u32]> = ids.chunks(seq).collect();
    println!("loaded: {:.0} MB", rss_mb());
    let mut opt = llm2vec_train::optim::AdamW::new(&lora.vars(), Default::default())?;
    for round in 0..3 {
        let batch = Batch::new(&rows, backbone.device())?;
        lora.set_rng(Some(Rng::new(round)));
        let start = Instant::now();
        let hidden = backbone.forward_pass(&batch.ids, &batch.lengths, AttentionMode::Bidirectional, Pass::Train(&lora))?;
        let forward = start.elapsed().as_secs_f64();
        let after_forward = rss_mb();
        drop(hidden);
        lora.set_rng(Some(Rng::new(round)));
        let start = Instant::now();
        let out = loss_and_grads(backbone, &lora, &[batch], AttentionMode::Bidirectional, checkpoint, |h| {
            let picked = h[0].narrow(1, 0, seq / 8)?;
            let logits = backbone.logits(&picked, Pass::Train(&lora))?;
            Ok(logits.sqr()?.mean_all()?)
        })?;
        let total = start.elapsed().as_secs_f64();
        let norm: f64 = out.grads.iter().map(|g| g.sqr().and_then(|s| s.sum_all()).and_then(|s| s.to_scalar::<f32>()).unwrap_or(0.0) as f64).sum();
        println!(
            "round {round}: forward {forward:.2}s (rss {after_forward:.0} MB), forward+backward {total:.2}s (rss {:.0} MB), loss {:.4}, |grad|^2 {norm:.3e}",
            rss_mb(),
            out.loss
        );
        if std::env::var("OPT").is_ok() {
            let t = Instant::now();
            opt.step(&lora.vars(), &out.grads, 5e-5)?;
            println!("opt {:.2}s", t.elapsed().as_secs_f64());
        }
        let _ = Tensor::zeros(1, DType::F32, backbone.device())?;
    }
    Ok(())
}
