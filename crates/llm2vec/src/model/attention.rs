//! Self-attention at the layer level: the attention masks of a batch, the tables every block reads
//! (`Context`), and the attention of a block from its fused q/k/v projection, with rotary embeddings
//! (the decoders) or without (BERT). It takes the fused op of `model/ops/` where it runs and composes
//! candle's ops elsewhere.

use candle_core::{DType, Device, Tensor};

use super::ops;
use super::tuning::Pass;
use crate::error::Result;

pub use super::ops::AttentionSpec;

/// Whether tokens see only earlier tokens (causal) or the whole sequence (bidirectional).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionMode {
    /// Each token sees itself and the tokens before it.
    Causal,
    /// Each token sees every (non-padding) token.
    Bidirectional,
}

/// The tensors every block of one batch reads: rotary tables and the attention bias, for global layers
/// and for sliding-window layers (the same tensors where a family has none).
pub struct Context {
    pub(crate) global: Attend,
    pub(crate) local: Attend,
}

/// Rotary tables (none in BERT) and attention bias for one kind of layer.
#[derive(Clone)]
pub(crate) struct Attend {
    /// `(cos, sin)`.
    pub rotary: Option<(Tensor, Tensor)>,
    pub bias: Tensor,
}

/// Additive attention bias `[batch, 1, seq, seq]` for right-padded sequences of the given lengths:
/// 0 where query i may attend key j, a large negative value elsewhere. A sliding window limits causal
/// attention to `i - j < window`; bidirectional attention sees every real token, as the reference's
/// bidirectional models do (they drop the window along with the causal mask).
pub fn attention_bias(
    lengths: &[usize],
    seq_len: usize,
    mode: AttentionMode,
    window: Option<usize>,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let blocked = if dtype == DType::F16 { -6.0e4f32 } else { -1.0e9f32 };
    let mut bias = vec![0f32; lengths.len() * seq_len * seq_len];
    for (b, &len) in lengths.iter().enumerate() {
        for i in 0..seq_len {
            let row = &mut bias[(b * seq_len + i) * seq_len..(b * seq_len + i + 1) * seq_len];
            for (j, v) in row.iter_mut().enumerate() {
                let visible =
                    j < len && (mode == AttentionMode::Bidirectional || (j <= i && window.is_none_or(|w| i - j < w)));
                if !visible {
                    *v = blocked;
                }
            }
        }
    }
    Ok(Tensor::from_vec(bias, (lengths.len(), 1, seq_len, seq_len), device)?.to_dtype(dtype)?)
}

/// Self-attention of one block from its fused projection `qkv: [b, l, (heads + 2 kv_heads) * d]`: rotary
/// embeddings on q and k where the context has them, then attention over v with the context's mask (and
/// in training the tuning's attention dropout); returns `[b, l, heads * d]`. One op reads q, k and v
/// where they are on the CPU (with its own backward); other devices and dtypes compose candle's ops
/// ([`ops::attention()`]).
pub(crate) fn self_attention(qkv: &Tensor, attend: &Attend, spec: AttentionSpec, pass: Pass) -> Result<Tensor> {
    let Attend { rotary, bias } = attend;
    let dropout = match pass {
        Pass::Train(tuning) => tuning.dropout_seed().map(|seed| (tuning.attention_dropout(), seed)),
        Pass::Infer => None,
    };
    ops::attention(qkv, rotary.as_ref().map(|(cos, sin)| (cos, sin)), bias, spec, dropout)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::*;
    use crate::model::ops::tests::{max_diff, values};
    use crate::model::rotary::{RopeScaling, Rotary};

    /// The rows of the real tokens of `fused` and `composed` (`[b, l, ..]`) agree within 1e-5. Padding
    /// rows see nothing but blocked keys; their values differ between dtypes and are never used.
    fn assert_real_rows_agree(fused: &Tensor, composed: &Tensor, lengths: &[usize], case: &str) {
        for (i, &len) in lengths.iter().enumerate() {
            let (f, c) =
                (fused.get(i).unwrap().narrow(0, 0, len).unwrap(), composed.get(i).unwrap().narrow(0, 0, len).unwrap());
            assert!(max_diff(&f, &c) < 1e-5, "{case}, sequence {i}: {}", max_diff(&f, &c));
        }
    }

    /// Inference attention on the CPU in f32 (one op reading the fused q/k/v) against the composed candle
    /// ops in f64, compared on the real tokens' rows: the decoders' (grouped heads, rotary embedding, padding,
    /// causal with a window, soft-capping) and BERT's (as many key/value heads as heads, no rotary embedding).
    #[test]
    fn self_attention_matches_the_composed_ops() {
        let (b, heads, l, d) = (3, 6, 9, 8);
        let rotary = Rotary::new(d, 100.0, &RopeScaling::None);
        for (mode, window, softcap, kv, rotated) in [
            (AttentionMode::Bidirectional, None, None, 2, true),
            (AttentionMode::Causal, Some(3), Some(2.0), 2, true),
            (AttentionMode::Bidirectional, None, None, heads, false),
        ] {
            let qkv = values(&[b, l, (heads + 2 * kv) * d], 7);
            let lengths = [9, 4, 1];
            let spec = AttentionSpec { heads, kv_heads: kv, head_dim: d, scale: 0.3, softcap };
            let run = |dtype: DType| {
                let rotary = rotated.then(|| rotary.tables(l, dtype, &Device::Cpu).unwrap());
                let bias = attention_bias(&lengths, l, mode, window, dtype, &Device::Cpu).unwrap();
                self_attention(&qkv.to_dtype(dtype).unwrap(), &Attend { rotary, bias }, spec, Pass::Infer).unwrap()
            };
            let (fused, composed) = (run(DType::F32), ops::composed_ops(|| run(DType::F64)));
            assert_eq!(fused.dims(), &[b, l, heads * d]);
            let case = format!("{mode:?} {window:?} {softcap:?} {kv} key/value heads, rotary {rotated}");
            assert_real_rows_agree(&fused, &composed, &lengths, &case);
        }
    }
}
