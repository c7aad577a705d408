//! The encoder: the library's equivalent of the reference's `LLM2Vec.from_pretrained(...)` and
//! `encode([[instruction, text], ...])`, with length-sorted batching and results in input order.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use crate::batch;
use crate::error::{Error, Result};
use crate::load::{self, adapter::Adapter};
use crate::model::{AttentionMode, Backbone};
use crate::pool::{self, Pooling};
use crate::tokenize::{TextTokenizer, TokenizeOptions, Tokenized};

/// Tokens per input when neither the options nor the model's `llm2vec_config.json` say (the reference's).
pub const DEFAULT_MAX_LENGTH: usize = 512;
/// Tokens of an input's text part, cut word by word, when neither the options nor the model say.
pub const DEFAULT_DOC_MAX_LENGTH: usize = 400;
/// Padded tokens per forward pass by default on the CPU: passes of a few thousand tokens keep their
/// activations near the caches, and ran passages about 1.1-1.2x faster than passes of 16,384 (docs/benchmarks.md).
pub const CPU_MAX_BATCH_TOKENS: usize = 2048;
/// Padded tokens per forward pass by default on a GPU: 32 inputs of the default `max_length`, so that longer
/// inputs (a raised `max_length`) go in smaller batches instead of multiplying the memory a pass takes.
pub const GPU_MAX_BATCH_TOKENS: usize = 32 * DEFAULT_MAX_LENGTH;

/// Padded tokens per forward pass on `device` when the options leave it to us.
pub fn default_max_batch_tokens(device: &Device) -> usize {
    if device.is_cpu() {
        CPU_MAX_BATCH_TOKENS
    } else {
        GPU_MAX_BATCH_TOKENS
    }
}

/// How to load and run the encoder. `None` fields take the model's `llm2vec_config.json`, then the defaults.
#[derive(Debug, Clone)]
pub struct Options {
    /// LoRA adapter folders merged into the model, in order.
    pub adapters: Vec<PathBuf>,
    /// How token states become one embedding.
    pub pooling: Option<Pooling>,
    /// Tokens per input, instruction included; longer inputs are cut.
    pub max_length: Option<usize>,
    /// Tokens of an input's text part, cut word by word before tokenizing.
    pub doc_max_length: Option<usize>,
    /// Whether the instruction's tokens are left out of the pooling.
    pub skip_instruction: Option<bool>,
    /// Bidirectional (LLM2Vec) or causal attention.
    pub attention: AttentionMode,
    /// L2-normalise the embeddings (also on when the model's folder asks for it, as a sentence-transformers
    /// `Normalize` module does).
    pub normalize: bool,
    /// Inputs per forward pass, at most.
    pub batch_size: usize,
    /// Padded tokens (inputs times the longest) per forward pass, at most; an input longer than this runs
    /// alone. `None`: [`default_max_batch_tokens`] for the device.
    pub max_batch_tokens: Option<usize>,
    /// The dtype the model computes in.
    pub dtype: DType,
    /// 8-bit integer products in the blocks' linear layers ([`crate::model::linear::Linear::from_parts`]):
    /// CPU and f32 only; attention, norms and pooling stay f32.
    pub quantize: bool,
    /// The device the model runs on.
    pub device: Device,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            adapters: Vec::new(),
            pooling: None,
            max_length: None,
            doc_max_length: None,
            skip_instruction: None,
            attention: AttentionMode::Bidirectional,
            normalize: false,
            batch_size: 32,
            max_batch_tokens: None,
            dtype: DType::F32,
            quantize: false,
            device: Device::Cpu,
        }
    }
}

/// Settings in force after merging options, `llm2vec_config.json` and defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How token states become one embedding.
    pub pooling: Pooling,
    /// Tokens per input, instruction included.
    pub max_length: usize,
    /// Tokens of an input's text part.
    pub doc_max_length: usize,
    /// Whether the instruction's tokens are left out of the pooling.
    pub skip_instruction: bool,
    /// Bidirectional (LLM2Vec) or causal attention.
    pub attention: AttentionMode,
    /// Whether the embeddings are L2-normalised.
    pub normalize: bool,
    /// Inputs per forward pass, at most.
    pub batch_size: usize,
    /// Padded tokens per forward pass, at most.
    pub max_batch_tokens: usize,
}

