//! The accept loops (TLS for admission and the side endpoints, plain HTTP for ops):
//! TCP_NODELAY, bounded connections in total and per peer (excess ones are closed at once
//! rather than queued), a TLS handshake deadline, the optional client-name check,
//! HTTP/1.1 and HTTP/2 on one port, per-connection deadlines ([`super::conn`]), and a drain
//! that loses no request.
//!
//! Draining, in two steps:
//! 1. `draining` (SIGTERM, start of the shutdown delay): pooled connections that are idle
//!    are closed at once, HTTP/2 connections get GOAWAY, and busy HTTP/1 connections close
//!    after their response (`Connection: close`). Clients notice an idle pooled connection
//!    closing (Go's transport reads from idle connections) and dial anew, while the
//!    listener still accepts.
//! 2. `stop` (end of the delay): the listener closes; connections already in the kernel
//!    backlog are still served; a connection that is idle gets a short grace to send a
//!    request it may already have written; then every connection shuts down gracefully.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use futures::FutureExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Limits;
use super::conn::{Activity, Check, ConnService, Timeouts, Watched};
use super::metrics::Metrics;
use super::tls::client_names;

/// How long an idle connection may still send a request after the listener closed.
const IDLE_GRACE: Duration = Duration::from_secs(1);
/// While draining, an HTTP/1 connection idle this long is closed (a pooled one, not one
/// whose client is between two requests).
const DRAIN_IDLE: Duration = Duration::from_millis(500);
/// How long a connection told to close gracefully (idle timeout) may take to do so.
const GRACEFUL_CLOSE: Duration = Duration::from_secs(5);

/// Open connections, for the graceful drain.
pub struct Drain {
    stop: CancellationToken,
    tracker: TaskTracker,
    /// When the listening socket was closed (new connections are refused from then on).
    pub closed_at: std::time::Instant,
}

impl Drain {
    /// Connections still open.
    pub fn count(&self) -> usize {
        self.tracker.len()
    }

    /// Shuts every connection down gracefully and waits for them to finish.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// TLS for a listener, with the client names it accepts (empty: any).
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub allowed_clients: Arc<[String]>,
}

