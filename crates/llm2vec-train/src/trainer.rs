//! The training loop shared by the stages: model and LoRA set-up from a reference config, AdamW with
//! Hugging Face's linear warmup schedule, gradient accumulation and clipping, logging (progress line,
//! `metrics.jsonl`, `loss.svg`), evaluation, checkpoints, exact resume of the same run only (same
//! [`Fingerprint`]; a corrupt latest checkpoint falls back to the one before), restart, Ctrl-C and
//! non-finite losses.

use crate::checkpoint::{self, EvalRecord, StepRecord, TrainerState};
use crate::config::{MaskTokenType, Stage, TrainConfig};
use crate::fingerprint::Fingerprint;
use crate::lora::{LoraModel, LoraSettings};
use crate::mask::MASK_TOKEN;
use crate::optim::{clip_grad_norm, linear_schedule, AdamW, AdamWConfig};
use crate::rng::{Purpose, Rng};
use crate::stage::contrastive::{SimCse, Supervised};
use crate::stage::mntp::Mntp;
use crate::stage::{Objective, StsDev, Trainee};
use crate::{plot, Result, TrainError};
use candle_core::{DType, Device, Tensor};
use llm2vec::model::{AttentionMode, Projection};
use llm2vec::{Encoder, Options, Pooling};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// How a run is driven (what the config does not say).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Start over even if `output_dir` holds checkpoints (by default the run resumes from the latest): the
    /// previous run's files are moved to `<output_dir>/previous-run/`.
    pub restart: bool,
    /// STS dev pairs (`{"sentence1","sentence2","score"}` JSONL) evaluated by the contrastive stages.
    pub sts_dev: Option<PathBuf>,
    /// Set (by a Ctrl-C handler) to stop after the current step with a checkpoint.
    pub stop: Arc<AtomicBool>,
    /// Print progress on stderr.
    pub progress: bool,
    /// Where the model runs (checkpoints are device-agnostic: a run resumes on any device).
    pub device: Device,
    /// The dtype of the frozen weights and activations: f32, or bf16 (LoRA master weights, optimizer
    /// state and losses stay in f32); f64 for gradient checks. Off f32/f64 on the CPU the ops compose
    /// candle's ops.
    pub dtype: DType,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            restart: false,
            sts_dev: None,
            stop: Arc::default(),
            progress: false,
            device: Device::Cpu,
            dtype: DType::F32,
        }
    }
}

/// The dtype of the LoRA weights and optimizer state for a model in `dtype`: f32 under a half-precision
/// model, else the model's.
pub fn master_dtype(dtype: DType) -> DType {
    match dtype {
        DType::BF16 | DType::F16 => DType::F32,
        other => other,
    }
}

/// What a finished run leaves behind.
#[derive(Debug)]
pub struct Outcome {
    pub output_dir: PathBuf,
    pub state: TrainerState,
}

