//! Architectures: GGUF hyper-parameters to a Hugging Face config.json, GGUF tensor names to Hugging Face
//! names, and the value transforms llama.cpp's converter applied (q/k row permutation, Gemma's norm + 1).

use serde_json::{json, Map, Value as Json};

use super::reader::{GgufFile, Value};
use super::tokenizer::SpecialIds;
use crate::error::{Error, Result};

/// The architectures this loader understands.
pub const SUPPORTED: &str = "llama, qwen2, gemma, gemma2, gemma3";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Gemma,
    Gemma2,
    Gemma3,
}

impl Arch {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "gemma" => Arch::Gemma,
            "gemma2" => Arch::Gemma2,
            "gemma3" => Arch::Gemma3,
            _ => return None,
        })
    }

    /// The GGUF metadata key prefix, i.e. `general.architecture`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Gemma => "gemma",
            Arch::Gemma2 => "gemma2",
            Arch::Gemma3 => "gemma3",
        }
    }

    fn is_gemma(self) -> bool {
        matches!(self, Arch::Gemma | Arch::Gemma2 | Arch::Gemma3)
    }

    /// Gemma 2 and 3 have a norm before and after both the attention and the MLP.
    fn has_sandwich_norms(self) -> bool {
        matches!(self, Arch::Gemma2 | Arch::Gemma3)
    }

    fn hf_names(self) -> (&'static str, &'static str) {
        match self {
            Arch::Llama => ("llama", "LlamaForCausalLM"),
            Arch::Qwen2 => ("qwen2", "Qwen2ForCausalLM"),
            Arch::Gemma => ("gemma", "GemmaForCausalLM"),
            Arch::Gemma2 => ("gemma2", "Gemma2ForCausalLM"),
            Arch::Gemma3 => ("gemma3_text", "Gemma3ForCausalLM"),
        }
    }
}

/// The hyper-parameters every supported architecture has.
#[derive(Debug, Clone)]
pub struct Hparams {
    pub n_layer: usize,
    pub hidden: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
}

/// Typed access to `{arch}.*` metadata with errors naming the key.
struct Meta<'a> {
    file: &'a GgufFile,
    arch: Arch,
}

impl Meta<'_> {
    fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.arch.name())
    }

    fn bad(&self, key: &str, msg: String) -> Error {
        Error::Config { path: self.file.path().to_path_buf(), field: key.to_string(), msg }
    }

    fn uint(&self, suffix: &str) -> Result<Option<usize>> {
        let key = self.key(suffix);
        match self.file.get(&key) {
            None => Ok(None),
            Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
                Some(n) => Ok(Some(n)),
                None => Err(self.bad(&key, format!("expected an unsigned integer, found {v:?}"))),
            },
        }
    }

    fn required(&self, suffix: &str) -> Result<usize> {
        match self.uint(suffix)? {
            Some(n) if n > 0 => Ok(n),
            Some(_) => Err(self.bad(&self.key(suffix), "must be positive".into())),
            None => Err(self.bad(&self.key(suffix), "missing".into())),
        }
    }

    fn float(&self, suffix: &str) -> Result<Option<f64>> {
        let key = self.key(suffix);
        match self.file.get(&key) {
            None => Ok(None),
            // An f32 becomes the f64 of its shortest decimal form, so that 1e-5 stays 1e-5 in the config.
            Some(Value::F32(f)) => Ok(format!("{f}").parse().ok()),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| self.bad(&key, format!("expected a number, found {v:?}"))),
        }
    }

    fn string(&self, suffix: &str) -> Result<Option<&str>> {
        let key = self.key(suffix);
        match self.file.get(&key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| self.bad(&key, format!("expected a string, found {v:?}"))),
        }
    }
}

pub fn hparams(file: &GgufFile, arch: Arch) -> Result<Hparams> {
    let meta = Meta { file, arch };
    let hidden = meta.required("embedding_length")?;
    let n_head = meta.required("attention.head_count")?;
    let n_head_kv = meta.uint("attention.head_count_kv")?.unwrap_or(n_head);
    if !n_head.is_multiple_of(n_head_kv) {
        return Err(
            meta.bad(&meta.key("attention.head_count_kv"), format!("{n_head_kv} does not divide {n_head} heads"))
        );
    }
    let head_dim = match meta.uint("attention.key_length")? {
        Some(d) => d,
        None if hidden.is_multiple_of(n_head) => hidden / n_head,
        None => return Err(meta.bad(&meta.key("attention.head_count"), format!("{n_head} does not divide {hidden}"))),
    };
    Ok(Hparams { n_layer: meta.required("block_count")?, hidden, n_head, n_head_kv, head_dim })
}