impl Settings {
    /// How [`Encoder::tokenize`] tokenizes under these settings.
    pub fn tokenize_options(&self) -> TokenizeOptions {
        TokenizeOptions {
            max_length: self.max_length,
            doc_max_length: self.doc_max_length,
            append_eos: self.pooling == Pooling::EosToken,
        }
    }
}

/// One input: an instruction (attended to, not pooled; may be empty) and the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// What to do with the text (`Given a query, retrieve ...`); empty for none.
    pub instruction: String,
    /// The text to embed.
    pub text: String,
}

impl Input {
    /// A text with its instruction.
    pub fn new(instruction: impl Into<String>, text: impl Into<String>) -> Self {
        Self { instruction: instruction.into(), text: text.into() }
    }

    /// A text without an instruction.
    pub fn text(text: impl Into<String>) -> Self {
        Self::new("", text)
    }
}

/// Embeddings of a batch of inputs, one row each, in input order.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// `rows * dim` values, row-major.
    pub data: Vec<f32>,
    /// One row per input.
    pub rows: usize,
    /// Values per row.
    pub dim: usize,
    /// Tokens run through the model (padding excluded).
    pub tokens: usize,
    /// Indices of inputs cut to max_length.
    pub truncated: Vec<usize>,
}

impl Embeddings {
    /// The embedding of input `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Scales every row to unit L2 norm (rows of zeros stay zero).
    pub fn normalize(&mut self) {
        pool::normalize_rows(&mut self.data, self.dim);
    }
}

/// How far an encode has got: inputs and tokens done, of the totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Inputs encoded.
    pub done: usize,
    /// Inputs in all.
    pub total: usize,
    /// Tokens encoded.
    pub tokens_done: usize,
    /// Tokens in all.
    pub tokens_total: usize,
}

/// A decoder-only model turned into a text encoder.
pub struct Encoder {
    backbone: Box<dyn Backbone>,
    tokenizer: TextTokenizer,
    settings: Settings,
    model_type: String,
    quantized: bool,
}

impl Encoder {
    /// Loads `model` (short name, directory, `.gguf` file or hub id), merges `options.adapters` in order.
    pub fn from_pretrained(model: &str, options: Options) -> Result<Self> {
        Self::from_loaded(load::load(model, &options.device)?, options)
    }

    /// Like [`Encoder::from_pretrained`] for a model already read (and perhaps changed, see
    /// [`load::Loaded::add_token`]).
    pub fn from_loaded(mut loaded: load::Loaded, options: Options) -> Result<Self> {
        let mut llm2vec_config = loaded.llm2vec_config.take();
        for dir in &options.adapters {
            Adapter::load(dir)?.merge_into(&mut loaded.weights)?;
            let path = dir.join("llm2vec_config.json");
            if path.exists() {
                llm2vec_config = Some(crate::fs::read_json(&path)?);
            }
        }
        let settings = settings(&options, llm2vec_config.as_ref())?;
        if options.quantize && !(options.device.is_cpu() && options.dtype == DType::F32) {
            let msg = format!("8-bit products run on the CPU in f32, not {:?} on {:?}", options.dtype, options.device);
            return Err(Error::Option { option: "quantize", msg });
        }
        let backbone = loaded.config.build(&loaded.weights, options.dtype, &options.device, options.quantize)?;
        let model_type = loaded.config.model_type().to_string();
        Ok(Self { backbone, tokenizer: loaded.tokenizer, settings, model_type, quantized: options.quantize })
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The model's `model_type` (`llama`, `gemma2`, `bert`, ...).
    pub fn model_type(&self) -> &str {
        &self.model_type
    }

    /// The number format's short name: `q8` where the linear layers run on quantized weights, else the
    /// dtype's (`f32`, `bf16`, `f16`).
    pub fn precision(&self) -> &'static str {
        if self.quantized {
            "q8"
        } else {
            self.backbone.dtype().as_str()
        }
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        self.backbone.device()
    }