/// Trains one stage as `config` says and writes the adapter (PEFT format) to its `output_dir`.
pub fn run(stage: Stage, config: &TrainConfig, config_path: &Path, opts: &RunOptions) -> Result<Outcome> {
    config.validate(stage, config_path)?;
    if !matches!(opts.dtype, DType::F32 | DType::BF16 | DType::F64) {
        return Err(TrainError::Invalid(format!("training runs in f32 or bf16, not {:?}", opts.dtype)));
    }
    let output_dir = config
        .output_dir
        .clone()
        .ok_or_else(|| TrainError::MissingField { file: config_path.into(), field: "output_dir".into() })?;
    std::fs::create_dir_all(&output_dir).map_err(|e| TrainError::io(&output_dir, e))?;
    tidy(&output_dir, opts)?;
    let fingerprint = Fingerprint::of(config, config.data_file(config_path)?)?;
    let mut model = trainee(stage, config, config_path, opts)?;
    let objective = objective(stage, config, config_path, &model, opts)?;
    let accum = config.gradient_accumulation_steps;
    let planned = planned_steps(config, objective.batches_per_epoch());
    let last_step = planned.min(config.stop_after_n_steps);
    let mut optimizer =
        AdamW::new(&model.lora.vars(), AdamWConfig { weight_decay: config.weight_decay, ..Default::default() })?;
    let mut state = TrainerState { stage: stage_name(stage).into(), planned_steps: planned, ..Default::default() };
    let mut last_saved = None;
    if opts.restart {
        if let Some(previous) = checkpoint::set_aside(&output_dir)? {
            note(opts, &format!("restarting: the previous run's files are now in {}", previous.display()));
        }
    } else if let Some(resumed) = resume(stage, &output_dir, &fingerprint, &mut model, &mut optimizer, opts)? {
        last_saved = Some(resumed.step);
        state = resumed;
    }
    state.fingerprint = Some(fingerprint);
    let mut run =
        Run { stage, config, opts, model: &model, objective: objective.as_ref(), output_dir: &output_dir, last_saved };
    if state.step == 0 {
        run.evaluate(&mut state)?;
    }
    let started = Instant::now();
    let elapsed_before = state.elapsed_seconds();
    while state.step < last_step {
        let lr = linear_schedule(config.learning_rate, state.step, config.warmup_steps, planned);
        let (loss, mut grads, tokens) = run.accumulated(state.step, accum)?;
        if !loss.is_finite() {
            return Err(TrainError::NonFiniteLoss {
                step: state.step + 1,
                loss,
                last_good: checkpoint::latest(&output_dir),
            });
        }
        let grad_norm = clip_grad_norm(&mut grads, config.max_grad_norm)?;
        optimizer.step(&model.lora.vars(), &grads, lr)?;
        state.step += 1;
        let elapsed = elapsed_before + started.elapsed().as_secs_f64();
        state.steps.push(StepRecord {
            step: state.step,
            loss,
            learning_rate: lr,
            grad_norm,
            tokens,
            elapsed_seconds: elapsed,
        });
        run.progress(&state, last_step, started, elapsed_before);
        if config.eval_steps.is_some_and(|n| n > 0 && state.step.is_multiple_of(n)) {
            run.evaluate(&mut state)?;
        }
        let stopping = opts.stop.load(Ordering::SeqCst);
        if (config.save_steps > 0 && state.step.is_multiple_of(config.save_steps)) || stopping {
            let dir = run.save(&optimizer, &state)?;
            if stopping {
                return Err(TrainError::Interrupted { step: state.step, checkpoint: dir, restarted: opts.restart });
            }
        }
    }
    if state.evals.last().is_none_or(|e| e.step != state.step) {
        run.evaluate(&mut state)?;
    }
    if run.last_saved != Some(state.step) {
        run.save(&optimizer, &state)?;
    }
    run.write_final(&state)?;
    Ok(Outcome { output_dir, state })
}

/// The optimizer steps the schedule plans for: `max_steps`, else `num_train_epochs` over the data.
fn planned_steps(config: &TrainConfig, batches_per_epoch: usize) -> usize {
    if config.max_steps > 0 {
        config.max_steps as usize
    } else {
        ((config.num_train_epochs * batches_per_epoch as f64) / config.gradient_accumulation_steps as f64).ceil()
            as usize
    }
}

/// Completes a restart that was cut short and removes the temporary files of writes that were killed.
fn tidy(output_dir: &Path, opts: &RunOptions) -> Result<()> {
    if checkpoint::finish_restart(output_dir)? {
        note(
            opts,
            &format!(
                "completed an interrupted --restart: the run before it is in {}",
                output_dir.join(checkpoint::PREVIOUS_RUN).display()
            ),
        );
    }
    let dirs = std::iter::once(output_dir.to_path_buf()).chain(checkpoint::complete(output_dir));
    for dir in dirs {
        for path in llm2vec::fs::remove_stale_temps(&dir)? {
            note(opts, &format!("removed {}, left by an interrupted write", path.display()));
        }
    }
    Ok(())
}