/// The Hugging Face config.json of the model.
pub fn config(file: &GgufFile, arch: Arch, hp: &Hparams, ids: &SpecialIds) -> Result<Json> {
    let meta = Meta { file, arch };
    let embed =
        file.tensor("token_embd.weight").ok_or_else(|| Error::weight(file.path(), "token_embd.weight", "missing"))?;
    let vocab_size = embed.dims.get(1).copied().unwrap_or(0);
    let (model_type, class) = arch.hf_names();
    let default_eps = if arch.is_gemma() { 1e-6 } else { 1e-5 };
    let mut c = json!({
        "architectures": [class],
        "model_type": model_type,
        "hidden_size": hp.hidden,
        "intermediate_size": meta.required("feed_forward_length")?,
        "num_hidden_layers": hp.n_layer,
        "num_attention_heads": hp.n_head,
        "num_key_value_heads": hp.n_head_kv,
        "head_dim": hp.head_dim,
        "rms_norm_eps": meta.float("attention.layer_norm_rms_epsilon")?.unwrap_or(default_eps),
        "rope_theta": meta.float("rope.freq_base")?.unwrap_or(10_000.0),
        "vocab_size": vocab_size,
        "max_position_embeddings": meta.uint("context_length")?.unwrap_or(2048),
        "tie_word_embeddings": file.tensor("output.weight").is_none(),
        "bos_token_id": ids.bos,
        "eos_token_id": ids.eos,
        "pad_token_id": ids.pad,
        "rope_scaling": match llama3_rope_scaling(file, hp)? {
            Some(scaling) => scaling,
            None => rope_scaling(&meta)?,
        },
        "attention_bias": file.tensor("blk.0.attn_q.bias").is_some(),
        "hidden_act": if arch.is_gemma() { "gelu_pytorch_tanh" } else { "silu" },
        "torch_dtype": "float32",
    });
    if let Json::Object(map) = &mut c {
        add_arch_fields(&meta, hp, map)?;
    }
    Ok(c)
}

fn add_arch_fields(meta: &Meta, hp: &Hparams, c: &mut Map<String, Json>) -> Result<()> {
    let arch = meta.arch;
    if arch.is_gemma() {
        c.insert("hidden_activation".into(), json!("gelu_pytorch_tanh"));
    }
    match arch {
        Arch::Gemma2 => {
            c.insert("sliding_window".into(), json!(meta.uint("attention.sliding_window")?.unwrap_or(4096)));
            c.insert("attn_logit_softcapping".into(), json!(meta.float("attn_logit_softcapping")?));
            c.insert("final_logit_softcapping".into(), json!(meta.float("final_logit_softcapping")?));
            // llama.cpp scales the 27B model (46 layers) by 1/sqrt(hidden / heads), the others by 1/sqrt(head_dim).
            c.insert("query_pre_attn_scalar".into(), json!(query_pre_attn_scalar(hp, 46)));
        }
        Arch::Gemma3 => {
            let pattern = 6;
            c.insert("sliding_window".into(), json!(meta.uint("attention.sliding_window")?.unwrap_or(4096)));
            c.insert("sliding_window_pattern".into(), json!(pattern));
            c.insert("layer_types".into(), json!(gemma3_layer_types(hp.n_layer, pattern)));
            c.insert("rope_local_base_freq".into(), json!(10_000.0));
            c.insert("attn_logit_softcapping".into(), Json::Null);
            c.insert("final_logit_softcapping".into(), Json::Null);
            // As Gemma 2; the 27B model has 62 layers.
            c.insert("query_pre_attn_scalar".into(), json!(query_pre_attn_scalar(hp, 62)));
        }
        Arch::Qwen2 => {
            c.insert("use_sliding_window".into(), json!(false));
        }
        Arch::Llama | Arch::Gemma => {}
    }
    Ok(())
}

fn query_pre_attn_scalar(hp: &Hparams, layers_of_largest: usize) -> usize {
    if hp.n_layer == layers_of_largest {
        hp.hidden / hp.n_head
    } else {
        hp.head_dim
    }
}

/// Every `pattern`-th layer attends globally, the others through the sliding window.
fn gemma3_layer_types(n_layer: usize, pattern: usize) -> Vec<&'static str> {
    (0..n_layer).map(|i| if (i + 1).is_multiple_of(pattern) { "full_attention" } else { "sliding_attention" }).collect()
}

fn rope_scaling(meta: &Meta) -> Result<Json> {
    let factor = meta.float("rope.scaling.factor")?.or(meta.float("rope.scale_linear")?);
    let kind = match meta.string("rope.scaling.type")? {
        Some(kind) => kind,
        None if factor.is_some() => "linear",
        None => return Ok(Json::Null),
    };
    let factor = factor.unwrap_or(1.0);
    Ok(match kind {
        "none" => Json::Null,
        "linear" => json!({ "type": "linear", "rope_type": "linear", "factor": factor }),
        "yarn" => json!({
            "type": "yarn",
            "rope_type": "yarn",
            "factor": factor,
            "original_max_position_embeddings": meta.uint("rope.scaling.original_context_length")?,
        }),
        other => {
            let key = meta.key("rope.scaling.type");
            return Err(
                meta.bad(&key, format!("rope scaling `{other}` is not supported (supported: none, linear, yarn)"))
            );
        }
    })
}

