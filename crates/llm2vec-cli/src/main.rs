//! The `llm2vec` command: a thin front over the `llm2vec` library.

mod progress;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use llm2vec::{io, AttentionMode, Encoder, Options, Pooling, Precision};

#[derive(Parser)]
#[command(name = "llm2vec", version, about = "Text embeddings from decoder-only LLMs, the LLM2Vec way")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// CPU threads for matrix products (default: all cores; at most 4 per core).
    #[arg(long, global = true, value_parser = thread_count)]
    threads: Option<usize>,
}

#[derive(Subcommand)]
enum Command {
    /// Encode texts from a file into embeddings (.npy or .jsonl).
    Encode(EncodeArgs),
    /// Evaluate on MTEB-style tasks from a local data folder; writes one JSON per task and summary.md.
    Eval(EvalArgs),
    /// Serve embeddings over HTTP: POST /v1/embeddings (OpenAI), POST /embed, GET /health, /info, /metrics.
    Serve(ServeArgs),
    /// Train a LoRA adapter from a reference-format JSON config: mntp, simcse or supervised.
    Train(TrainArgs),
    /// Run the LLM2Vec recipe: evaluate the untouched model, train MNTP, then SimCSE and supervised on top,
    /// evaluate each stage, and write the results page. Rerunning continues where a run stopped.
    Recipe(RecipeArgs),
}

#[derive(Args)]
struct RecipeArgs {
    /// A few steps per stage on slices of the data, two sliced tasks: checks the pipeline in minutes.
    #[arg(long, conflicts_with = "gpu")]
    quick: bool,
    /// The paper's settings (1000 steps per stage, MNTP at 32 x 512 tokens, SimCSE at 128), for a GPU.
    #[arg(long)]
    gpu: bool,
    /// Folder of the evaluation tasks (one sub-folder per task) and of train/ (see docs/recipe.md).
    #[arg(long)]
    data_dir: PathBuf,
    /// Folder of the reference-format training configs, `<configs>/{mntp,simcse,supervised}/<config-name>`.
    #[arg(long, default_value = "train_configs")]
    configs: PathBuf,
    #[arg(long, default_value = "SmolLM2.json")]
    config_name: String,
    /// Work folder (default: `output/recipe-<profile>`).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Results page (default: `<output>/results.md`).
    #[arg(long)]
    results: Option<PathBuf>,
    /// Redo every stage, training from scratch.
    #[arg(long)]
    restart: bool,
    /// Device for training and evaluation: cpu, or cuda / cuda:N with the `cuda` feature.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Training dtype: f32, or bf16 (frozen weights and activations in bf16; LoRA weights, optimizer
    /// state and losses in f32). Evaluation runs in f32.
    #[arg(long, value_enum, default_value_t = TrainDtype::F32)]
    dtype: TrainDtype,
}

/// The dtypes training runs in.
#[derive(Clone, Copy, clap::ValueEnum)]
enum TrainDtype {
    F32,
    Bf16,
}

impl TrainDtype {
    fn dtype(self) -> llm2vec::DType {
        match self {
            TrainDtype::F32 => llm2vec::DType::F32,
            TrainDtype::Bf16 => llm2vec::DType::BF16,
        }
    }
}

#[derive(Args)]
struct TrainArgs {
    #[arg(value_enum)]
    stage: llm2vec_train::config::Stage,
    /// JSON config with the reference's field names (`train_configs/<stage>/*.json`).
    config: PathBuf,
    /// Start a new run, moving the old one in output_dir to output_dir/previous-run (by default a run
    /// resumes from its latest checkpoint, refusing one trained with other settings or data).
    #[arg(long)]
    restart: bool,
    /// STS dev pairs (JSONL with sentence1, sentence2, score) to evaluate the contrastive stages on.
    #[arg(long)]
    sts_dev: Option<PathBuf>,
    /// Also write the model with every adapter merged, in Hugging Face layout, to <output_dir>/merged.
    #[arg(long)]
    merge: bool,
    /// cpu, or cuda / cuda:N with the `cuda` feature. A run resumes on any device.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32, or bf16 (frozen weights and activations in bf16; LoRA weights, optimizer state and losses in
    /// f32). On the CPU, bf16 runs candle's composed ops (slower than the f32 kernels).
    #[arg(long, value_enum, default_value_t = TrainDtype::F32)]
    dtype: TrainDtype,
}

