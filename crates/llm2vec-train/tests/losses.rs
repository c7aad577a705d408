//! Loss values against hand-computed numbers (closed forms written out below).

use candle_core::{Device, Tensor};
use llm2vec_train::loss::{contrastive_loss, masked_mean_pool, mntp_loss, scalar, simcse_loss};
use llm2vec_train::mask::IGNORE_INDEX;

fn matrix(rows: &[&[f64]]) -> Tensor {
    let data: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_vec(data, (rows.len(), rows[0].len()), &Device::Cpu).unwrap()
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} vs {b}");
}

#[test]
fn mntp_is_shifted_cross_entropy() {
    let l3 = 3f64.ln();
    let l2 = 2f64.ln();
    // Sequence 0: logits at 0 are [0, ln3] -> p(0) = 1/4; at 1 [ln2, 0] -> p(1) = 1/3.
    // Position 2's logits are never used; the label at position 0 has no predecessor.
    let seq0 = [[0.0, l3], [l2, 0.0], [50.0, -50.0]];
    let seq1 = [[7.0, 1.0], [2.0, 2.0], [0.0, 0.0]];
    let data: Vec<f64> = seq0.iter().chain(&seq1).flatten().copied().collect();
    let logits = Tensor::from_vec(data, (2, 3, 2), &Device::Cpu).unwrap();
    // Sequence 1: label 0 at position 2 is predicted by [2, 2] -> p = 1/2.
    let labels = [1, 0, 1, IGNORE_INDEX, IGNORE_INDEX, 0];
    let expected = (4f64.ln() + 3f64.ln() + 2f64.ln()) / 3.0;
    close(scalar(&mntp_loss(&logits, &labels).unwrap()).unwrap(), expected);
}

#[test]
fn mntp_rejects_bad_labels() {
    let logits = Tensor::zeros((1, 3, 2), candle_core::DType::F64, &Device::Cpu).unwrap();
    assert!(mntp_loss(&logits, &[IGNORE_INDEX; 3]).is_err());
    assert!(mntp_loss(&logits, &[0, 2, IGNORE_INDEX]).is_err());
    assert!(mntp_loss(&logits, &[0, 1]).is_err());
}

#[test]
fn simcse_in_batch_negatives() {
    // cos(q0,p0)=1, cos(q0,p1)=1/sqrt2, cos(q1,p0)=0, cos(q1,p1)=1/sqrt2; scale 20.
    let q = matrix(&[&[1.0, 0.0], &[0.0, 3.0]]);
    let p = matrix(&[&[2.0, 0.0], &[1.0, 1.0]]);
    let c = 20.0 / 2f64.sqrt();
    let row0 = (1.0 + (c - 20.0).exp()).ln();
    let row1 = (1.0 + (-c).exp()).ln();
    close(scalar(&simcse_loss(&q, &p, 20.0).unwrap()).unwrap(), (row0 + row1) / 2.0);
}

#[test]
fn supervised_with_hard_negatives() {
    let q = matrix(&[&[1.0, 0.0], &[0.0, 1.0]]);
    let p = matrix(&[&[2.0, 0.0], &[0.0, 3.0]]);
    let n = matrix(&[&[1.0, 1.0], &[-1.0, 0.0]]);
    let s = 2.0;
    let h = 1.0 / 2f64.sqrt();
    // Row 0 scores s*[1, 0, h, -1] (target 0); row 1 s*[0, 1, h, 0] (target 1).
    let lse = |xs: &[f64]| xs.iter().map(|x| (s * x).exp()).sum::<f64>().ln();
    let row0 = lse(&[1.0, 0.0, h, -1.0]) - s;
    let row1 = lse(&[0.0, 1.0, h, 0.0]) - s;
    close(scalar(&contrastive_loss(&q, &p, Some(&n), s).unwrap()).unwrap(), (row0 + row1) / 2.0);
    assert!(contrastive_loss(&q, &n.narrow(0, 0, 1).unwrap(), None, s).is_err());
}

#[test]
fn pooling_uses_real_tokens_only() {
    let h = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 100.0, 100.0], (1, 3, 2), &Device::Cpu).unwrap();
    let mask = Tensor::from_vec(vec![1.0f64, 1.0, 0.0], (1, 3), &Device::Cpu).unwrap();
    let pooled: Vec<Vec<f64>> = masked_mean_pool(&h, &mask).unwrap().to_vec2().unwrap();
    assert_eq!(pooled, vec![vec![2.0, 3.0]]);
}