    /// The CPU kernels' instruction-set path ([`crate::cpu_kernels`]) when the model runs on the CPU.
    pub fn cpu_kernels(&self) -> Option<&'static str> {
        self.device().is_cpu().then(crate::cpu_kernels)
    }

    /// The embeddings' size.
    pub fn dim(&self) -> usize {
        self.backbone.hidden_size()
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The transformer.
    pub fn backbone(&self) -> &dyn Backbone {
        self.backbone.as_ref()
    }

    /// Tokenizes one input as `encode` would.
    pub fn tokenize(&self, input: &Input) -> Result<Tokenized> {
        if input.text.trim().is_empty() {
            return Err(Error::Input("empty text".into()));
        }
        let opts = self.settings.tokenize_options();
        let text = self.tokenizer.shorten_document(&input.text, &opts)?;
        let tokenized = self.tokenizer.tokenize(&input.instruction, &text, &opts)?;
        // Checks now, so that an error names this input rather than its batch.
        pool::weights(
            self.settings.pooling,
            &tokenized,
            self.settings.skip_instruction,
            self.tokenizer.bos_id(),
            tokenized.ids.len(),
        )?;
        Ok(tokenized)
    }

    /// Encodes inputs in length-sorted batches; rows come back in input order.
    pub fn encode(&self, inputs: &[Input]) -> Result<Embeddings> {
        self.encode_with_progress(inputs, self.settings.batch_size, |_| Ok(()))
    }

    /// Like [`Encoder::encode`] with batches of at most `batch_size` inputs (and the settings' padded
    /// tokens), calling `progress` once the inputs are tokenized and after each batch; an error from it stops
    /// the encode (a caller's way to cancel).
    pub fn encode_with_progress(
        &self,
        inputs: &[Input],
        batch_size: usize,
        progress: impl FnMut(Progress) -> Result<()>,
    ) -> Result<Embeddings> {
        Ok(self.encode_pooled(inputs, &[self.settings.pooling], batch_size, progress)?.remove(0))
    }

    /// Pools the same forward passes once per mode of `poolings`: the embeddings of encoders that differ
    /// from this one in pooling only, for the cost of one. Every mode must tokenize as this encoder's own
    /// (only `eos_token` appends a token, so it cannot share passes with the others).
    pub fn encode_poolings(&self, inputs: &[Input], poolings: &[Pooling]) -> Result<Vec<Embeddings>> {
        let eos = self.settings.pooling == Pooling::EosToken;
        if let Some(p) = poolings.iter().find(|&&p| (p == Pooling::EosToken) != eos) {
            return Err(Error::Input(format!(
                "{} pooling tokenizes differently from {} pooling; they cannot share forward passes",
                p.name(),
                self.settings.pooling.name()
            )));
        }
        self.encode_pooled(inputs, poolings, self.settings.batch_size, |_| Ok(()))
    }

    fn encode_pooled(
        &self,
        inputs: &[Input],
        poolings: &[Pooling],
        batch_size: usize,
        mut progress: impl FnMut(Progress) -> Result<()>,
    ) -> Result<Vec<Embeddings>> {
        check_positive("batch_size", batch_size)?;
        let tokenized = inputs
            .iter()
            .enumerate()
            .map(|(i, input)| self.tokenize(input).map_err(|e| e.at_input(i)))
            .collect::<Result<Vec<_>>>()?;
        let tokens = tokenized.iter().map(|t| t.ids.len()).sum();
        let mut at = Progress { done: 0, total: inputs.len(), tokens_done: 0, tokens_total: tokens };
        progress(at)?;
        let lengths: Vec<usize> = tokenized.iter().map(|t| t.ids.len()).collect();
        let dim = self.dim();
        let mut data = vec![vec![0f32; inputs.len() * dim]; poolings.len()];
        let order = batch::longest_first(&lengths);
        for batch in batch::batches(&order, &lengths, batch_size, self.settings.max_batch_tokens) {
            let items: Vec<&Tokenized> = batch.iter().map(|&i| &tokenized[i]).collect();
            let pooled = self.pool_batch(&items, poolings).map_err(|e| match e {
                Error::NonFinite { input } => Error::NonFinite { input: batch[input] },
                other => other,
            })?;
            for (rows, out) in pooled.iter().zip(&mut data) {
                batch::scatter(rows, batch, dim, out);
            }
            at.done += batch.len();
            at.tokens_done += items.iter().map(|t| t.ids.len()).sum::<usize>();
            progress(at)?;
        }
        let truncated: Vec<usize> = (0..inputs.len()).filter(|&i| tokenized[i].truncated).collect();
        Ok(data
            .into_iter()
            .map(|data| Embeddings { data, rows: inputs.len(), dim, tokens, truncated: truncated.clone() })
            .collect())
    }

    /// Runs one batch of tokenized inputs and returns the pooled rows, flattened. A row with NaN or infinite
    /// values is an [`Error::NonFinite`] naming its place in `items`.
    pub fn encode_batch(&self, items: &[&Tokenized]) -> Result<Vec<f32>> {
        Ok(self.pool_batch(items, &[self.settings.pooling])?.remove(0))
    }

    /// One forward pass over a batch, pooled once per mode; refuses rows that are not finite.
    fn pool_batch(&self, items: &[&Tokenized], poolings: &[Pooling]) -> Result<Vec<Vec<f32>>> {
        let device = self.backbone.device();
        let rows: Vec<&[u32]> = items.iter().map(|t| t.ids.as_slice()).collect();
        let lengths: Vec<usize> = rows.iter().map(|r| r.len()).collect();
        let (ids, seq_len) = batch::pad(&rows);
        let ids = Tensor::from_vec(ids, (items.len(), seq_len), device)?;
        let hidden = self.backbone.forward(&ids, &lengths, self.settings.attention)?;
        poolings
            .iter()
            .map(|&mode| {
                let mut weights = Vec::with_capacity(items.len() * seq_len);
                for t in items {
                    weights.extend(pool::weights(
                        mode,
                        t,
                        self.settings.skip_instruction,
                        self.tokenizer.bos_id(),
                        seq_len,
                    )?);
                }
                let pooled = pool::pool(&hidden, weights)?;
                let mut rows = pooled.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
                if self.settings.normalize {
                    pool::normalize_rows(&mut rows, self.dim());
                }
                match rows.chunks(self.dim()).position(|row| row.iter().any(|v| !v.is_finite())) {
                    Some(input) => Err(Error::NonFinite { input }),
                    None => Ok(rows),
                }
            })
            .collect()
    }
}

