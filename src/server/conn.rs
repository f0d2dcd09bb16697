//! What one connection is doing, so the accept loop can close the ones that do nothing
//! useful: a connection that never sends a request, one idle past the idle timeout (also
//! HTTP/2 connections that only answer PINGs), a peer that stops reading our response
//! (HTTP/1 write stall, HTTP/2 zero window), and a response that never finishes.
//!
//! [`Activity`] is updated by the connection's service ([`ConnService`]: a request starts,
//! its response body is dropped) and by its I/O ([`Watched`]: a write blocks or proceeds);
//! the connection task polls [`Activity::check`] on a short tick.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// Per-connection deadlines.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// From accept to the first request's headers.
    pub first_request: Duration,
    /// With no request in flight: HTTP/1 connections are closed, HTTP/2 ones get GOAWAY.
    /// Above the Go HTTP client's 90 s `IdleConnTimeout`, so kube-apiserver closes first.
    pub idle: Duration,
    /// A write that makes no progress this long (the peer does not read) closes the
    /// connection.
    pub write: Duration,
    /// A response not finished this long after its request started closes the connection.
    pub response: Duration,
}

/// What the connection task should do.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    Fine,
    /// Close gracefully (GOAWAY on HTTP/2).
    Idle,
    /// Close now; the `&str` is the metric label.
    Close(&'static str),
}

const NOT_BLOCKED: u64 = u64::MAX;

#[derive(Debug)]
pub struct Activity {
    born: Instant,
    /// Milliseconds since `born` of the last request start or response end.
    last: AtomicU64,
    active: AtomicUsize,
    requests: AtomicU64,
    http2: AtomicBool,
    write_blocked_since: AtomicU64,
    /// Signalled when a request starts.
    pub started: Notify,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            born: Instant::now(),
            last: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            write_blocked_since: AtomicU64::new(NOT_BLOCKED),
            started: Notify::new(),
        })
    }

    fn now(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    fn request_started(&self, http2: bool) {
        self.active.fetch_add(1, Ordering::SeqCst);
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.last.store(self.now(), Ordering::SeqCst);
        if http2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.started.notify_one();
    }

    fn response_finished(&self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
        self.last.store(self.now(), Ordering::SeqCst);
    }

    /// Requests started on this connection so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// No request is being served (its response not yet fully handed to the connection).
    pub fn idle(&self) -> bool {
        self.active.load(Ordering::SeqCst) == 0
    }

    /// How long no request has been in flight (zero while one is), counted from the last
    /// request's end (from accept before the first).
    pub fn idle_for(&self) -> Duration {
        if !self.idle() {
            return Duration::ZERO;
        }
        Duration::from_millis(self.now().saturating_sub(self.last.load(Ordering::SeqCst)))
    }

    pub fn http2(&self) -> bool {
        self.http2.load(Ordering::Relaxed)
    }

    pub fn check(&self, t: &Timeouts) -> Check {
        let now = self.now();
        let ms = |d: Duration| d.as_millis() as u64;
        let blocked = self.write_blocked_since.load(Ordering::SeqCst);
        if blocked != NOT_BLOCKED && now.saturating_sub(blocked) > ms(t.write) {
            return Check::Close("write-timeout");
        }
        if self.requests() == 0 {
            return if now > ms(t.first_request) {
                Check::Close("first-request-timeout")
            } else {
                Check::Fine
            };
        }
        let since = now.saturating_sub(self.last.load(Ordering::SeqCst));
        if self.idle() {
            if since > ms(t.idle) {
                return Check::Idle;
            }
        } else if since > ms(t.response) {
            return Check::Close("response-timeout");
        }
        Check::Fine
    }

    fn write_progress(&self, pending: bool) {
        if pending {
            let _ = self.write_blocked_since.compare_exchange(
                NOT_BLOCKED,
                self.now(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        } else {
            self.write_blocked_since.store(NOT_BLOCKED, Ordering::SeqCst);
        }
    }
}

/// Marks the response finished when dropped (also when the request is abandoned).
#[derive(Debug)]
struct Guard(Arc<Activity>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.response_finished();
    }
}

/// The router as one connection's hyper service, recording its activity.
#[derive(Clone)]
pub struct ConnService {
    pub app: Router,
    pub activity: Arc<Activity>,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for ConnService {
    type Response = hyper::Response<TrackedBody>;
    type Error = Infallible;
    type Future = Tracked;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        self.activity
            .request_started(req.version() == hyper::Version::HTTP_2);
        let guard = Guard(self.activity.clone());
        let app = self.app.clone();
        let req: Request = req.map(Body::new);
        Tracked {
            inner: Box::pin(tower::ServiceExt::oneshot(app, req)),
            guard: Some(guard),
        }
    }
}

/// The response future of [`ConnService`].
pub struct Tracked {
    inner: Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>,
    guard: Option<Guard>,
}

impl Future for Tracked {
    type Output = Result<hyper::Response<TrackedBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let resp = match ready!(self.inner.as_mut().poll(cx)) {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let guard = self.guard.take();
        Poll::Ready(Ok(resp.map(|inner| TrackedBody { inner, _guard: guard })))
    }
}

/// A response body that marks the response finished when hyper drops it.
pub struct TrackedBody {
    inner: Body,
    _guard: Option<Guard>,
}

impl http_body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// I/O that records whether writes are blocked (the peer stopped reading).
pub struct Watched<T> {
    io: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    pub fn new(io: T, activity: Arc<Activity>) -> Self {
        Self { io, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> Watched<T> {
    fn note<R>(&self, p: Poll<R>) -> Poll<R> {
        self.activity.write_progress(p.is_pending());
        p
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let p = Pin::new(&mut self.io).poll_write(cx, buf);
        self.note(p)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let p = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.note(p)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let p = Pin::new(&mut self.io).poll_flush(cx);
        self.note(p)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        first_request: Duration::from_millis(0),
        idle: Duration::from_millis(0),
        write: Duration::from_millis(0),
        response: Duration::from_millis(0),
    };

    #[test]
    fn a_connection_is_judged_by_what_it_does() {
        let a = Activity::new();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(a.check(&T), Check::Close("first-request-timeout"));
        a.request_started(false);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(a.check(&T), Check::Close("response-timeout"));
        a.response_finished();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(a.check(&T), Check::Idle);
        a.write_progress(true);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(a.check(&T), Check::Close("write-timeout"));
        a.write_progress(false);
        let long = Timeouts {
            idle: Duration::from_secs(60),
            ..T
        };
        assert_eq!(a.check(&long), Check::Fine);
    }
}