/// Restores the latest usable checkpoint in `output_dir` of this run, if there is one: an unreadable
/// checkpoint is skipped for the one before it; one of another stage or with other settings is refused.
fn resume(
    stage: Stage,
    output_dir: &Path,
    fingerprint: &Fingerprint,
    model: &mut Trainee,
    optimizer: &mut AdamW,
    opts: &RunOptions,
) -> Result<Option<TrainerState>> {
    let mut problems = Vec::new();
    let skip = |dir: &Path, e: TrainError, problems: &mut Vec<String>| {
        note(opts, &format!("warning: skipping unusable checkpoint {}: {e}", dir.display()));
        problems.push(e.to_string());
    };
    for dir in checkpoint::complete(output_dir) {
        let state = match checkpoint::read_state(&dir) {
            Ok(state) => state,
            Err(e) => {
                skip(&dir, e, &mut problems);
                continue;
            }
        };
        same_run(stage, &dir, &state, fingerprint, opts)?;
        if let Err(e) = checkpoint::restore(&dir, &mut model.lora, optimizer) {
            skip(&dir, e, &mut problems);
            continue;
        }
        let fallback = if problems.is_empty() { "" } else { ", the checkpoints after it being unusable" };
        note(opts, &format!("resuming from {} (step {}){fallback}", dir.display(), state.step));
        return Ok(Some(state));
    }
    if problems.is_empty() {
        Ok(None)
    } else {
        Err(TrainError::NoUsableCheckpoint { output_dir: output_dir.to_path_buf(), problems })
    }
}

/// Refuses checkpoint `dir` (with `state`) when it belongs to another stage or was trained with other settings.
fn same_run(
    stage: Stage,
    dir: &Path,
    state: &TrainerState,
    fingerprint: &Fingerprint,
    opts: &RunOptions,
) -> Result<()> {
    if state.stage != stage_name(stage) {
        return Err(TrainError::Config {
            file: dir.to_path_buf(),
            msg: format!(
                "a {} checkpoint; this is a {} run (use another output_dir, or --restart)",
                state.stage,
                stage_name(stage)
            ),
        });
    }
    match &state.fingerprint {
        None => note(opts, &format!("warning: {} records no settings (an earlier version wrote it); resuming it as it is: if the config or data changed since, use --restart", dir.display())),
        Some(earlier) => {
            let changes = fingerprint.changes_since(earlier);
            if !changes.is_empty() {
                return Err(TrainError::OtherRun { checkpoint: dir.to_path_buf(), changes });
            }
        }
    }
    Ok(())
}

/// The reference's name of each stage.
pub fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Mntp => "mntp",
        Stage::SimCse => "simcse",
        Stage::Supervised => "supervised",
    }
}

/// The standard deviation of the embedding row `<mask>` gets when the tokenizer lacks it (transformers'
/// `initializer_range` default).
const NEW_ROW_STD: f64 = 0.02;

