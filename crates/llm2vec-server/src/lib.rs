//! llm2vec-server: LLM2Vec embeddings over HTTP.
//!
//! Endpoints: `POST /v1/embeddings` (OpenAI schema), `POST /embed` (LLM2Vec-style, with instructions),
//! `GET /health`, `GET /info`, `GET /metrics` (Prometheus). Requests are tokenized on arrival; their inputs
//! join one queue that a dedicated inference thread drains in batches bounded by a padded-token budget.
//!
//! Modules in request order: [`config`] (flags and limits), [`server`] (binding, accept loop, signals,
//! graceful shutdown), [`connection`] (one client's connection and its timeouts), [`routes`] (router and
//! middleware), [`state`] (what the handlers share), [`openai`] and [`embed`] (the two schemas), [`embedding`]
//! (shared request steps), [`batcher`] (queue and inference thread), [`metrics`], [`error`].

pub mod batcher;
pub mod config;
pub mod connection;
pub mod embed;
pub mod embedding;
pub mod error;
pub mod metrics;
pub mod openai;
pub mod routes;
pub mod server;
pub mod state;

pub use config::Config;
pub use error::{ApiError, ServerError};
pub use server::{run, serve};