fn settings(options: &Options, llm2vec_config: Option<&Value>) -> Result<Settings> {
    let field = |key: &str| llm2vec_config.and_then(|c| c.get(key)).filter(|v| !v.is_null());
    let usize_field = |key: &str| field(key).and_then(Value::as_u64).map(|v| v as usize);
    let pooling = match (options.pooling, field("pooling_mode").and_then(Value::as_str)) {
        (Some(p), _) => p,
        (None, Some(name)) => name.parse()?,
        (None, None) => Pooling::default(),
    };
    let settings = Settings {
        pooling,
        max_length: options.max_length.or_else(|| usize_field("max_length")).unwrap_or(DEFAULT_MAX_LENGTH),
        doc_max_length: options
            .doc_max_length
            .or_else(|| usize_field("doc_max_length"))
            .unwrap_or(DEFAULT_DOC_MAX_LENGTH),
        skip_instruction: options
            .skip_instruction
            .or_else(|| field("skip_instruction").and_then(Value::as_bool))
            .unwrap_or(true),
        attention: options.attention,
        normalize: options.normalize || field("normalize").and_then(Value::as_bool).unwrap_or(false),
        batch_size: options.batch_size,
        max_batch_tokens: options.max_batch_tokens.unwrap_or_else(|| default_max_batch_tokens(&options.device)),
    };
    if settings.max_length < 2 {
        return Err(Error::Input(format!("max_length must be at least 2, got {}", settings.max_length)));
    }
    check_positive("doc_max_length", settings.doc_max_length)?;
    check_positive("batch_size", settings.batch_size)?;
    check_positive("max_batch_tokens", settings.max_batch_tokens)?;
    Ok(settings)
}

/// Refuses a count of 0, naming the setting.
fn check_positive(name: &str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(Error::Input(format!("{name} must be at least 1, got 0")));
    }
    Ok(())
}

/// Sets the number of CPU threads (call before loading a model). Also shortens how long candle's element-wise
/// worker threads spin while idle, unless `CANDLE_BARRIER_POOL_SPIN_LIMIT` is set: spinning workers compete with
/// the matrix-product threads for the same cores.
pub fn set_num_threads(n: usize) {
    std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string());
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "200");
    }
}
