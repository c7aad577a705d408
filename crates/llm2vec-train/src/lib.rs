//! Training foundations for LLM2Vec (issue #3): reference-compatible configs, seeded
//! randomness, data loading, MNTP masking, MNTP/contrastive losses and LoRA layers whose
//! frozen base weights never receive gradients.

pub mod config;
pub mod data;
pub mod error;
pub mod lora;
pub mod loss;
pub mod mask;
pub mod rng;

pub use error::{Result, TrainError};
