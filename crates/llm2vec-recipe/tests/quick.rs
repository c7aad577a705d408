//! The quick profile end to end on the default model and `../shared/data`: seven stages, a results page
//! with pictures, every training loss falling (the recipe checks it); a second run reuses every stage.

use std::path::{Path, PathBuf};

use llm2vec_recipe::{Profile, RecipeOptions};

#[path = "../../llm2vec/tests/common/files.rs"]
mod files;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn quick_profile_runs_every_stage_and_resumes() {
    if !files::available(
        &llm2vec::load::models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf"),
        "run scripts/fetch-default-model.sh",
    ) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let opts = RecipeOptions {
        profile: Profile::Quick,
        data_dir: repo().join("../shared/data"),
        configs: repo().join("train_configs"),
        config_name: "SmolLM2.json".into(),
        output_dir: work.path().join("recipe"),
        results: work.path().join("results.md"),
        restart: false,
        device: llm2vec::Device::Cpu,
        dtype: llm2vec::DType::F32,
        cache: llm2vec_eval::CacheDir::At(work.path().join("cache")),
        stop: Default::default(),
        progress: false,
        command: "llm2vec recipe --quick".into(),
    };
    let records = llm2vec_recipe::run(&opts).unwrap();
    assert_eq!(records.len(), 7);
    assert!(records.iter().all(|r| r.scores.len() == 2 && r.scores.iter().all(|s| s.score.is_finite())));
    assert_eq!(records.iter().filter(|r| r.training.is_some()).count(), 3);
    let page = std::fs::read_to_string(&opts.results).unwrap();
    assert!(page.contains("| MNTP + SimCSE (unsupervised) |"), "{page}");
    for picture in ["scores.svg", "mntp-loss.svg", "mntp-simcse-loss.svg", "mntp-supervised-loss.svg"] {
        assert!(work.path().join("results").join(picture).is_file(), "{picture}");
    }

    // A second run finds every stage finished; after losing the last record it redoes only that evaluation.
    std::fs::remove_file(opts.output_dir.join("mntp-supervised/stage.json")).unwrap();
    let again = llm2vec_recipe::run(&opts).unwrap();
    let steps = |r: &llm2vec_recipe::StageRecord| r.training.as_ref().map(|t| t.losses.clone());
    assert_eq!(steps(&again[6]), steps(&records[6]), "training resumed from its final checkpoint, not redone");
    assert_eq!(again[6].scores[0].score, records[6].scores[0].score);

    let full = RecipeOptions { profile: Profile::Full, ..opts };
    let err = llm2vec_recipe::run(&full).unwrap_err().to_string();
    assert!(err.contains("stage.json") && err.contains("quick profile"), "{err}");
}
