//! The accept loop: HTTP/1.1 connections with the limits a public server needs.
//!
//! `axum::serve` waits forever for a client's request head, so a client that
//! opens a connection and trickles bytes (slowloris), or never sends anything,
//! holds it indefinitely. Here every connection has [`HEADER_READ_TIMEOUT`] to
//! send a whole request head, idle keep-alive connections included, and at
//! most [`MAX_CONNECTIONS`] are open at once: past that, new connections are
//! closed at once instead of queueing, so one client cannot take every file
//! descriptor of the process. Each request carries the peer's address as
//! [`axum::extract::ConnectInfo`] (the token rate limit keys on it).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Time a client has to send a complete request head, counted from the
/// moment the server starts reading it (a new or an idle keep-alive
/// connection). Past it the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections open at once at most; more are closed as soon as accepted.
pub const MAX_CONNECTIONS: usize = 8192;

/// How long shutdown waits for requests in flight before dropping them.
const DRAIN: Duration = Duration::from_secs(10);

/// Pending connections the kernel queues before `accept` takes them (the
/// default of 128 overflows under a burst: the excess are left half-open).
pub const BACKLOG: u32 = 4096;

/// Binds `addr` with a [`BACKLOG`]-long queue of pending connections.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting, lets requests in flight finish (up to ten seconds) and returns.
pub async fn run(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    // HTTP/1.1 only (browsers speak HTTP/2 only over TLS, which a proxy in
    // front of kino ends): the head deadline then also covers a connection
    // that never sends a byte, which HTTP version detection would wait on.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors or memory, or a connection reset
                    // before it was accepted: wait a little rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics::counter!("kino_http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let svc = app.clone().map_request(move |mut req: axum::http::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        });
        let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!("connection from {peer}: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight after {DRAIN:?}; closing them");
    }
    Ok(())
}

/// The peer of a request served by [`run`] (`None` for requests that did not
/// come through it, such as a router called directly in tests).
pub fn peer(req: &axum::extract::Request) -> Option<SocketAddr> {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}
