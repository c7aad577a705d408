//! The HTTP surface: the router, the shared state, the middleware that bounds embedding requests
//! (shutdown, concurrency, timeout) and records metrics, and the small endpoints (/health, /info, /metrics,
//! JSON 404 and 405).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use llm2vec::Encoder;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::batcher::Batcher;
use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::{embed, openai};

const EMBEDDING_ROUTES: [&str; 2] = ["/v1/embeddings", "/embed"];

/// What every handler shares.
pub struct AppState {
    pub encoder: Arc<Encoder>,
    pub batcher: Batcher,
    pub metrics: Arc<Metrics>,
    pub config: Config,
    pub model_name: String,
    limiter: Arc<Semaphore>,
    shutting_down: AtomicBool,
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
        Self { encoder, batcher, metrics, config, model_name, limiter, shutting_down: AtomicBool::new(false) }
    }

    /// From now on embedding requests get 503 and /health reports shutting_down.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    fn in_flight(&self) -> usize {
        self.config.max_concurrent_requests - self.limiter.available_permits()
    }
}

/// All routes, with their limits and metrics.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(EMBEDDING_ROUTES[0], post(openai::embeddings))
        .route(EMBEDDING_ROUTES[1], post(embed::embed))
        .route_layer(middleware::from_fn_with_state(state.clone(), limits))
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state)
}

/// Embedding requests: 503 while shutting down, 429 beyond --max-concurrent-requests (no queue grows),
/// 504 after --request-timeout (the request's queued work is dropped with it).
async fn limits(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if state.is_shutting_down() {
        return ApiError::unavailable("the server is shutting down").into_response();
    }
    let Ok(_permit) = state.limiter.clone().try_acquire_owned() else {
        let limit = state.config.max_concurrent_requests;
        let message = format!("too many concurrent requests (limit {limit}); retry later");
        return ([(header::RETRY_AFTER, "1")], ApiError::new(StatusCode::TOO_MANY_REQUESTS, message)).into_response();
    };
    match tokio::time::timeout(state.config.timeout(), next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let message = format!("the request took more than {} s", state.config.request_timeout);
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, message).into_response()
        }
    }
}

/// Counts every answered request by endpoint and status, and times the embedding ones.
async fn record(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let endpoint = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_string();
    let start = Instant::now();
    let response = next.run(request).await;
    let timed = EMBEDDING_ROUTES.contains(&endpoint.as_str());
    state.metrics.observe_request(&endpoint, response.status().as_u16(), start.elapsed(), timed);
    response
}

async fn health(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    if state.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "shutting_down"})))
    } else {
        (StatusCode::OK, Json(json!({"status": "ok"})))
    }
}

async fn info(State(state): State<Arc<AppState>>) -> Json<Value> {
    let settings = state.encoder.settings();
    let config = &state.config;
    Json(json!({
        "model": state.model_name,
        "architecture": state.encoder.model_type(),
        "pooling": settings.pooling.name(),
        "attention": format!("{:?}", settings.attention).to_lowercase(),
        "dims": state.encoder.dim(),
        "max_length": settings.max_length,
        "doc_max_length": settings.doc_max_length,
        "skip_instruction": settings.skip_instruction,
        "limits": {
            "max_batch_tokens": config.max_batch_tokens,
            "max_concurrent_requests": config.max_concurrent_requests,
            "max_client_batch_size": config.max_client_batch_size,
            "max_body_bytes": config.max_body_bytes,
            "request_timeout_s": config.request_timeout,
        },
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render(state.in_flight()))
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {}", uri.path()))
}
