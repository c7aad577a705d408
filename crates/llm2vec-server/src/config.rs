//! Server settings: the `llm2vec serve` flags, their defaults and the checks made before serving.

use std::time::Duration;

use crate::error::ServerError;

const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: u16 = 8080;
const DEFAULT_MAX_BATCH_TOKENS: usize = 4096;
const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 512;
const DEFAULT_MAX_CLIENT_BATCH_SIZE: usize = 32;
const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
const DEFAULT_REQUEST_TIMEOUT_S: f64 = 60.0;

/// How the server listens, batches and bounds its work.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, default_value = DEFAULT_HOST)]
    pub host: String,
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Padded tokens (rows x longest row) in one inference batch; at least max_length.
    #[arg(long, default_value_t = DEFAULT_MAX_BATCH_TOKENS)]
    pub max_batch_tokens: usize,
    /// Requests handled at once; more are refused with 429.
    #[arg(long, default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS)]
    pub max_concurrent_requests: usize,
    /// Inputs in one request; more are refused with 413.
    #[arg(long, default_value_t = DEFAULT_MAX_CLIENT_BATCH_SIZE)]
    pub max_client_batch_size: usize,
    /// Largest request body in bytes; larger ones are refused with 413.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Seconds a request may take, queueing included, before it is answered 504 and its work dropped.
    #[arg(long, default_value_t = DEFAULT_REQUEST_TIMEOUT_S)]
    pub request_timeout: f64,
    /// Model name in responses and /info (default: the --model value).
    #[arg(long)]
    pub served_model_name: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: DEFAULT_HOST.to_string(),
            port: DEFAULT_PORT,
            max_batch_tokens: DEFAULT_MAX_BATCH_TOKENS,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            max_client_batch_size: DEFAULT_MAX_CLIENT_BATCH_SIZE,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT_S,
            served_model_name: None,
        }
    }
}

impl Config {
    /// Checks the settings against the model's `max_length` (one full-length input must fit in a batch).
    pub fn check(&self, max_length: usize) -> Result<(), ServerError> {
        let invalid = |msg: String| Err(ServerError::Config(msg));
        if self.max_batch_tokens < max_length {
            return invalid(format!(
                "--max-batch-tokens ({}) must be at least the model's max_length ({max_length})",
                self.max_batch_tokens
            ));
        }
        for (flag, value) in [
            ("--max-concurrent-requests", self.max_concurrent_requests),
            ("--max-client-batch-size", self.max_client_batch_size),
            ("--max-body-bytes", self.max_body_bytes),
        ] {
            if value == 0 {
                return invalid(format!("{flag} must be at least 1"));
            }
        }
        if self.max_concurrent_requests > tokio::sync::Semaphore::MAX_PERMITS {
            return invalid(format!(
                "--max-concurrent-requests must be at most {}",
                tokio::sync::Semaphore::MAX_PERMITS
            ));
        }
        if !(self.request_timeout.is_finite() && self.request_timeout > 0.0 && self.request_timeout < 1e9) {
            return invalid(format!(
                "--request-timeout must be a positive number of seconds, got {}",
                self.request_timeout
            ));
        }
        Ok(())
    }

    /// The per-request timeout (call after [`Config::check`]).
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_bad_values_are_named() {
        assert!(Config::default().check(512).is_ok());
        let err = |c: Config| c.check(512).unwrap_err().to_string();
        assert!(err(Config { max_batch_tokens: 100, ..Config::default() }).contains("--max-batch-tokens (100)"));
        assert!(err(Config { max_client_batch_size: 0, ..Config::default() }).contains("--max-client-batch-size"));
        assert!(err(Config { max_concurrent_requests: usize::MAX, ..Config::default() }).contains("at most"));
        for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(err(Config { request_timeout: t, ..Config::default() }).contains("--request-timeout"));
        }
    }
}
