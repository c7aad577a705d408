//! What a trainer hands the model for a training forward pass: the projections LoRA can adapt
//! (`Projection`, `Site`), their low-rank updates (`LowRank`) through the `Tuning` hook, and how a pass
//! runs (`Pass`). The trainer's side of this contract lives in the training crate.

use candle_core::Tensor;

/// The projections of a decoder block that LoRA adapts, with their Hugging Face module names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Projection {
    /// The query projection.
    Q,
    /// The key projection.
    K,
    /// The value projection.
    V,
    /// The attention's output projection.
    O,
    /// The MLP's gate projection.
    Gate,
    /// The MLP's up projection.
    Up,
    /// The MLP's down projection.
    Down,
}

impl Projection {
    /// Every projection, in a block's order.
    pub const ALL: [Projection; 7] = [
        Projection::Q,
        Projection::K,
        Projection::V,
        Projection::O,
        Projection::Gate,
        Projection::Up,
        Projection::Down,
    ];

    /// The module's path inside a block (`self_attn.q_proj`, ...).
    pub fn module(self) -> &'static str {
        match self {
            Projection::Q => "self_attn.q_proj",
            Projection::K => "self_attn.k_proj",
            Projection::V => "self_attn.v_proj",
            Projection::O => "self_attn.o_proj",
            Projection::Gate => "mlp.gate_proj",
            Projection::Up => "mlp.up_proj",
            Projection::Down => "mlp.down_proj",
        }
    }

    /// The last part of the module name (`q_proj`), as PEFT's `target_modules` lists it.
    pub fn short_name(self) -> &'static str {
        self.module().rsplit('.').next().unwrap_or_default()
    }
}

/// One projection of one block, with its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Site {
    /// The block, counted from 0.
    pub layer: usize,
    /// The projection in it.
    pub proj: Projection,
}

impl Site {
    /// The Hugging Face module path, `layers.3.self_attn.q_proj` (without the `model.` prefix, as the
    /// reference's bare encoder model names it).
    pub fn module_path(self) -> String {
        format!("layers.{}.{}", self.layer, self.proj.module())
    }
}

/// A LoRA update `dropout(x) A^T B^T * scale`, A `[r, in]` and B `[out, r]` (trainable variables).
#[derive(Clone)]
pub struct LowRank {
    /// `[r, in]`.
    pub a: Tensor,
    /// `[out, r]`.
    pub b: Tensor,
    /// The factor on the update.
    pub scale: f64,
    /// Dropout probability on the update's input.
    pub dropout: f64,
}

/// What a trainer adds to the frozen model during a training forward pass.
pub trait Tuning {
    /// The LoRA update of projection `site`, if that projection is tuned.
    fn low_rank(&self, site: Site) -> Option<LowRank>;
    /// A seed for the next dropout mask, or `None` when dropout is off (evaluation).
    fn dropout_seed(&self) -> Option<u64>;
    /// Dropout probability on the attention probabilities.
    fn attention_dropout(&self) -> f64;
}

/// How a forward pass runs.
#[derive(Clone, Copy)]
pub enum Pass<'a> {
    /// Inference: fused kernels, no gradients.
    Infer,
    /// Training: every op records gradients, frozen weights get none, and `Tuning` adds its updates.
    Train(&'a dyn Tuning),
}

impl Pass<'_> {
    /// Whether this is a training pass.
    pub fn is_train(&self) -> bool {
        matches!(self, Pass::Train(_))
    }
}
