//! Running the server: binding, serving until a shutdown signal (SIGTERM or Ctrl-C from `run`), then the
//! graceful part: no new connections or requests, in-flight requests finished, inference thread stopped.

use std::future::Future;
use std::sync::Arc;

use llm2vec::Encoder;
use tokio::net::TcpListener;

use crate::batcher;
use crate::config::Config;
use crate::error::ServerError;
use crate::metrics::Metrics;
use crate::routes::{self, AppState};

/// Serves on `listener` until `shutdown` resolves, then finishes what is in flight and returns.
pub async fn serve(
    listener: TcpListener,
    encoder: Arc<Encoder>,
    model_name: String,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.check(encoder.settings().max_length)?;
    let metrics = Arc::new(Metrics::default());
    let (batcher, worker) = batcher::start(encoder.clone(), config.max_batch_tokens, metrics.clone())?;
    let state = Arc::new(AppState::new(encoder, batcher, metrics, config, model_name));
    let flag = state.clone();
    let served = axum::serve(listener, routes::router(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            flag.begin_shutdown();
        })
        .await;
    // No request is left that could wait on the queue: let the thread finish and join it off the runtime.
    let stopped = tokio::task::spawn_blocking(move || worker.stop()).await;
    served.map_err(ServerError::Serve)?;
    stopped.map_err(|e| ServerError::Serve(std::io::Error::other(format!("inference thread: {e}"))))
}

/// Blocking entry point for `llm2vec serve`: binds `--host:--port` and serves until SIGTERM or Ctrl-C.
pub fn run(encoder: Encoder, model: &str, config: Config) -> Result<(), ServerError> {
    config.check(encoder.settings().max_length)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| ServerError::Start { what: "async runtime", source })?;
    let model_name = config.served_model_name.clone().unwrap_or_else(|| model.to_string());
    runtime.block_on(async move {
        let addr = format!("{}:{}", config.host, config.port);
        let listener = TcpListener::bind(&addr).await.map_err(|source| ServerError::Bind { addr, source })?;
        let local = listener.local_addr().map_err(ServerError::Serve)?;
        eprintln!(
            "serving {model_name} ({}, dim {}, {} pooling) on http://{local}",
            encoder.model_type(),
            encoder.dim(),
            encoder.settings().pooling.name()
        );
        serve(listener, Arc::new(encoder), model_name, config, shutdown_signal()).await?;
        eprintln!("shut down cleanly");
        Ok(())
    })
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = sigterm() => {}
    }
    eprintln!("shutdown requested: finishing requests in flight, refusing new ones");
}

#[cfg(unix)]
async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn sigterm() {
    std::future::pending().await
}
