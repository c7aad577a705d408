//! Profiles: how long each stage trains, on which slice of the data, and which tasks are evaluated.

use std::path::{Path, PathBuf};

use llm2vec_train::config::{Stage, TrainConfig};

use crate::error::{RecipeError, Result};

/// How much of the recipe to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A few steps per stage on a slice of the data, evaluated on slices of two tasks: checks the pipeline
    /// in minutes.
    Quick,
    /// About three hours of training on a 2-core CPU, every dev task evaluated.
    Full,
    /// The paper's settings (1000 steps per stage: MNTP at 32 x 512 tokens, SimCSE at 128), for a GPU.
    Gpu,
}

/// The dev tasks of `../shared/data`, evaluated by the full and GPU profiles.
pub const DEV_TASKS: &[&str] = &[
    "STSBenchmark",
    "SICK-R",
    "SciFact",
    "Banking77Classification",
    "MRClassification",
    "CRClassification",
    "SST2Classification",
    "TRECClassification",
    "BBCNewsClusteringP2P",
    "BBCNewsClusteringS2S",
    "SICKEntailmentPairs",
];

/// Quick profile: its tasks, and the pairs kept of each (and of the STS-B dev set the contrastive stages follow).
const QUICK_TASKS: &[&str] = &["STSBenchmark", "SICKEntailmentPairs"];
const QUICK_PAIRS: usize = 128;
const QUICK_DEV_PAIRS: usize = 64;

/// What a profile changes in a stage's reference-format config.
#[derive(Debug, Clone, PartialEq)]
pub struct Training {
    pub steps: usize,
    pub batch_size: usize,
    pub max_seq_length: usize,
    pub learning_rate: f64,
    pub warmup_steps: usize,
    /// Training records (MNTP: blocks) kept; `None` for all.
    pub max_train_samples: Option<usize>,
    pub gradient_checkpointing: bool,
    pub save_steps: usize,
    pub eval_steps: Option<usize>,
    /// SimCSE only: the dropout that makes the two views differ.
    pub simcse_dropout: Option<f64>,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Quick => "quick",
            Profile::Full => "full",
            Profile::Gpu => "gpu",
        }
    }

    /// The training settings of `stage`.
    pub fn training(self, stage: Stage) -> Training {
        let t = |steps, batch_size, max_seq_length, learning_rate, warmup_steps| Training {
            steps,
            batch_size,
            max_seq_length,
            learning_rate,
            warmup_steps,
            max_train_samples: None,
            gradient_checkpointing: false,
            save_steps: 50,
            eval_steps: Some(100),
            simcse_dropout: None,
        };
        match (self, stage) {
            (Profile::Quick, Stage::Mntp) => {
                Training { max_train_samples: Some(64), eval_steps: None, ..t(8, 4, 64, 1e-3, 0) }
            }
            (Profile::Quick, Stage::SimCse) => {
                Training { max_train_samples: Some(128), eval_steps: None, ..t(8, 8, 32, 5e-4, 0) }
            }
            (Profile::Quick, Stage::Supervised) => {
                Training { max_train_samples: Some(64), eval_steps: None, ..t(8, 4, 32, 5e-4, 0) }
            }
            (Profile::Full, Stage::Mntp) => t(1000, 8, 128, 1e-4, 50),
            (Profile::Full, Stage::SimCse) => t(740, 16, 128, 1e-4, 37),
            (Profile::Full, Stage::Supervised) => t(300, 16, 128, 2e-4, 15),
            (Profile::Gpu, Stage::Mntp) => {
                Training { gradient_checkpointing: true, save_steps: 200, ..t(1000, 32, 512, 5e-5, 0) }
            }
            (Profile::Gpu, Stage::SimCse) => Training {
                gradient_checkpointing: true,
                save_steps: 200,
                simcse_dropout: Some(0.3),
                ..t(1000, 128, 128, 3e-5, 0)
            },
            (Profile::Gpu, Stage::Supervised) => {
                Training { gradient_checkpointing: true, save_steps: 200, ..t(1000, 64, 512, 2e-4, 300) }
            }
        }
    }

    /// The training data of `stage`, under the data folder.
    pub fn train_data(self, stage: Stage) -> &'static str {
        match (self, stage) {
            (Profile::Quick, Stage::Mntp) => "train/mntp_sample.jsonl",
            // A folder's first records come from the first file in name order, whatever lands there: pin one.
            (Profile::Quick, Stage::Supervised) => "train/supervised/scifact_train_pairs.jsonl",
            (_, Stage::Mntp) => "train/unsup/english_mix.txt",
            (_, Stage::SimCse) => "train/unsup/wiki1m_sample.txt",
            (_, Stage::Supervised) => "train/supervised",
        }
    }

    pub fn tasks(self) -> &'static [&'static str] {
        match self {
            Profile::Quick => QUICK_TASKS,
            Profile::Full | Profile::Gpu => DEV_TASKS,
        }
    }
}

