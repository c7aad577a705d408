//! Pooling: one vector per sequence from the last hidden states, over the positions chosen by the mode.

use std::str::FromStr;

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};
use crate::tokenize::Tokenized;

/// How token states become one sentence embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// Average over the pooled positions (the mode when neither the options nor the model name one).
    #[default]
    Mean,
    /// Weighted average with weights 1, 2, ..., n over the pooled positions.
    WeightedMean,
    /// The appended end-of-sequence token.
    EosToken,
    /// The last token of the sequence.
    LastToken,
    /// The beginning-of-sequence token.
    BosToken,
}

impl Pooling {
    /// Every mode, in the order help texts list them.
    pub const ALL: [Pooling; 5] =
        [Pooling::Mean, Pooling::WeightedMean, Pooling::EosToken, Pooling::LastToken, Pooling::BosToken];

    /// The mode's name, as the reference's `pooling_mode` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::WeightedMean => "weighted_mean",
            Pooling::EosToken => "eos_token",
            Pooling::LastToken => "last_token",
            Pooling::BosToken => "bos_token",
        }
    }

    /// Every name, comma-separated.
    pub fn names() -> String {
        Self::ALL.map(Pooling::name).join(", ")
    }
}

impl FromStr for Pooling {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| Error::Input(format!("unknown pooling mode `{s}`; expected one of {}", Self::names())))
    }
}

/// Per-position weights of one sequence, of length `seq_len` (positions past the sequence get 0).
pub fn weights(
    mode: Pooling,
    t: &Tokenized,
    skip_instruction: bool,
    bos_id: Option<u32>,
    seq_len: usize,
) -> Result<Vec<f32>> {
    let mut w = vec![0f32; seq_len];
    let range = if skip_instruction { t.text_range.clone() } else { 0..t.ids.len() };
    match mode {
        Pooling::Mean | Pooling::WeightedMean => {
            if range.is_empty() {
                return Err(Error::Input(
                    "no text tokens left to pool (empty text, or the instruction fills max_length)".into(),
                ));
            }
            let n = range.len();
            let total = if mode == Pooling::Mean { n as f32 } else { (n * (n + 1) / 2) as f32 };
            for (k, pos) in range.enumerate() {
                w[pos] = if mode == Pooling::Mean { 1.0 } else { (k + 1) as f32 } / total;
            }
        }
        Pooling::EosToken | Pooling::LastToken => w[t.ids.len() - 1] = 1.0,
        Pooling::BosToken => {
            let bos = bos_id.ok_or_else(|| Error::Input("bos_token pooling: the tokenizer has no BOS token".into()))?;
            let pos = t.ids.iter().position(|&id| id == bos).ok_or_else(|| {
                Error::Input("bos_token pooling: the tokenizer does not add a BOS token to the input".into())
            })?;
            w[pos] = 1.0;
        }
    }
    Ok(w)
}

/// Pools `hidden: [batch, seq, dim]` with `weights: [batch, seq]` into `[batch, dim]` (f32).
pub fn pool(hidden: &Tensor, weights: Vec<f32>) -> Result<Tensor> {
    let (b, l, _) = hidden.dims3()?;
    let w = Tensor::from_vec(weights, (b, 1, l), hidden.device())?;
    Ok(w.matmul(&hidden.to_dtype(DType::F32)?)?.squeeze(1)?)
}

/// Scales each `dim`-wide row of `data` to unit L2 norm (rows of zeros stay zero).
pub fn normalize_rows(data: &mut [f32], dim: usize) {
    for row in data.chunks_mut(dim.max(1)) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
}