/// The frozen encoder (the base with `peft_model_name_or_path` merged) on `opts`' device and dtype, and
/// fresh LoRA updates (in the master dtype).
pub fn trainee(stage: Stage, config: &TrainConfig, config_path: &Path, opts: &RunOptions) -> Result<Trainee> {
    let pooling: Pooling = config
        .pooling_mode
        .parse()
        .map_err(|e: llm2vec::Error| TrainError::Config { file: config_path.into(), msg: e.to_string() })?;
    let mode = if config.bidirectional { AttentionMode::Bidirectional } else { AttentionMode::Causal };
    let options = Options {
        adapters: config.peft_model_name_or_path.iter().map(PathBuf::from).collect(),
        pooling: Some(pooling),
        max_length: Some(config.max_seq_length.unwrap_or(llm2vec::DEFAULT_MAX_LENGTH)),
        // Training texts are cut at max_seq_length tokens only, as the reference's training tokenizer does.
        doc_max_length: Some(usize::MAX / 2),
        attention: mode,
        dtype: opts.dtype,
        device: opts.device.clone(),
        ..Options::default()
    };
    let mut loaded = llm2vec::load::load(config.model(config_path)?, &options.device)?;
    if stage == Stage::Mntp
        && config.mask_token_type == MaskTokenType::Mask
        && loaded.tokenizer.inner().token_to_id(MASK_TOKEN).is_none()
    {
        // As the reference: a new `<mask>` token, its embedding row drawn as transformers initialises one.
        let mut rng = Rng::derived(config.seed, Purpose::Init, 1);
        loaded.add_token(MASK_TOKEN, |rows, hidden| {
            (0..rows * hidden).map(|_| (NEW_ROW_STD * rng.normal()) as f32).collect()
        })?;
    }
    let encoder = Encoder::from_loaded(loaded, options)?;
    let settings =
        LoraSettings { r: config.lora_r, lora_alpha: config.lora_alpha(), lora_dropout: config.lora_dropout };
    let seed = Rng::derived(config.seed, Purpose::Init, 0).next_u64();
    let device = encoder.backbone().device().clone();
    let lora = LoraModel::new(
        &encoder.backbone().sites(),
        &Projection::ALL,
        &settings,
        seed,
        master_dtype(encoder.backbone().dtype()),
        &device,
    )?;
    let lora = if stage == Stage::SimCse { lora.with_attention_dropout(config.simcse_dropout) } else { lora };
    Ok(Trainee { encoder, lora, mode, checkpoint: config.gradient_checkpointing, seed: config.seed })
}

/// The stage's objective over the config's data (with `opts`' STS dev set for the contrastive stages).
pub fn objective(
    stage: Stage,
    config: &TrainConfig,
    config_path: &Path,
    model: &Trainee,
    opts: &RunOptions,
) -> Result<Box<dyn Objective>> {
    let dev = || opts.sts_dev.as_deref().map(|p| StsDev::load(p, &model.encoder)).transpose();
    Ok(match stage {
        Stage::Mntp => Box::new(Mntp::new(config, config_path, model)?),
        Stage::SimCse => Box::new(SimCse::new(config, config_path, model, dev()?)?),
        Stage::Supervised => Box::new(Supervised::new(config, config_path, model, dev()?)?),
    })
}

fn note(opts: &RunOptions, msg: &str) {
    if opts.progress {
        eprintln!("{msg}");
    }
}

struct Run<'a> {
    stage: Stage,
    config: &'a TrainConfig,
    opts: &'a RunOptions,
    model: &'a Trainee,
    objective: &'a dyn Objective,
    output_dir: &'a Path,
    last_saved: Option<usize>,
}