#[derive(Args)]
struct ModelArgs {
    /// Model: a short name, a Hugging Face directory, a .gguf file or a hub id (cached).
    #[arg(long, default_value = llm2vec::load::DEFAULT_MODEL)]
    model: String,
    /// PEFT LoRA adapter directory; repeat to stack adapters, merged in order.
    #[arg(long = "adapter")]
    adapters: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = AttentionMode::Bidirectional)]
    attention: AttentionMode,
    #[arg(long, value_enum, help = format!(
        "Pooling mode (default: the model's llm2vec_config.json, else {})", Pooling::default().name()
    ))]
    pooling: Option<Pooling>,
    #[arg(long, value_parser = at_least::<2>, help = format!(
        "Maximum tokens per input (default {})", llm2vec::DEFAULT_MAX_LENGTH
    ))]
    max_length: Option<usize>,
    #[arg(long, value_parser = at_least::<1>, help = format!(
        "Maximum tokens of the text part, cut word by word (default {})", llm2vec::DEFAULT_DOC_MAX_LENGTH
    ))]
    doc_max_length: Option<usize>,
    /// Pool over the instruction tokens too.
    #[arg(long)]
    include_instruction: bool,
    /// L2-normalise the embeddings.
    #[arg(long)]
    normalize: bool,
    #[arg(long, value_enum, default_value_t = Precision::default())]
    dtype: Precision,
    /// cpu, or cuda / cuda:N with the `cuda` feature.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// How `encode` and `eval` cut their inputs into forward passes (`serve` has its own batcher).
#[derive(Args)]
struct BatchArgs {
    /// Inputs per forward pass, at most.
    #[arg(long, default_value_t = 32, value_parser = at_least::<1>)]
    batch_size: usize,
    /// Padded tokens (inputs times the longest) per forward pass, at most; longer inputs go in smaller batches
    /// [default: 2048 on the CPU, 16384 on a GPU].
    #[arg(long, value_parser = at_least::<1>)]
    max_batch_tokens: Option<usize>,
}

#[derive(Args)]
struct EncodeArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    batch: BatchArgs,
    /// Instruction for every input that names none (attended to, not pooled).
    #[arg(long, default_value = "")]
    instruction: String,
    /// Text file (one text per line) or JSONL (`{"text": ..., "instruction": ...}`).
    #[arg(long)]
    input: PathBuf,
    /// Output file: .npy (float32 rows in input order) or .jsonl.
    #[arg(long)]
    output: PathBuf,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    batch: BatchArgs,
    /// Comma-separated task names (folders of --data-dir).
    #[arg(long, value_delimiter = ',', required = true)]
    tasks: Vec<String>,
    /// Folder with one sub-folder per task (the layout of ../shared/data).
    #[arg(long)]
    data_dir: PathBuf,
    /// Folder for the per-task result JSON files and summary.md.
    #[arg(long, default_value = "results")]
    output: PathBuf,
    /// Embedding cache folder (default: ~/.cache/llm2vec/embeddings).
    #[arg(long, conflicts_with = "no_cache")]
    cache_dir: Option<PathBuf>,
    /// Encode everything afresh and keep nothing.
    #[arg(long)]
    no_cache: bool,
    /// Instruction for a task's queries, as TASK=TEXT (empty TEXT for none); repeatable.
    #[arg(long = "task-instruction", value_parser = key_value)]
    task_instructions: Vec<(String, String)>,
    /// Encode every text without an instruction (as MTEB runs sentence-transformers models).
    #[arg(long, conflicts_with = "task_instructions")]
    no_instructions: bool,
    /// Also pool the same forward passes with these modes (comma-separated) and cache them, so that
    /// evaluating them next encodes nothing: `--pooling mean --also-pooling weighted_mean`.
    #[arg(long, value_enum, value_delimiter = ',')]
    also_pooling: Vec<Pooling>,
    /// Split for a task, as TASK=SPLIT (`a+b` joins splits); repeatable.
    #[arg(long = "task-split", value_parser = key_value)]
    task_splits: Vec<(String, String)>,
    #[arg(long, default_value_t = 42)]
    seed: u32,
}

