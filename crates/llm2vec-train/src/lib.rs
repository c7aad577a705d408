//! Training for LLM2Vec: MNTP, unsupervised SimCSE and supervised contrastive learning with LoRA,
//! from the reference's JSON configs. Seeded randomness, data loading and masking, losses, LoRA
//! updates whose frozen base weights never receive gradients, the optimizer, checkpoints and the loop.

pub mod backprop;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod fingerprint;
pub mod lora;
pub mod loss;
pub mod mask;
pub mod optim;
pub mod plot;
pub mod rng;
pub mod stage;
pub mod trainer;

pub use error::{Result, TrainError};
