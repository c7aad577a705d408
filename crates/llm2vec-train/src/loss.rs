//! Training losses on candle tensors, composed only from ops that record gradients
//! (candle's fused softmax/norm kernels do not): MNTP shifted cross-entropy, masked mean
//! pooling, and the SimCSE / supervised contrastive loss (scaled cosine similarity,
//! cross-entropy over in-batch and hard negatives).

use crate::mask::IGNORE_INDEX;
use crate::{Result, TrainError};
use candle_core::{DType, Tensor, D};

/// Log-softmax over the last dimension, built from differentiable ops.
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// Mean negative log-likelihood of `targets[i]` under row `i` of `logits` [n, v].
pub fn cross_entropy(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let (n, v) = logits.dims2()?;
    if n != targets.len() || n == 0 {
        return Err(TrainError::Invalid(format!("cross_entropy: {n} rows but {} targets", targets.len())));
    }
    if let Some(t) = targets.iter().find(|&&t| t as usize >= v) {
        return Err(TrainError::Invalid(format!("target {t} out of range for {v} classes")));
    }
    let idx = Tensor::from_slice(targets, (n, 1), logits.device())?;
    let picked = log_softmax(logits)?.gather(&idx, 1)?;
    Ok(picked.mean_all()?.neg()?)
}

/// MNTP loss: the label at position i is predicted from the logits at position i-1
/// (labels at position 0 are never used); `IGNORE_INDEX` labels are skipped.
/// `logits` is [b, t, v]; `labels` is row-major [b, t].
pub fn mntp_loss(logits: &Tensor, labels: &[i64]) -> Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    if labels.len() != b * t {
        return Err(TrainError::Invalid(format!("mntp_loss: {} labels for a {b}x{t} batch", labels.len())));
    }
    let (rows, targets) = shifted_targets(labels, t, v)?;
    if rows.is_empty() {
        return Err(TrainError::Invalid("mntp_loss: no masked tokens in the batch".into()));
    }
    let rows = Tensor::from_slice(&rows, rows.len(), logits.device())?;
    let picked = logits.reshape((b * t, v))?.index_select(&rows, 0)?;
    cross_entropy(&picked, &targets)
}

fn shifted_targets(labels: &[i64], t: usize, v: usize) -> Result<(Vec<u32>, Vec<u32>)> {
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for (k, &label) in labels.iter().enumerate() {
        if k % t == 0 || label == IGNORE_INDEX {
            continue;
        }
        if label < 0 || label as usize >= v {
            return Err(TrainError::Invalid(format!("label {label} out of range for {v} classes")));
        }
        rows.push((k - 1) as u32);
        targets.push(label as u32);
    }
    Ok((rows, targets))
}

/// Mean over the real tokens: `hidden` [b, t, d], `mask` [b, t] of 1/0 (same dtype as hidden).
pub fn masked_mean_pool(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.unsqueeze(D::Minus1)?;
    let sum = hidden.broadcast_mul(&m)?.sum(1)?;
    let count = m.sum(1)?.clamp(1e-9, f64::INFINITY)?;
    Ok(sum.broadcast_div(&count)?)
}

/// Rows scaled to unit L2 norm (norms below 1e-12 are treated as 1e-12, as torch's normalize).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    let floor = Tensor::full(1e-12, norm.shape(), norm.device())?.to_dtype(norm.dtype())?;
    Ok(x.broadcast_div(&norm.maximum(&floor)?)?)
}

/// Contrastive loss of the reference (HardNegativeNLLLoss): query i must pick document i
/// among all positives and hard negatives, scores = `scale` x cosine similarity.
/// `queries`, `positives` are [n, d]; `negatives` is [m, d].
pub fn contrastive_loss(
    queries: &Tensor,
    positives: &Tensor,
    negatives: Option<&Tensor>,
    scale: f64,
) -> Result<Tensor> {
    let n = queries.dim(0)?;
    if positives.dim(0)? != n {
        return Err(TrainError::Invalid(format!("{n} queries but {} positives", positives.dim(0)?)));
    }
    let docs = match negatives {
        Some(neg) => Tensor::cat(&[positives, neg], 0)?,
        None => positives.clone(),
    };
    let scores = l2_normalize(queries)?.matmul(&l2_normalize(&docs)?.t()?)?.affine(scale, 0.0)?;
    let targets: Vec<u32> = (0..n as u32).collect();
    cross_entropy(&scores, &targets)
}

/// Unsupervised SimCSE: the two dropout views of each sentence are positives, the other
/// sentences' views in-batch negatives.
pub fn simcse_loss(view_a: &Tensor, view_b: &Tensor, scale: f64) -> Result<Tensor> {
    contrastive_loss(view_a, view_b, None, scale)
}

/// A scalar tensor's value as f64.
pub fn scalar(x: &Tensor) -> Result<f64> {
    Ok(x.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}