/// Counts connections per peer address.
#[derive(Default)]
struct Peers(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in [`Peers`], released on drop.
struct PeerSlot {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Peers {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<PeerSlot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.peers.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// What every accepted connection needs.
struct Conn {
    builder: auto::Builder<TokioExecutor>,
    app: Router,
    draining: CancellationToken,
    /// The listener stopped accepting (end of the shutdown delay).
    accept_stopped: CancellationToken,
    stop: CancellationToken,
    tracker: TaskTracker,
    connections: Arc<Semaphore>,
    peers: Arc<Peers>,
    max_per_peer: usize,
    tls: Option<Tls>,
    handshake_timeout: Duration,
    timeouts: Timeouts,
    metrics: Arc<Metrics>,
}

/// A connection's permits: the global count and the per-peer count.
struct Slots {
    _total: OwnedSemaphorePermit,
    _peer: PeerSlot,
}

impl Conn {
    fn spawn(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let Ok(total) = self.connections.clone().try_acquire_owned() else {
            self.metrics.reject("connections");
            tracing::debug!(%peer, "connection limit reached; closing");
            return;
        };
        let Some(peer_slot) = self.peers.take(peer.ip(), self.max_per_peer) else {
            self.metrics.reject("peer-connections");
            tracing::debug!(%peer, "per-peer connection limit reached; closing");
            return;
        };
        let slots = Slots {
            _total: total,
            _peer: peer_slot,
        };
        // hyper leaves Nagle on: p99.9 at one connection goes from ~3 to ~33 ms.
        let _ = stream.set_nodelay(true);
        let this = self.clone();
        // the first-request deadline runs from accept, across the TLS handshake
        let activity = Activity::new();
        self.tracker.spawn(async move {
            let _slots = slots;
            match &this.tls {
                None => this.serve(stream, peer, activity).await,
                Some(tls) => {
                    let accepted = tokio::time::timeout(this.handshake_timeout, tls.acceptor.accept(stream));
                    let stream = match accepted.await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                    };
                    if !tls.allowed_clients.is_empty() {
                        let names = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(client_names);
                        let ok = names.as_ref().is_some_and(|n| n.iter().any(|n| tls.allowed_clients.contains(n)));
                        if !ok {
                            return tracing::warn!(%peer, names = ?names, "client certificate name not allowed; closing");
                        }
                    }
                    this.serve(stream, peer, activity).await
                }
            }
        });
    }

    /// Serves one connection until it ends, is closed by a deadline, or the drain ends it.
    async fn serve<I>(&self, io: I, peer: SocketAddr, activity: Arc<Activity>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = ConnService {
            app: self.app.clone(),
            activity: activity.clone(),
        };
        let io = TokioIo::new(Watched::new(io, activity.clone()));
        let conn = self.builder.serve_connection(io, service);
        let mut conn = std::pin::pin!(conn);
        let mut tick = tokio::time::interval(tick_for(&self.timeouts));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut closing: Option<tokio::time::Instant> = None;
        // (requests seen when the listener closed, end of the idle grace)
        let mut grace: Option<(u64, tokio::time::Instant)> = None;
        let (mut saw_draining, mut saw_stop) = (false, false);
        loop {
            tokio::select! {
                // The connection first: a request whose bytes have arrived is read (and
                // counted as started) before any deadline below can close the connection.
                biased;
                r = conn.as_mut() => return log_end(peer, r),
                _ = self.draining.cancelled(), if !saw_draining => {
                    saw_draining = true;
                    if closing.is_none() && activity.http2() {
                        conn.as_mut().graceful_shutdown();
                        closing = Some(tokio::time::Instant::now() + GRACEFUL_CLOSE);
                    }
                }
                _ = self.stop.cancelled(), if !saw_stop => {
                    saw_stop = true;
                    if closing.is_none() {
                        if activity.idle() {
                            grace = Some((activity.requests(), tokio::time::Instant::now() + IDLE_GRACE));
                        } else {
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                }
                _ = activity.started.notified(), if grace.is_some() => {
                    if grace.is_some_and(|(seen, _)| activity.requests() > seen) {
                        grace = None;
                        conn.as_mut().graceful_shutdown();
                    }
                }
                _ = tick.tick() => {
                    let now = tokio::time::Instant::now();
                    if grace.is_some_and(|(_, until)| now >= until) {
                        grace = None;
                        conn.as_mut().graceful_shutdown();
                    }
                    // While draining, an HTTP/1 connection left idle by its client is closed;
                    // one in use gets `Connection: close` on its next response instead
                    // (closing it between two requests would race the client's next one).
                    // Only during the delay: once the listener is told to stop, an idle
                    // connection gets the grace instead (the stop token is cancelled before
                    // the accept loop notices, so checking only `accept_stopped` raced).
                    if saw_draining
                        && !self.stop.is_cancelled()
                        && !self.accept_stopped.is_cancelled()
                        && closing.is_none()
                        && activity.idle_for() >= DRAIN_IDLE
                    {
                        conn.as_mut().graceful_shutdown();
                        closing = Some(now + GRACEFUL_CLOSE);
                    }
                    if closing.is_some_and(|at| now >= at) {
                        self.metrics.reject("idle-timeout");
                        return tracing::debug!(%peer, "connection did not close in time; dropping it");
                    }
                    match activity.check(&self.timeouts) {
                        Check::Fine => {}
                        Check::Idle => {
                            if closing.is_none() {
                                tracing::debug!(%peer, "idle connection; closing");
                                conn.as_mut().graceful_shutdown();
                                closing = Some(now + GRACEFUL_CLOSE);
                            }
                        }
                        Check::Close(reason) => {
                            self.metrics.reject(reason);
                            return tracing::debug!(%peer, reason, "closing connection");
                        }
                    }
                }
            }
        }
    }
}

/// How often a connection's deadlines are checked: a quarter of the shortest, within
/// 10 ms..250 ms.
fn tick_for(t: &Timeouts) -> Duration {
    let shortest = t.first_request.min(t.idle).min(t.write).min(t.response);
    (shortest / 4).clamp(Duration::from_millis(10), Duration::from_millis(250))
}

fn log_end<E: std::fmt::Display>(peer: SocketAddr, result: Result<(), E>) {
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Accepts until `stop` is cancelled; returns the handle that drains open connections.
/// `draining` is cancelled when the shutdown starts (before `stop`).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Tls>,
    app: Router,
    limits: &Limits,
    metrics: Arc<Metrics>,
    draining: CancellationToken,
    stop: CancellationToken,
) -> Drain {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        .max_pending_accept_reset_streams(Some(20))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let conn = Arc::new(Conn {
        builder,
        app,
        draining,
        accept_stopped: stop.clone(),
        stop: CancellationToken::new(),
        tracker: TaskTracker::new(),
        connections: Arc::new(Semaphore::new(limits.max_connections)),
        peers: Arc::default(),
        max_per_peer: limits.max_connections_per_peer,
        tls,
        handshake_timeout: limits.handshake_timeout,
        timeouts: Timeouts {
            first_request: limits.header_read_timeout,
            idle: limits.idle_timeout,
            write: limits.write_timeout,
            response: limits.request_timeout + limits.write_timeout,
        },
        metrics,
    });
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => conn.spawn(stream, peer),
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    // Connections already in the kernel's backlog were started before we stopped: serve
    // them rather than resetting them when the listener is dropped.
    while let Some(Ok((stream, peer))) = listener.accept().now_or_never() {
        conn.spawn(stream, peer);
    }
    drop(listener);
    Drain {
        stop: conn.stop.clone(),
        tracker: conn.tracker.clone(),
        closed_at: std::time::Instant::now(),
    }
}