/// The GGUF tensor holding Llama 3's per-frequency rope divisors; it becomes `rope_scaling` in the config.
pub const ROPE_FREQS: &str = "rope_freqs.weight";

/// Llama 3.1+ GGUFs carry `rope_freqs.weight` instead of rope-scaling keys. Hugging Face describes those
/// divisors by (factor, low/high frequency factors, original context); recover them, assuming the values every
/// Llama 3 release uses for all but the factor (1, 4, 8192), and check they reproduce the tensor.
fn llama3_rope_scaling(file: &GgufFile, hp: &Hparams) -> Result<Option<Json>> {
    let Some(info) = file.tensor(ROPE_FREQS) else { return Ok(None) };
    let divisors = file.dequantize(info)?;
    let bad = |msg: String| Error::weight(file.path(), ROPE_FREQS, msg);
    let factor = divisors.iter().copied().fold(f32::NAN, f32::max) as f64;
    let meta = Meta { file, arch: Arch::Llama };
    let base = meta.float("rope.freq_base")?.unwrap_or(10_000.0);
    let dim = 2 * divisors.len();
    let (low, high, original) = (1.0, 4.0, 8192.0);
    for (i, &d) in divisors.iter().enumerate() {
        let freq = 1.0 / base.powf((2 * i) as f64 / dim as f64);
        let wavelen = 2.0 * std::f64::consts::PI / freq;
        let want = if wavelen < original / high {
            1.0
        } else if wavelen > original / low {
            factor
        } else {
            let smooth = (original / wavelen - low) / (high - low);
            1.0 / ((1.0 - smooth) / factor + smooth)
        };
        if (d as f64 - want).abs() > 1e-3 * want {
            return Err(bad(format!("divisor {i} is {d}, not Llama 3 rope scaling's {want} (factor {factor})")));
        }
    }
    if dim != hp.head_dim {
        return Err(bad(format!("{} divisors for head_dim {}", divisors.len(), hp.head_dim)));
    }
    Ok(Some(json!({
        "rope_type": "llama3",
        "factor": factor,
        "low_freq_factor": low,
        "high_freq_factor": high,
        "original_max_position_embeddings": original as u64,
    })))
}

/// The Hugging Face name of GGUF tensor `name`, or `None` when it has none.
pub fn hf_name(arch: Arch, name: &str) -> Option<String> {
    match name {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let (layer, rest) = name.strip_prefix("blk.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, suffix) = rest.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let hf = match module {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        "ffn_norm" if arch.has_sandwich_norms() => "pre_feedforward_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "post_attention_norm" if arch.has_sandwich_norms() => "post_attention_layernorm",
        "post_ffw_norm" if arch.has_sandwich_norms() => "post_feedforward_layernorm",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{suffix}"))
}

/// Undoes what llama.cpp's converter did to the tensor's values, in place or by reordering rows.
pub fn restore(arch: Arch, hp: &Hparams, hf_name: &str, data: Vec<f32>) -> Result<Vec<f32>, String> {
    if arch.is_gemma() && hf_name.ends_with("norm.weight") {
        // convert_hf_to_gguf stored Gemma's RMSNorm weights as w + 1; Hugging Face multiplies by (1 + w).
        return Ok(data.into_iter().map(|w| w - 1.0).collect());
    }
    if arch == Arch::Llama {
        if hf_name.contains(".self_attn.q_proj.") {
            return unpermute_rows(&data, hp.n_head, hp.head_dim);
        }
        if hf_name.contains(".self_attn.k_proj.") {
            return unpermute_rows(&data, hp.n_head_kv, hp.head_dim);
        }
    }
    Ok(data)
}

/// Inverts convert_hf_to_gguf's `permute`: per head, GGUF row `2i + j` is Hugging Face row `j * head_dim/2 + i`.
pub fn unpermute_rows(data: &[f32], n_head: usize, head_dim: usize) -> Result<Vec<f32>, String> {
    let rows = n_head.saturating_mul(head_dim);
    if !head_dim.is_multiple_of(2) || rows == 0 || rows > data.len() || !data.len().is_multiple_of(rows) {
        return Err(format!("{} values are not {n_head} heads of {head_dim} (even) rows", data.len()));
    }
    let row_len = data.len() / rows;
    let half = head_dim / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let src = (h * head_dim + 2 * i + j) * row_len;
                let dst = (h * head_dim + j * half + i) * row_len;
                out[dst..dst + row_len].copy_from_slice(&data[src..src + row_len]);
            }
        }
    }
    Ok(out)
}
