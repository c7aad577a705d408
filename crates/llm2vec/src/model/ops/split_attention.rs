//! Inference attention on the CPU in f32 as one op: per (sequence, head) one product for the scores,
//! softmax in place, one product written straight into the `[b, l, heads * d]` output. Grouped k/v heads
//! are read where they are (no repeated copies) and q/k/v may be strided views, so the layer does not
//! materialise score, probability or transposed tensors; the many tiny per-head products of short
//! sequences skip candle's per-op overhead.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use super::{cpu_data, fused_cpu, AttentionSpec};
use crate::error::Result;
use crate::model::cpu::gemm::{product_at, Matrix};
use crate::model::cpu::softmax;

/// `q: [b, heads, l, d]`, `k, v: [b, kv_heads, l, d]` (f32, CPU, last dimension contiguous), `bias:
/// [b, 1, l, l]`, with `spec`'s scale and soft cap; returns `[b, l, heads * d]`. `None` when the inputs do
/// not fit this op.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor, spec: &AttentionSpec) -> Result<Option<Tensor>> {
    let fits = |t: &Tensor| fused_cpu(t) && t.stride().last() == Some(&1);
    if ![q, k, v, bias].into_iter().all(fits) {
        return Ok(None);
    }
    let (guard, layout) = bias.storage_and_layout();
    let Some(bias) = cpu_data::<f32>(&guard, layout) else {
        return Ok(None);
    };
    let op = Attention { bias, scale: spec.scale as f32, softcap: spec.softcap.map(|c| c as f32) };
    Ok(Some(q.apply_op3_no_bwd(k, v, &op)?))
}

struct Attention<'a> {
    /// `[b, l, l]`, added to the scores.
    bias: &'a [f32],
    scale: f32,
    softcap: Option<f32>,
}

/// A `[b, n, l, d]` operand: its data from the storage offset and its strides.
struct Operand<'a> {
    data: &'a [f32],
    batch: usize,
    head: usize,
    row: usize,
}

impl<'a> Operand<'a> {
    fn new(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<Self> {
        let CpuStorage::F32(data) = storage else { candle_core::bail!("cpu-attention: expects f32") };
        let s = layout.stride();
        if s.len() != 4 || s[3] != 1 {
            candle_core::bail!("cpu-attention: expects [b, heads, l, d] with contiguous rows, got strides {s:?}");
        }
        Ok(Self { data: &data[layout.start_offset()..], batch: s[0], head: s[1], row: s[2] })
    }

    /// The `[l, d]` matrix of head `h` of sequence `b`.
    fn at(&self, b: usize, h: usize) -> Matrix<f32> {
        Matrix { ptr: self.data[b * self.batch + h * self.head..].as_ptr(), cs: 1, rs: self.row as isize }
    }
}

/// The output buffer, shared by the tasks; each writes only its own (sequence, head) columns.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: tasks write disjoint elements (see `Attention::head`) and the buffer outlives them.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Attention<'_> {
    /// Scores, softmax and weighted values of head `h` of sequence `b` into `out`, whose rows hold
    /// `width` values.
    ///
    /// SAFETY: `q`, `k`, `v` address `[l, d]` matrices; `out` holds `b_total * l * width` elements; no
    /// other task writes head `h` of sequence `b`.
    unsafe fn head(
        &self,
        [q, k, v]: [Matrix<f32>; 3],
        (b, h): (usize, usize),
        (l, d, width): (usize, usize, usize),
        out: Out,
        scores: &mut [f32],
    ) {
        // scores[i, j] = scale * q_i . k_j
        // SAFETY: `scores` holds `[l, l]`; `q` and `k` as the caller promises.
        unsafe { product_at(scores.as_mut_ptr(), l, (l, l, d), q, k.t(), self.scale, false, Parallelism::None) };
        let bias = &self.bias[b * l * l..(b + 1) * l * l];
        for (row, bias) in scores.chunks_exact_mut(l).zip(bias.chunks_exact(l)) {
            if let Some(cap) = self.softcap {
                row.iter_mut().for_each(|x| *x = (*x / cap).tanh() * cap);
            }
            row.iter_mut().zip(bias).for_each(|(x, b)| *x += b);
            softmax(row);
        }
        // SAFETY: head `h` of sequence `b` in `out` is this task's alone (the caller's promise); `v` as
        // the caller promises.
        unsafe {
            let dst = out.0.add(b * l * width + h * d);
            product_at(dst, width, (l, d, l), Matrix::rows(scores, l), v, 1.0, false, Parallelism::None);
        }
    }
}

impl CustomOp3 for Attention<'_> {
    fn name(&self) -> &'static str {
        "cpu-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, heads, l, d) = l1.shape().dims4()?;
        let (kb, kv, kl, kd) = l2.shape().dims4()?;
        if (kb, kl, kd) != (b, l, d)
            || l3.shape() != l2.shape()
            || kv == 0
            || heads % kv != 0
            || self.bias.len() != b * l * l
        {
            candle_core::bail!(
                "cpu-attention: shapes q {:?}, k {:?}, v {:?}, bias of {} do not agree",
                l1.shape(),
                l2.shape(),
                l3.shape(),
                self.bias.len()
            );
        }
        let (q, k, v) = (Operand::new(s1, l1)?, Operand::new(s2, l2)?, Operand::new(s3, l3)?);
        let width = heads * d;
        let mut out = vec![0f32; b * l * width];
        let ptr = Out(out.as_mut_ptr());
        let group = heads / kv;
        let run = |scores: &mut Vec<f32>, task: usize| {
            let (bi, h) = (task / heads, task % heads);
            // SAFETY: the operands' strides come from their layouts and the task owns head `h` of
            // sequence `bi` in `out` (see `Attention::head`).
            unsafe {
                let operands = [q.at(bi, h), k.at(bi, h / group), v.at(bi, h / group)];
                self.head(operands, (bi, h), (l, d, width), ptr, scores);
            }
        };
        (0..b * heads).into_par_iter().for_each_init(|| vec![0f32; l * l], run);
        Ok((CpuStorage::F32(out), Shape::from((b, l, width))))
    }
}