impl Run<'_> {
    /// The mean loss and gradients over the `accum` micro-batches of optimizer step `step`.
    fn accumulated(&self, step: usize, accum: usize) -> Result<(f64, Vec<Tensor>, usize)> {
        let (mut loss, mut grads, mut tokens) = (0.0, Vec::<Tensor>::new(), 0);
        for k in 0..accum {
            let (out, n) = self.objective.step(self.model, step * accum + k)?;
            loss += out.loss / accum as f64;
            tokens += n;
            let scaled = out.grads.iter().map(|g| g / accum as f64).collect::<candle_core::Result<Vec<_>>>()?;
            grads = if grads.is_empty() {
                scaled
            } else {
                grads.iter().zip(&scaled).map(|(a, b)| a + b).collect::<candle_core::Result<_>>()?
            };
        }
        Ok((loss, grads, tokens))
    }

    fn evaluate(&self, state: &mut TrainerState) -> Result<()> {
        if let Some((metric, value)) = self.objective.evaluate(self.model)? {
            note(self.opts, &format!("[{}] step {}: {metric} {value:.4}", stage_name(self.stage), state.step));
            state.evals.push(EvalRecord { step: state.step, metric, value });
        }
        Ok(())
    }

    fn progress(&self, state: &TrainerState, last_step: usize, started: Instant, elapsed_before: f64) {
        if !self.opts.progress {
            return;
        }
        let terminal = std::io::stderr().is_terminal();
        let every = self.config.logging_steps.max(1);
        if !terminal && !state.step.is_multiple_of(every) && state.step != last_step {
            return;
        }
        let recent = &state.steps[state.steps.len().saturating_sub(every)..];
        let loss = recent.iter().map(|r| r.loss).sum::<f64>() / recent.len().max(1) as f64;
        let secs = started.elapsed().as_secs_f64();
        let done_here = state.steps.iter().filter(|r| r.elapsed_seconds > elapsed_before).count().max(1);
        let tokens: usize = state.steps.iter().rev().take(done_here).map(|r| r.tokens).sum();
        let eta = secs / done_here as f64 * (last_step - state.step) as f64;
        let lr = state.steps.last().map_or(0.0, |r| r.learning_rate);
        let line = format!(
            "[{}] step {}/{} loss {loss:.4} lr {lr:.2e} {:.0} tok/s ETA {}",
            stage_name(self.stage),
            state.step,
            last_step,
            tokens as f64 / secs.max(1e-9),
            clock(eta)
        );
        let mut err = std::io::stderr();
        let _ = if terminal { write!(err, "\r{line}\x1b[K") } else { writeln!(err, "{line}") };
        if terminal && state.step == last_step {
            let _ = writeln!(err);
        }
    }

    fn save(&mut self, optimizer: &AdamW, state: &TrainerState) -> Result<PathBuf> {
        let dir = checkpoint::save(
            self.output_dir,
            &self.model.lora,
            optimizer,
            state,
            &[("llm2vec_config.json", self.llm2vec_config())],
        )?;
        self.last_saved = Some(state.step);
        self.write_logs(state)?;
        Ok(dir)
    }

    /// The encoder settings saved beside the adapter (as the reference's `LLM2Vec.save`).
    fn llm2vec_config(&self) -> Vec<u8> {
        let settings = self.model.encoder.settings();
        let json = serde_json::json!({
            "pooling_mode": settings.pooling.name(),
            "max_length": 512,
            "doc_max_length": 400,
            "skip_instruction": settings.skip_instruction,
        });
        serde_json::to_vec_pretty(&json).unwrap_or_default()
    }

    fn write_logs(&self, state: &TrainerState) -> Result<()> {
        let mut lines = Vec::new();
        for r in &state.steps {
            lines.push(serde_json::to_string(r).map_err(|e| TrainError::Invalid(e.to_string()))?);
        }
        for e in &state.evals {
            lines.push(serde_json::to_string(e).map_err(|e| TrainError::Invalid(e.to_string()))?);
        }
        llm2vec::fs::write_atomic(&self.output_dir.join("metrics.jsonl"), (lines.join("\n") + "\n").as_bytes())?;
        let title = format!("{} loss, {}", stage_name(self.stage), self.output_dir.display());
        llm2vec::fs::write_atomic(
            &self.output_dir.join("loss.svg"),
            plot::loss_curve_svg(&title, &state.steps).as_bytes(),
        )?;
        Ok(())
    }

    /// The final adapter in `output_dir` itself, loadable by `llm2vec encode --adapter <output_dir>`.
    fn write_final(&self, state: &TrainerState) -> Result<()> {
        let base = self.config.model_name_or_path.clone();
        self.model.lora.save(self.output_dir, base)?;
        crate::lora::write_if_changed(&self.output_dir.join("llm2vec_config.json"), &self.llm2vec_config())?;
        self.write_logs(state)
    }
}

fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}
