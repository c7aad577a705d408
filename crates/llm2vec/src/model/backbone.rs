//! The trait every model family implements: a transformer used as an encoder, its forward pass in
//! pieces for a training loop, and what LoRA needs of it.

use candle_core::{DType, Device, Tensor};

use super::attention::{AttentionMode, Context};
use super::tuning::{Pass, Site};
use crate::error::Result;

/// A transformer used as an encoder. The forward pass is exposed in its pieces (embedding,
/// blocks, final norm) so that a training loop can drive the blocks itself (gradient checkpointing).
pub trait Backbone: Send + Sync {
    /// Hidden states `[batch, seq, hidden]` after the final norm. `ids: [batch, seq]` (u32) holds
    /// right-padded sequences whose real lengths are `lengths`.
    fn forward(&self, ids: &Tensor, lengths: &[usize], mode: AttentionMode) -> Result<Tensor> {
        self.forward_pass(ids, lengths, mode, Pass::Infer)
    }

    /// [`Backbone::forward`] for inference or training.
    fn forward_pass(&self, ids: &Tensor, lengths: &[usize], mode: AttentionMode, pass: Pass) -> Result<Tensor> {
        let ctx = self.context(lengths, ids.dim(1)?, mode)?;
        let mut x = self.embed(ids)?;
        for i in 0..self.num_blocks() {
            x = self.block(i, &x, &ctx, pass)?;
        }
        self.final_norm(&x, pass)
    }

    /// Token embeddings `[batch, seq, hidden]` (frozen: never a gradient).
    fn embed(&self, ids: &Tensor) -> Result<Tensor>;
    /// The rotary tables and attention masks of a batch.
    fn context(&self, lengths: &[usize], seq_len: usize, mode: AttentionMode) -> Result<Context>;
    /// The number of blocks.
    fn num_blocks(&self) -> usize;
    /// Decoder block `i`.
    fn block(&self, i: usize, x: &Tensor, ctx: &Context, pass: Pass) -> Result<Tensor>;
    /// The norm after the last block.
    fn final_norm(&self, x: &Tensor, pass: Pass) -> Result<Tensor>;
    /// Next-token logits `[.., vocab]` from hidden states `[.., hidden]`.
    fn logits(&self, hidden: &Tensor, pass: Pass) -> Result<Tensor>;
    /// Every projection LoRA can adapt, with its input and output sizes.
    fn sites(&self) -> Vec<(Site, usize, usize)>;
    /// The width of the hidden states (the embeddings' size).
    fn hidden_size(&self) -> usize;
    /// The dtype the model computes in.
    fn dtype(&self) -> DType;
    /// The device the model lives on.
    fn device(&self) -> &Device;
}