impl Training {
    /// Writes these settings (and the data file) into a reference-format config.
    pub fn apply(&self, stage: Stage, data: PathBuf, config: &mut TrainConfig) {
        match stage {
            Stage::Mntp => config.train_file = Some(data),
            Stage::SimCse | Stage::Supervised => {
                config.train_file = None;
                config.dataset_file_path = Some(data);
            }
        }
        config.stop_after_n_steps = self.steps;
        config.max_steps = self.steps as i64;
        config.per_device_train_batch_size = self.batch_size;
        config.max_seq_length = Some(self.max_seq_length);
        config.learning_rate = self.learning_rate;
        config.warmup_steps = self.warmup_steps;
        config.max_train_samples = self.max_train_samples;
        config.gradient_checkpointing = self.gradient_checkpointing;
        config.save_steps = self.save_steps;
        config.eval_steps = self.eval_steps;
        if let Some(p) = self.simcse_dropout {
            config.simcse_dropout = p;
        }
    }
}

/// The evaluation data and the STS dev pairs of a run: the data folder itself, or for the quick profile
/// slices of it written under `work`.
pub fn eval_data(profile: Profile, data_dir: &Path, work: &Path) -> Result<(PathBuf, PathBuf)> {
    let dev = data_dir.join("STSBenchmark/dev.jsonl");
    if profile != Profile::Quick {
        return Ok((data_dir.to_path_buf(), dev));
    }
    let sliced = work.join("data");
    for task in QUICK_TASKS {
        let (from, to) = (data_dir.join(task), sliced.join(task));
        std::fs::create_dir_all(&to).map_err(|e| RecipeError::io(&to, e))?;
        let kept = head_lines(&from.join("test.jsonl"), &to.join("test.jsonl"), QUICK_PAIRS)?;
        let spec_path = from.join("task.json");
        let text = std::fs::read_to_string(&spec_path).map_err(|e| RecipeError::io(&spec_path, e))?;
        let mut spec: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| RecipeError::format(&spec_path, e))?;
        spec["splits"] = serde_json::json!(["test"]);
        spec["counts"] = serde_json::json!({ "test": kept });
        let out = to.join("task.json");
        llm2vec::fs::write_atomic(&out, serde_json::to_string_pretty(&spec).unwrap_or_default().as_bytes())?;
    }
    let sliced_dev = sliced.join("sts-dev.jsonl");
    head_lines(&dev, &sliced_dev, QUICK_DEV_PAIRS)?;
    Ok((sliced, sliced_dev))
}

/// Copies the first `n` lines of `from` to `to`; returns how many there were.
fn head_lines(from: &Path, to: &Path, n: usize) -> Result<usize> {
    let text = std::fs::read_to_string(from).map_err(|e| RecipeError::io(from, e))?;
    let lines: Vec<&str> = text.lines().take(n).collect();
    llm2vec::fs::write_atomic(to, (lines.join("\n") + "\n").as_bytes())?;
    Ok(lines.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_slices_the_tasks_and_the_dev_pairs() {
        let data = tempfile::tempdir().unwrap();
        for task in QUICK_TASKS {
            let dir = data.path().join(task);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("task.json"),
                r#"{"name": "T", "splits": ["train", "test"], "counts": {"test": 500}}"#,
            )
            .unwrap();
            let lines: String = (0..500).map(|i| format!("{{\"i\": {i}}}\n")).collect();
            std::fs::write(dir.join("test.jsonl"), &lines).unwrap();
            if *task == "STSBenchmark" {
                std::fs::write(dir.join("dev.jsonl"), &lines).unwrap();
            }
        }
        let work = tempfile::tempdir().unwrap();
        let (sliced, dev) = eval_data(Profile::Quick, data.path(), work.path()).unwrap();
        let test = std::fs::read_to_string(sliced.join("STSBenchmark/test.jsonl")).unwrap();
        assert_eq!(test.lines().count(), QUICK_PAIRS);
        assert_eq!(std::fs::read_to_string(&dev).unwrap().lines().count(), QUICK_DEV_PAIRS);
        let spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(sliced.join("SICKEntailmentPairs/task.json")).unwrap())
                .unwrap();
        assert_eq!(spec["counts"]["test"], QUICK_PAIRS);
        assert_eq!(eval_data(Profile::Full, data.path(), work.path()).unwrap().0, data.path());
    }

    #[test]
    fn settings_land_in_the_reference_config() {
        let mut config = TrainConfig { train_file: Some("old".into()), ..TrainConfig::default() };
        Profile::Gpu.training(Stage::SimCse).apply(Stage::SimCse, "wiki.txt".into(), &mut config);
        assert_eq!((config.train_file, config.dataset_file_path), (None, Some(PathBuf::from("wiki.txt"))));
        assert_eq!(
            (config.max_steps, config.stop_after_n_steps, config.per_device_train_batch_size),
            (1000, 1000, 128)
        );
        assert_eq!((config.simcse_dropout, config.gradient_checkpointing), (0.3, true));
    }
}
