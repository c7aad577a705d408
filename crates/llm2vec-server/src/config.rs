//! Server settings: the `llm2vec serve` flags, their defaults and the checks made before serving.

use std::time::Duration;

use crate::error::ServerError;

const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: u16 = 8080;
const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 512;
const DEFAULT_MAX_CLIENT_BATCH_SIZE: usize = 32;
const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
const DEFAULT_REQUEST_TIMEOUT_S: f64 = 60.0;
const DEFAULT_MAX_CONNECTIONS: usize = 512;
const DEFAULT_HEADER_TIMEOUT_S: f64 = 10.0;
const DEFAULT_BODY_TIMEOUT_S: f64 = 30.0;
const DEFAULT_KEEP_ALIVE_TIMEOUT_S: f64 = 15.0;
const DEFAULT_DRAIN_TIMEOUT_S: f64 = 30.0;

/// How the server listens, batches and bounds its work.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, default_value = DEFAULT_HOST)]
    pub host: String,
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Padded tokens (rows x longest row) in one inference batch; at least max_length [default: the encoder's
    /// for its device (2048 on the CPU, 16384 on a GPU), or max_length if larger].
    #[arg(long)]
    pub max_batch_tokens: Option<usize>,
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
    /// Open connections at once; further clients wait in the listen queue until one closes.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Seconds a client has, from its first byte, to send a request's whole head; then it is disconnected.
    #[arg(long, default_value_t = DEFAULT_HEADER_TIMEOUT_S)]
    pub header_timeout: f64,
    /// Seconds an embedding request's body may take to arrive; then 408.
    #[arg(long, default_value_t = DEFAULT_BODY_TIMEOUT_S)]
    pub body_timeout: f64,
    /// Seconds a connection may sit idle (before its first request or between two); then it is closed.
    #[arg(long, default_value_t = DEFAULT_KEEP_ALIVE_TIMEOUT_S)]
    pub keep_alive_timeout: f64,
    /// Seconds a shutdown waits for requests in flight; connections still open then are closed.
    #[arg(long, default_value_t = DEFAULT_DRAIN_TIMEOUT_S)]
    pub drain_timeout: f64,
    /// Key that clients must send as `Authorization: Bearer <key>` on every route but /health.
    #[arg(long, env = "LLM2VEC_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Model name in responses and /info (default: the --model value).
    #[arg(long)]
    pub served_model_name: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: DEFAULT_HOST.to_string(),
            port: DEFAULT_PORT,
            max_batch_tokens: None,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            max_client_batch_size: DEFAULT_MAX_CLIENT_BATCH_SIZE,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT_S,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT_S,
            body_timeout: DEFAULT_BODY_TIMEOUT_S,
            keep_alive_timeout: DEFAULT_KEEP_ALIVE_TIMEOUT_S,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT_S,
            api_key: None,
            served_model_name: None,
        }
    }
}

impl Config {
    /// The batch budget: `--max-batch-tokens`, else the encoder's (`budget`), raised to `max_length` so that a
    /// full-length input fits.
    pub fn batch_tokens(&self, budget: usize, max_length: usize) -> usize {
        self.max_batch_tokens.unwrap_or(budget.max(max_length))
    }

    /// Checks the settings against the model's `max_length` (one full-length input must fit in a batch).
    pub fn check(&self, max_length: usize) -> Result<(), ServerError> {
        let invalid = |msg: String| Err(ServerError::Config(msg));
        if let Some(tokens) = self.max_batch_tokens.filter(|&tokens| tokens < max_length) {
            return invalid(format!(
                "--max-batch-tokens ({tokens}) must be at least the model's max_length ({max_length})"
            ));
        }
        for (flag, value) in [
            ("--max-concurrent-requests", self.max_concurrent_requests),
            ("--max-client-batch-size", self.max_client_batch_size),
            ("--max-body-bytes", self.max_body_bytes),
            ("--max-connections", self.max_connections),
        ] {
            if value == 0 {
                return invalid(format!("{flag} must be at least 1"));
            }
        }
        for (flag, value) in
            [("--max-concurrent-requests", self.max_concurrent_requests), ("--max-connections", self.max_connections)]
        {
            if value > tokio::sync::Semaphore::MAX_PERMITS {
                return invalid(format!("{flag} must be at most {}", tokio::sync::Semaphore::MAX_PERMITS));
            }
        }
        for (flag, value) in [
            ("--request-timeout", self.request_timeout),
            ("--header-timeout", self.header_timeout),
            ("--body-timeout", self.body_timeout),
            ("--keep-alive-timeout", self.keep_alive_timeout),
            ("--drain-timeout", self.drain_timeout),
        ] {
            if !(value.is_finite() && value > 0.0 && value < 1e9) {
                return invalid(format!("{flag} must be a positive number of seconds, got {value}"));
            }
        }
        if self.api_key.as_deref().is_some_and(|key| key.trim().is_empty()) {
            return invalid("--api-key (or LLM2VEC_API_KEY) is empty".to_string());
        }
        Ok(())
    }

    /// The per-request timeout (call after [`Config::check`], as for the other durations).
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout)
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.header_timeout)
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.body_timeout)
    }

    pub fn keep_alive_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.keep_alive_timeout)
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.drain_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_budget_is_the_flag_else_the_encoders_raised_to_max_length() {
        assert_eq!(Config::default().batch_tokens(2048, 512), 2048);
        assert_eq!(Config::default().batch_tokens(2048, 4096), 4096);
        assert_eq!(Config { max_batch_tokens: Some(700), ..Config::default() }.batch_tokens(2048, 512), 700);
    }

    #[test]
    fn defaults_pass_and_bad_values_are_named() {
        assert!(Config::default().check(512).is_ok());
        let err = |c: Config| c.check(512).unwrap_err().to_string();
        assert!(err(Config { max_batch_tokens: Some(100), ..Config::default() }).contains("--max-batch-tokens (100)"));
        assert!(err(Config { max_client_batch_size: 0, ..Config::default() }).contains("--max-client-batch-size"));
        assert!(err(Config { max_concurrent_requests: usize::MAX, ..Config::default() }).contains("at most"));
        for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(err(Config { request_timeout: t, ..Config::default() }).contains("--request-timeout"));
            assert!(err(Config { header_timeout: t, ..Config::default() }).contains("--header-timeout"));
            assert!(err(Config { drain_timeout: t, ..Config::default() }).contains("--drain-timeout"));
        }
        assert!(err(Config { max_connections: 0, ..Config::default() }).contains("--max-connections"));
        assert!(err(Config { api_key: Some(" ".into()), ..Config::default() }).contains("--api-key"));
    }
}
