//! llm2vec: decoder-only LLMs as text encoders (LLM2Vec), natively in Rust.
//!
//! Data flow: [`load`] (model files, GGUF, adapters) -> [`tokenize`] (instruction/text boundary)
//! -> [`model`] (bidirectional or causal transformer) -> [`pool`] -> embeddings, driven by [`Encoder`].

pub mod choices;
pub mod encoder;
pub mod error;
pub mod io;
pub mod load;
pub mod model;
pub mod pool;
pub mod tokenize;

pub use candle_core::{DType, Device};
pub use choices::{parse_device, Precision};
pub use encoder::{
    set_num_threads, Embeddings, Encoder, Input, Options, Progress, Settings, DEFAULT_DOC_MAX_LENGTH,
    DEFAULT_MAX_LENGTH,
};
pub use error::{Error, Result};
pub use model::AttentionMode;
pub use pool::Pooling;