/// A whole number of at least `MIN`.
fn at_least<const MIN: usize>(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("`{s}` is not a whole number ({e})"))?;
    if n < MIN {
        return Err(format!("must be at least {MIN}, got {n}"));
    }
    Ok(n)
}

/// The cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A thread count from 1 to 4 per core: more only slows the work down, and a huge count exhausts the
/// system starting threads.
fn thread_count(s: &str) -> Result<usize, String> {
    let n = at_least::<1>(s)?;
    let max = 4 * cores();
    if n > max {
        return Err(format!("at most {max} (4 per core, {} cores here), got {n}", cores()));
    }
    Ok(n)
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("`{s}`: expected TASK=VALUE"))
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    server: llm2vec_server::Config,
}

fn main() {
    keep_freed_memory();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    llm2vec::set_num_threads(cli.threads.unwrap_or_else(cores));
    match cli.command {
        Command::Encode(args) => encode(args),
        Command::Eval(args) => eval(args),
        Command::Serve(args) => serve(args),
        Command::Train(args) => train(args),
        Command::Recipe(args) => recipe(args),
    }
}

fn encoder(args: &ModelArgs, batch: Option<&BatchArgs>) -> Result<Encoder> {
    Encoder::from_pretrained(&args.model, options(args, batch)?)
        .with_context(|| format!("loading model `{}`", args.model))
}

/// The encoder's options from the flags; without batch flags (`serve`), the library's batching defaults.
fn options(args: &ModelArgs, batch: Option<&BatchArgs>) -> Result<Options> {
    let defaults = Options::default();
    Ok(Options {
        adapters: args.adapters.clone(),
        pooling: args.pooling,
        max_length: args.max_length,
        doc_max_length: args.doc_max_length,
        skip_instruction: args.include_instruction.then_some(false),
        attention: args.attention,
        normalize: args.normalize,
        batch_size: batch.map_or(defaults.batch_size, |b| b.batch_size),
        max_batch_tokens: batch.map_or(defaults.max_batch_tokens, |b| b.max_batch_tokens),
        dtype: args.dtype.dtype(),
        quantize: args.dtype.quantize(),
        device: llm2vec::parse_device(&args.device)?,
    })
}

fn encode(args: EncodeArgs) -> Result<()> {
    io::check_output(&args.output)?;
    let inputs = io::read_inputs(&args.input, &args.instruction)?;
    let encoder = encoder(&args.model, Some(&args.batch))?;
    let start = std::time::Instant::now();
    let mut line = progress::ProgressLine::on_stderr();
    let embeddings = encoder.encode_with_progress(&inputs, encoder.settings().batch_size, |p| {
        line.update(p);
        Ok(())
    })?;
    if let Some(&first) = embeddings.truncated.first() {
        eprintln!(
            "note: {} input(s) longer than max_length {} were truncated (first: line {})",
            embeddings.truncated.len(),
            encoder.settings().max_length,
            first + 1
        );
    }
    io::write_embeddings(&args.output, &embeddings)?;
    eprintln!(
        "encoded {} inputs ({} tokens, dim {}) in {:.2}s -> {} [{}]",
        embeddings.rows,
        embeddings.tokens,
        embeddings.dim,
        start.elapsed().as_secs_f64(),
        args.output.display(),
        how_it_ran(&encoder)
    );
    Ok(())
}

/// The precision and device an encoder runs in, with the CPU kernels' path: `q8, cpu, avx512 kernels`.
fn how_it_ran(encoder: &Encoder) -> String {
    let device = llm2vec::device_name(encoder.device());
    match encoder.cpu_kernels() {
        Some(kernels) => format!("{}, {device}, {kernels} kernels", encoder.precision()),
        None => format!("{}, {device}", encoder.precision()),
    }
}

fn eval(args: EvalArgs) -> Result<()> {
    let mut opts = llm2vec_eval::EvalOptions::new(&args.model.model, args.tasks, args.data_dir, args.output);
    opts.encoder = options(&args.model, Some(&args.batch))?;
    opts.cache = match (args.no_cache, args.cache_dir) {
        (true, _) => llm2vec_eval::CacheDir::Off,
        (false, Some(dir)) => llm2vec_eval::CacheDir::At(dir),
        (false, None) => llm2vec_eval::CacheDir::Default,
    };
    opts.instructions = args.task_instructions.into_iter().collect();
    opts.use_instructions = !args.no_instructions;
    opts.also_poolings = args.also_pooling;
    opts.splits = args.task_splits.into_iter().collect();
    opts.seed = args.seed;
    opts.verbose = true;
    let summary = llm2vec_eval::run(&opts)?;
    println!("{}", summary.markdown);
    eprintln!("summary written to {}", summary.markdown_path.display());
    Ok(())
}

