//! Self-attention at the layer level: the attention masks of a batch, the tables every block reads
//! (`Context`), and the attention of a block from its fused q/k/v projection (the decoders, with rotary
//! embeddings) or from separate q, k and v heads (BERT). Each takes the fused op of `model/ops/` where
//! it runs and composes candle's ops elsewhere.

use candle_core::{DType, Device, Tensor};

use super::ops::{self, split_attention};
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

/// Rotary tables and attention bias for one kind of layer.
#[derive(Clone)]
pub(crate) struct Attend {
    pub cos: Tensor,
    pub sin: Tensor,
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
/// embeddings on q and k, then attention over v with the context's mask (and in training the tuning's
/// attention dropout); returns `[b, l, heads * d]`. One op reads q, k and v where they are on the CPU
/// (with its own backward); other devices and dtypes compose candle's ops ([`ops::attention()`]).
pub(crate) fn rotary_attention(qkv: &Tensor, attend: &Attend, spec: AttentionSpec, pass: Pass) -> Result<Tensor> {
    let Attend { cos, sin, bias } = attend;
    let dropout = match pass {
        Pass::Train(tuning) => tuning.dropout_seed().map(|seed| (tuning.attention_dropout(), seed)),
        Pass::Infer => None,
    };
    ops::attention(qkv, cos, sin, bias, spec, dropout)
}

/// Scaled dot-product attention with grouped-query heads, for inference, with `spec`'s scale and soft
/// cap. `q: [b, heads, l, d]`, `k, v: [b, kv_heads, l, d]`, `bias: [b, 1, l, l]`; returns `[b, l, heads * d]`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor, spec: &AttentionSpec) -> Result<Tensor> {
    if let Some(out) = split_attention::attention(q, k, v, bias, spec)? {
        return Ok(out);
    }
    ops::attention::sdpa(q, k, v, bias, spec, None)
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

    /// The fused op (f32) against the composed candle ops (f64, which the op does not take):
    /// grouped heads, padding, both attention modes, a sliding window, soft-capping and a strided v,
    /// compared on the real tokens' rows.
    #[test]
    fn attention_matches_the_composed_ops() {
        let (b, heads, kv, l, d) = (3, 6, 2, 9, 8);
        for (mode, window, softcap) in [
            (AttentionMode::Bidirectional, None, None),
            (AttentionMode::Causal, Some(3), None),
            (AttentionMode::Causal, None, Some(2.0)),
        ] {
            let q = values(&[b, heads, l, d], 1);
            let k = values(&[b, kv, l, d], 2);
            let v = values(&[b, l, kv, d], 3).transpose(1, 2).unwrap();
            let lengths = [9, 4, 1];
            let bias = attention_bias(&lengths, l, mode, window, DType::F32, &Device::Cpu).unwrap();
            let spec = AttentionSpec { heads, kv_heads: kv, head_dim: d, scale: 0.3, softcap };
            let fused = attention(&q, &k, &v, &bias, &spec).unwrap();
            let f64s = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
            let composed = attention(&f64s(&q), &f64s(&k), &f64s(&v), &f64s(&bias), &spec).unwrap();
            assert_eq!(fused.dims(), &[b, l, heads * d]);
            assert_real_rows_agree(&fused, &composed, &lengths, &format!("{mode:?} {window:?} {softcap:?}"));
        }
    }

    /// Inference attention of the decoder families on the CPU in f32 (one op reading the fused q/k/v with
    /// its rotary embedding) against the composed candle ops in f64: grouped heads, padding, causal with a
    /// window, soft-capping, compared on the real tokens' rows.
    #[test]
    fn rotary_attention_matches_the_composed_ops() {
        let (b, heads, kv, l, d) = (3, 6, 2, 9, 8);
        let rotary = Rotary::new(d, 100.0, &RopeScaling::None);
        for (mode, window, softcap) in
            [(AttentionMode::Bidirectional, None, None), (AttentionMode::Causal, Some(3), Some(2.0))]
        {
            let qkv = values(&[b, l, (heads + 2 * kv) * d], 7);
            let lengths = [9, 4, 1];
            let spec = AttentionSpec { heads, kv_heads: kv, head_dim: d, scale: 0.3, softcap };
            let run = |dtype: DType| {
                let (cos, sin) = rotary.tables(l, dtype, &Device::Cpu).unwrap();
                let bias = attention_bias(&lengths, l, mode, window, dtype, &Device::Cpu).unwrap();
                rotary_attention(&qkv.to_dtype(dtype).unwrap(), &Attend { cos, sin, bias }, spec, Pass::Infer).unwrap()
            };
            let (fused, composed) = (run(DType::F32), ops::composed_ops(|| run(DType::F64)));
            assert_eq!(fused.dims(), &[b, l, heads * d]);
            assert_real_rows_agree(&fused, &composed, &lengths, &format!("{mode:?} {window:?} {softcap:?}"));
        }
    }
}
