//! Evaluates Banking77Classification and BBCNewsClusteringS2S with a real model (results in
//! OUT_DIR/results), then writes the embeddings they were scored on as `.npy` (all from the cache), so
//! that `scripts/reference/compare_eval_sklearn.py OUT_DIR DATA_DIR` runs sklearn on exactly the same
//! vectors and seeds and reports the differences.
//!
//! cargo run --release -p llm2vec-eval --example sklearn_parity -- MODEL DATA_DIR CACHE_DIR OUT_DIR [causal]

use std::path::{Path, PathBuf};

use llm2vec::{AttentionMode, Embeddings, Input};
use llm2vec_eval::data::{self, Sources};
use llm2vec_eval::embed::{Embedder, LlmEncoder, Vectors};
use llm2vec_eval::evaluate::undersample;
use llm2vec_eval::{instructions, run_with_encoder, CacheDir, EvalOptions, TaskSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, data_dir, cache_dir, out_dir, rest @ ..] = &args[..] else {
        return Err("usage: sklearn_parity MODEL DATA_DIR CACHE_DIR OUT_DIR [causal]".into());
    };
    let mut options = llm2vec::Options::default();
    if rest.first().is_some_and(|a| a == "causal") {
        options.attention = AttentionMode::Causal;
    }
    let (data_dir, out_dir) = (PathBuf::from(data_dir), PathBuf::from(out_dir));
    std::fs::create_dir_all(&out_dir)?;
    let encoder = LlmEncoder::load(model, options.clone(), &[])?;
    let tasks = vec!["Banking77Classification".to_string(), "BBCNewsClusteringS2S".to_string()];
    let mut opts = EvalOptions::new(model.as_str(), tasks, &data_dir, out_dir.join("results"));
    (opts.encoder, opts.cache, opts.verbose) = (options, CacheDir::At(cache_dir.into()), true);
    let summary = run_with_encoder(&opts, &encoder)?;
    println!("{}", summary.markdown);

    let mut embedder = Embedder::new(&encoder, Some(Path::new(cache_dir)), true)?;

    let spec = TaskSpec::load(&data_dir.join("Banking77Classification"))?;
    let instruction = instructions::resolve(&spec, &Default::default());
    let mut sources = Sources::default();
    let train = data::classification(&spec, "train", &mut sources)?;
    let test = data::classification(&spec, "test", &mut sources)?;
    let mut used: Vec<usize> = undersample(&train.labels, 8, 10, 42).into_iter().flatten().collect();
    used.sort_unstable();
    used.dedup();
    let train_texts: Vec<&String> = used.iter().map(|&i| &train.texts[i]).collect();
    save(&out_dir.join("banking77_train.npy"), &embed(&mut embedder, &instruction, train_texts)?)?;
    save(&out_dir.join("banking77_test.npy"), &embed(&mut embedder, &instruction, test.texts.iter().collect())?)?;
    std::fs::write(out_dir.join("banking77_train_rows.json"), serde_json::to_string(&used)?)?;

    let spec = TaskSpec::load(&data_dir.join("BBCNewsClusteringS2S"))?;
    let instruction = instructions::resolve(&spec, &Default::default());
    for (k, set) in data::clustering(&spec, "test", &mut Sources::default())?.iter().enumerate() {
        save(
            &out_dir.join(format!("bbc_s2s_set{k}.npy")),
            &embed(&mut embedder, &instruction, set.texts.iter().collect())?,
        )?;
    }
    eprintln!("encoded {} texts, {} from the cache", embedder.encoded, embedder.cached);
    Ok(())
}

fn embed(embedder: &mut Embedder, instruction: &str, texts: Vec<&String>) -> llm2vec_eval::Result<Vectors> {
    let inputs: Vec<Input> = texts.into_iter().map(|t| Input::new(instruction, t.as_str())).collect();
    embedder.embed("export", &inputs)
}

fn save(path: &Path, v: &Vectors) -> llm2vec::Result<()> {
    let e = Embeddings { data: v.data.clone(), rows: v.len(), dim: v.dim, tokens: 0, truncated: Vec::new() };
    llm2vec::io::write_embeddings(path, &e)
}