fn serve(args: ServeArgs) -> Result<()> {
    let encoder = encoder(&args.model, None)?;
    llm2vec_server::run(encoder, &args.model.model, args.server)?;
    Ok(())
}

/// Batches allocate and free their activations (and in training their gradients) in blocks of megabytes to
/// hundreds of megabytes (an MNTP batch's logits); glibc hands large blocks back to the kernel when they are
/// freed, and the kernel zeroes fresh pages for the next batch. All blocks now come from the heap, whose freed
/// memory is kept (up to 2 GiB at its top): MNTP steps 1.1x faster, passages encode 1.06x, peak memory +2%
/// (docs/benchmarks.md). Left alone when the environment tunes glibc's allocator.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    if ["GLIBC_TUNABLES", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"].iter().any(|v| std::env::var_os(v).is_some()) {
        return;
    }
    // SAFETY: mallopt only changes allocator parameters; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

/// The first Ctrl-C sets `stop` (training saves a checkpoint after the current step); a second quits at once.
fn stop_on_ctrl_c(stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Result<()> {
    ctrlc::set_handler(move || {
        if stop.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after this step (Ctrl-C again to quit at once)");
    })?;
    Ok(())
}

fn train(args: TrainArgs) -> Result<()> {
    let loaded = llm2vec_train::config::load(&args.config)?;
    for note in &loaded.notes {
        eprintln!("note: {note}");
    }
    let opts = llm2vec_train::trainer::RunOptions {
        restart: args.restart,
        sts_dev: args.sts_dev,
        progress: true,
        device: llm2vec::parse_device(&args.device)?,
        dtype: args.dtype.dtype(),
        ..Default::default()
    };
    stop_on_ctrl_c(opts.stop.clone())?;
    let outcome = llm2vec_train::trainer::run(args.stage, &loaded.config, &args.config, &opts)?;
    let state = &outcome.state;
    eprintln!(
        "trained {} steps ({} tokens, {:.1}s); adapter in {}",
        state.step,
        state.tokens(),
        state.elapsed_seconds(),
        outcome.output_dir.display()
    );
    if args.merge {
        let model = loaded.config.model(&args.config)?;
        let mut adapters: Vec<&std::path::Path> =
            loaded.config.peft_model_name_or_path.iter().map(std::path::Path::new).collect();
        adapters.push(&outcome.output_dir);
        let out = outcome.output_dir.join("merged");
        llm2vec::load::export::save_merged(model, &adapters, &out)?;
        eprintln!("merged model in {}", out.display());
    }
    Ok(())
}

fn recipe(args: RecipeArgs) -> Result<()> {
    use llm2vec_recipe::Profile;
    let profile = match (args.quick, args.gpu) {
        (true, _) => Profile::Quick,
        (_, true) => Profile::Gpu,
        _ => Profile::Full,
    };
    let output = args.output.unwrap_or_else(|| PathBuf::from(format!("output/recipe-{}", profile.name())));
    let results = args.results.unwrap_or_else(|| output.join("results.md"));
    let opts = llm2vec_recipe::RecipeOptions {
        profile,
        data_dir: args.data_dir,
        configs: args.configs,
        config_name: args.config_name,
        output_dir: output,
        results,
        restart: args.restart,
        device: llm2vec::parse_device(&args.device)?,
        dtype: args.dtype.dtype(),
        cache: llm2vec_eval::CacheDir::Default,
        stop: Default::default(),
        progress: true,
        command: std::iter::once("llm2vec".to_string()).chain(std::env::args().skip(1)).collect::<Vec<_>>().join(" "),
    };
    stop_on_ctrl_c(opts.stop.clone())?;
    let records = llm2vec_recipe::run(&opts)?;
    eprintln!("{} stages done; results in {}", records.len(), opts.results.display());
    Ok(())
}
