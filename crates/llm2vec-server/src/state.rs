//! What every handler shares: the encoder, the inference queue, metrics, limits and the shutdown flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use llm2vec::Encoder;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::batcher::Batcher;
use crate::config::Config;
use crate::embedding;
use crate::metrics::Metrics;

/// What every handler shares.
pub struct AppState {
    pub encoder: Arc<Encoder>,
    pub batcher: Batcher,
    pub metrics: Arc<Metrics>,
    pub config: Config,
    pub model_name: String,
    /// Longest text in bytes that can be within the token limits (see [`embedding::max_text_bytes`]).
    pub max_text_bytes: usize,
    pub(crate) limiter: Arc<Semaphore>,
    shutting_down: AtomicBool,
    /// SHA-256 of --api-key: keys are compared as digests, in constant time.
    key_digest: Option<[u8; 32]>,
}

impl AppState {
    /// `config` must have passed [`Config::check`].
    pub fn new(
        encoder: Arc<Encoder>,
        batcher: Batcher,
        metrics: Arc<Metrics>,
        config: Config,
        model_name: String,
    ) -> Self {
        let limiter = Arc::new(Semaphore::new(config.max_concurrent_requests));
        let key_digest = config.api_key.as_deref().map(digest);
        let max_text_bytes = embedding::max_text_bytes(&encoder);
        Self {
            encoder,
            batcher,
            metrics,
            config,
            model_name,
            max_text_bytes,
            limiter,
            shutting_down: AtomicBool::new(false),
            key_digest,
        }
    }

    /// From now on embedding requests get 503 and /health reports shutting_down.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.config.max_concurrent_requests - self.limiter.available_permits()
    }

    /// Whether requests need an API key (--api-key was given).
    pub(crate) fn key_required(&self) -> bool {
        self.key_digest.is_some()
    }

    /// Whether `key` is the API key, compared as digests in constant time.
    pub(crate) fn key_matches(&self, key: &str) -> bool {
        self.key_digest.is_some_and(|expected| bool::from(digest(key)[..].ct_eq(&expected[..])))
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}
