//! The HTTP surface: the router, the middleware that checks the API key, bounds embedding
//! requests (shutdown, concurrency, body size and read time, timeout) and records metrics, and the small
//! endpoints (/health, /info, /metrics, JSON 404 and 405).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;
use crate::{embed, embedding, openai};

const EMBEDDING_ROUTES: [&str; 2] = ["/v1/embeddings", "/embed"];

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
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn_with_state(state.clone(), record))
        // `limits` has read the body within --max-body-bytes before a handler sees it.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// With --api-key, every route but /health needs `Authorization: Bearer <key>`; otherwise 401.
async fn authorize(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if !state.key_required() || request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let presented = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer);
    let message = match presented {
        None => "missing API key: send it as `Authorization: Bearer <key>`",
        Some(key) if state.key_matches(key) => return next.run(request).await,
        Some(_) => "invalid API key",
    };
    ([(WWW_AUTHENTICATE, "Bearer")], ApiError::new(StatusCode::UNAUTHORIZED, message)).into_response()
}

/// The token of an `Authorization: Bearer <token>` value (the scheme in any case).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Embedding requests: 503 while shutting down, 429 beyond --max-concurrent-requests (no queue grows),
/// 413 for a body over --max-body-bytes (before any of it is read: an `Expect: 100-continue` client is not
/// told to send it), 408 for a body slower than --body-timeout, 504 after --request-timeout (the request's
/// queued work is dropped with it).
async fn limits(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if state.is_shutting_down() {
        return ApiError::unavailable("the server is shutting down").into_response();
    }
    let Ok(_permit) = state.limiter.clone().try_acquire_owned() else {
        let limit = state.config.max_concurrent_requests;
        let message = format!("too many concurrent requests (limit {limit}); retry later");
        return ([(header::RETRY_AFTER, "1")], ApiError::new(StatusCode::TOO_MANY_REQUESTS, message)).into_response();
    };
    let config = &state.config;
    let work = async {
        match embedding::read_body(request, config.max_body_bytes, config.body_timeout()).await {
            Ok(request) => next.run(request).await,
            Err(e) => e.into_response(),
        }
    };
    match tokio::time::timeout(state.config.timeout(), work).await {
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
        "precision": state.encoder.precision(),
        "device": llm2vec::device_name(state.encoder.device()),
        "cpu_kernels": state.encoder.cpu_kernels(),
        "limits": {
            "max_batch_tokens": config.max_batch_tokens,
            "max_concurrent_requests": config.max_concurrent_requests,
            "max_client_batch_size": config.max_client_batch_size,
            "max_body_bytes": config.max_body_bytes,
            "request_timeout_s": config.request_timeout,
            "max_connections": config.max_connections,
            "header_timeout_s": config.header_timeout,
            "body_timeout_s": config.body_timeout,
            "keep_alive_timeout_s": config.keep_alive_timeout,
            "drain_timeout_s": config.drain_timeout,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_in_any_scheme_case() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("abc"), None);
    }
}
