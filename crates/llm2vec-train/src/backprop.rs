//! Forward and backward through a backbone with LoRA: the whole graph at once, or block by block
//! (gradient checkpointing: only each block's input is kept; in backward every block is recomputed
//! with the same dropout masks and differentiated on its own, so memory holds one block's graph).

use crate::lora::LoraModel;
use crate::Result;
use candle_core::{Tensor, Var};
use llm2vec::model::{AttentionMode, Backbone, Context, Pass};

/// One padded batch of token ids `[b, t]` (u32) with the real length of each row.
pub struct Batch {
    pub ids: Tensor,
    pub lengths: Vec<usize>,
}

impl Batch {
    /// Right-pads `rows` with id 0.
    pub fn new(rows: &[&[u32]], device: &candle_core::Device) -> Result<Self> {
        let (ids, t) = llm2vec::batch::pad(rows);
        Ok(Self {
            ids: Tensor::from_vec(ids, (rows.len(), t), device)?,
            lengths: rows.iter().map(|r| r.len()).collect(),
        })
    }

    /// Real tokens in the batch.
    pub fn tokens(&self) -> usize {
        self.lengths.iter().sum()
    }
}

/// The loss value and the gradient of every LoRA variable (in `LoraModel::vars` order).
pub struct LossAndGrads {
    pub loss: f64,
    pub grads: Vec<Tensor>,
}

/// Runs `batches` through `backbone` with `lora`, applies `loss_fn` to their final hidden states and
/// backpropagates into the LoRA variables.
pub fn loss_and_grads(
    backbone: &dyn Backbone,
    lora: &LoraModel,
    batches: &[Batch],
    mode: AttentionMode,
    checkpoint: bool,
    loss_fn: impl FnOnce(&[Tensor]) -> Result<Tensor>,
) -> Result<LossAndGrads> {
    if checkpoint {
        return checkpointed(backbone, lora, batches, mode, loss_fn);
    }
    let hidden = batches
        .iter()
        .map(|b| Ok(backbone.forward_pass(&b.ids, &b.lengths, mode, Pass::Train(lora))?))
        .collect::<Result<Vec<_>>>()?;
    let loss = loss_fn(&hidden)?;
    let store = loss.backward()?;
    let grads = lora
        .vars()
        .iter()
        .map(|v| Ok(store.get(v.as_tensor()).map(Tensor::detach).unwrap_or(v.as_tensor().zeros_like()?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(LossAndGrads { loss: crate::loss::scalar(&loss)?, grads })
}

/// What the first (graph-free) pass keeps of one batch.
struct Saved {
    ctx: Context,
    /// Each block's input and the dropout RNG at its start.
    inputs: Vec<(Tensor, Option<crate::rng::Rng>)>,
    last: Tensor,
}

fn checkpointed(
    backbone: &dyn Backbone,
    lora: &LoraModel,
    batches: &[Batch],
    mode: AttentionMode,
    loss_fn: impl FnOnce(&[Tensor]) -> Result<Tensor>,
) -> Result<LossAndGrads> {
    let pass = Pass::Train(lora);
    let mut saved = Vec::with_capacity(batches.len());
    for b in batches {
        let ctx = backbone.context(&b.lengths, b.ids.dim(1)?, mode)?;
        let mut x = backbone.embed(&b.ids)?;
        let mut inputs = Vec::with_capacity(backbone.num_blocks());
        for i in 0..backbone.num_blocks() {
            inputs.push((x.clone(), lora.rng()));
            x = backbone.block(i, &x, &ctx, pass)?.detach();
        }
        saved.push(Saved { ctx, inputs, last: x });
    }
    let rng_after = lora.rng();
    let lasts = saved.iter().map(|s| Ok(Var::from_tensor(&s.last)?)).collect::<Result<Vec<_>>>()?;
    let hidden = lasts.iter().map(|v| backbone.final_norm(v.as_tensor(), pass)).collect::<llm2vec::Result<Vec<_>>>()?;
    let loss = loss_fn(&hidden)?;
    let store = loss.backward()?;
    let vars = lora.vars();
    let mut grads = vars.iter().map(|v| Ok(v.as_tensor().zeros_like()?)).collect::<Result<Vec<_>>>()?;
    for (s, last) in saved.iter().zip(&lasts) {
        let mut g = store.get(last.as_tensor()).map(Tensor::detach).unwrap_or(last.as_tensor().zeros_like()?);
        for (i, (input, rng)) in s.inputs.iter().enumerate().rev() {
            lora.set_rng(rng.clone());
            let x = Var::from_tensor(input)?;
            let out = backbone.block(i, x.as_tensor(), &s.ctx, pass)?;
            let block_store = (out * &g)?.sum_all()?.backward()?;
            for (acc, v) in grads.iter_mut().zip(&vars) {
                if let Some(dg) = block_store.get(v.as_tensor()) {
                    *acc = (&*acc + dg.detach())?;
                }
            }
            g = block_store.get(x.as_tensor()).map(Tensor::detach).unwrap_or(x.as_tensor().zeros_like()?);
        }
    }
    lora.set_rng(rng_after);
    Ok(LossAndGrads { loss: crate::loss::scalar(&loss)?, grads })
}
