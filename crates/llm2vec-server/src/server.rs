//! Running the server: binding, the accept loop (at most --max-connections at once, backing off when the
//! process runs out of file descriptors), serving until a shutdown signal (SIGTERM or Ctrl-C from `run`), then
//! the graceful part: no new connections or requests, idle connections closed, in-flight requests finished
//! within --drain-timeout, inference thread stopped.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use llm2vec::Encoder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::batcher;
use crate::config::Config;
use crate::connection::{self, Timeouts};
use crate::error::ServerError;
use crate::metrics::Metrics;
use crate::routes;
use crate::state::AppState;

/// The first pause after an accept error that is not one client's (e.g. out of file descriptors), and the
/// longest; the pause doubles while such errors repeat.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Serves on `listener` until `shutdown` resolves, then finishes what is in flight and returns.
pub async fn serve(
    listener: TcpListener,
    encoder: Arc<Encoder>,
    model_name: String,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let settings = encoder.settings();
    config.check(settings.max_length)?;
    let tokens = config.batch_tokens(settings.max_batch_tokens, settings.max_length);
    let config = Config { max_batch_tokens: Some(tokens), ..config };
    let metrics = Arc::new(Metrics::default());
    let (batcher, worker) = batcher::start(encoder.clone(), tokens, metrics.clone())?;
    let timeouts = Timeouts { header: config.header_timeout(), keep_alive: config.keep_alive_timeout() };
    let (limit, drain) = (config.max_connections, config.drain_timeout());
    let state = Arc::new(AppState::new(encoder, batcher, metrics, config, model_name));
    let router = routes::router(state.clone());
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let slots = Arc::new(Semaphore::new(limit));
    let mut backoff = ACCEPT_BACKOFF.0;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next() => {}
            (stream, permit) = accept(&listener, &slots, &mut backoff) => {
                let task = connection::serve(stream, router.clone(), timeouts, stopping.clone(), permit);
                connections.spawn(task);
            }
        }
    }
    drop(listener);
    state.begin_shutdown();
    let _ = stop.send(true);
    if tokio::time::timeout(drain, async { while connections.join_next().await.is_some() {} }).await.is_err() {
        let (open, seconds) = (connections.len(), drain.as_secs_f64());
        eprintln!("closing {open} connections still open after the {seconds} s drain timeout");
        connections.shutdown().await;
    }
    // No request is left that could wait on the queue: let the thread finish and join it off the runtime.
    tokio::task::spawn_blocking(move || worker.stop())
        .await
        .map_err(|e| ServerError::Serve(io::Error::other(format!("inference thread: {e}"))))
}

/// The next client, once a connection slot is free. Errors of one client (it hung up before being accepted)
/// are skipped; others, such as running out of file descriptors, are reported and retried after a pause
/// that grows while they last, so that the loop neither spins nor stops.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    backoff: &mut Duration,
) -> (TcpStream, OwnedSemaphorePermit) {
    let permit = slots.clone().acquire_owned().await.expect("the connection semaphore is never closed");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                *backoff = ACCEPT_BACKOFF.0;
                return (stream, permit);
            }
            Err(e) if is_per_connection(&e) => {}
            Err(e) => {
                eprintln!("cannot accept connections ({e}); retrying in {} ms", backoff.as_millis());
                tokio::time::sleep(*backoff).await;
                *backoff = (*backoff * 2).min(ACCEPT_BACKOFF.1);
            }
        }
    }
}

/// Accept errors that concern one client only, not the listener or the process.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
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
        if let Some(warning) = exposure_warning(local, config.api_key.is_some()) {
            eprintln!("{warning}");
        }
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

/// A warning for a server reachable from other machines that anyone there may use.
fn exposure_warning(local: SocketAddr, has_key: bool) -> Option<String> {
    (!local.ip().is_loopback() && !has_key).then(|| {
        format!(
            "warning: listening on {local} without an API key: anyone who can reach this address can use the \
             server (set --api-key or LLM2VEC_API_KEY)"
        )
    })
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_open_non_loopback_address_is_warned_about() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(exposure_warning(addr("0.0.0.0:8080"), false).unwrap().contains("without an API key"));
        assert!(exposure_warning(addr("0.0.0.0:8080"), true).is_none());
        assert!(exposure_warning(addr("127.0.0.1:8080"), false).is_none());
        assert!(exposure_warning(addr("[::1]:8080"), false).is_none());
    }

    #[test]
    fn running_out_of_descriptors_is_not_one_clients_error() {
        assert!(!is_per_connection(&io::Error::from_raw_os_error(24))); // EMFILE
        assert!(!is_per_connection(&io::Error::from_raw_os_error(23))); // ENFILE
        assert!(is_per_connection(&io::Error::from(io::ErrorKind::ConnectionAborted)));
    }
}
