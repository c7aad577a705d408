//! llm2vec: decoder-only LLMs as text encoders (LLM2Vec), natively in Rust.
//!
//! Data flow: [`load`] (model files, GGUF, adapters) -> [`tokenize`] (instruction/text boundary)
//! -> [`model`] (bidirectional or causal transformer) -> [`pool`] -> embeddings, driven by [`Encoder`].
//! [`io`] reads input files and writes embeddings.

#![warn(missing_docs)]

mod choices;
mod encoder;
mod error;
pub mod io;
pub mod load;
pub mod model;

// Not part of the stable API: shared by this workspace's own crates (training, evaluation, server, bindings).
#[doc(hidden)]
pub mod batch;
#[doc(hidden)]
pub mod fs;
#[doc(hidden)]
pub mod pool;
#[doc(hidden)]
pub mod tokenize;
#[doc(hidden)]
pub mod weights;

pub use candle_core::{DType, Device};
pub use choices::{device_name, parse_device, Precision};
pub use encoder::{
    default_max_batch_tokens, set_num_threads, Embeddings, Encoder, Input, Options, Progress, Settings,
    CPU_MAX_BATCH_TOKENS, DEFAULT_DOC_MAX_LENGTH, DEFAULT_MAX_LENGTH, GPU_MAX_BATCH_TOKENS,
};
pub use error::{Error, InternalError, Result};
pub use model::{cpu_kernels, AttentionMode};
pub use pool::Pooling;
