//! One client connection: HTTP/1.1 served by hyper, watched by a timer that closes it when it sits idle
//! longer than --keep-alive-timeout or takes longer than --header-timeout to send a request head, and closed
//! at shutdown as soon as no request of its own is in progress.
//!
//! Telling the phases apart needs no parsing: bytes that arrive while no request is in progress are the start
//! of a head, and a request is in progress from the moment hyper hands it to the router until its response
//! is returned.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit};
use tokio::time::Instant;

/// The timeouts a connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub keep_alive: Duration,
}

/// Serves `stream` until the client closes it, a timeout closes it, or shutdown finds it between requests.
/// `_permit` is this connection's place under --max-connections, given back when it ends.
pub async fn serve(
    stream: TcpStream,
    router: Router,
    timeouts: Timeouts,
    mut shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked { inner: stream, activity: activity.clone() });
    let service = TowerToHyperService::new(router);
    let in_service = activity.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let guard = Busy::enter(in_service.clone());
        let response = hyper::service::Service::call(&service, request);
        async move {
            let response: Result<Response, Infallible> = response.await;
            drop(guard);
            response
        }
    });
    // hyper's own header timer would also run while the connection is idle; the watch below replaces it.
    let connection = http1::Builder::new().header_read_timeout(None).serve_connection(io, service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        let deadline = activity.deadline(timeouts);
        tokio::select! {
            _ = connection.as_mut() => return,
            () = sleep_until(deadline) => {
                if activity.deadline(timeouts).is_some_and(|d| d <= Instant::now()) {
                    return;
                }
            }
            () = activity.changed.notified() => {}
            _ = shutdown.wait_for(|&stop| stop), if !draining => {
                if activity.state().requests == 0 {
                    return;
                }
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What the connection is doing, as far as its timeouts care.
struct State {
    /// Requests handed to the router and not yet answered.
    requests: usize,
    /// When the connection last became idle (opened, a response returned, or bytes written since).
    idle_since: Instant,
    /// When the first byte of the next request's head arrived, while idle.
    head_started: Option<Instant>,
}

struct Activity {
    state: Mutex<State>,
    /// Woken when a head starts or a request ends, so that the deadline is recomputed.
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        let state = State { requests: 0, idle_since: Instant::now(), head_started: None };
        Self { state: Mutex::new(state), changed: Notify::new() }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// When the connection must be closed, or None while a request is in progress (the request's own
    /// timeouts bound it).
    fn deadline(&self, timeouts: Timeouts) -> Option<Instant> {
        let state = self.state();
        match (state.requests, state.head_started) {
            (0, Some(start)) => Some(start + timeouts.header),
            (0, None) => Some(state.idle_since + timeouts.keep_alive),
            _ => None,
        }
    }

    fn on_read(&self) {
        let mut state = self.state();
        if state.requests == 0 && state.head_started.is_none() {
            state.head_started = Some(Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }

    fn on_write(&self) {
        let mut state = self.state();
        if state.requests == 0 && state.head_started.is_none() {
            state.idle_since = Instant::now();
        }
    }
}

/// One request in progress on a connection, from its head to its response.
struct Busy(Arc<Activity>);

impl Busy {
    fn enter(activity: Arc<Activity>) -> Self {
        {
            let mut state = activity.state();
            state.requests += 1;
            state.head_started = None;
        }
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        {
            let mut state = self.0.state();
            state.requests -= 1;
            state.idle_since = Instant::now();
        }
        self.0.changed.notify_one();
    }
}

/// The client's stream, reporting reads and writes to the connection's [`Activity`].
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.on_read();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
