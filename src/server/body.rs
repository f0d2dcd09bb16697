//! Receiving a request before anything is evaluated: HTTP/1.1 framing checks, the body
//! limit (by `Content-Length` before any byte is read, so `Expect: 100-continue` gets its
//! 413 at once), the body deadline, and a global budget of body bytes being received.
//! Only a complete body takes an evaluation slot, so clients that announce a body and never
//! send it cannot starve real requests.
//!
//! Any answer given before the body was read whole says `Connection: close` on HTTP/1:
//! the server will not read the rest, so a client must not reuse the connection. So does
//! every HTTP/1 answer while the server drains: kube-apiserver keeps idle connections, and
//! moves to other replicas before the listener closes instead of racing a request against
//! the close (HTTP/2 gets GOAWAY from the graceful shutdown).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use tokio::sync::Semaphore;

use super::handlers::{EVALUATE_PATH, status};
use super::metrics::Metrics;
use super::state::AppState;

/// What [`receive`] enforces.
#[derive(Clone)]
pub struct BodyLimits {
    pub admission_bytes: usize,
    pub evaluate_bytes: usize,
    pub timeout: Duration,
    pub budget: Arc<Semaphore>,
    pub state: AppState,
}

impl BodyLimits {
    fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }
}

/// Middleware: checks framing, reads the whole body under the limits, then passes the
/// request on with the body in memory.
pub async fn receive(State(limits): State<BodyLimits>, req: Request, next: Next) -> Response {
    let http1 = req.version() < Version::HTTP_2;
    if http1 && let Err(resp) = framing(req.version(), req.headers()) {
        return close(*resp);
    }
    let max = if req.uri().path() == EVALUATE_PATH {
        limits.evaluate_bytes
    } else {
        limits.admission_bytes
    };
    let (parts, mut body) = req.into_parts();
    let announced = content_length(&parts.headers);
    if let Some(len) = announced
        && len > max as u64
    {
        limits.metrics().reject("body-too-large");
        // A client waiting for `100 Continue` has sent nothing: answer at once. Otherwise
        // read what it is sending, so closing does not reset the connection under the
        // client before it reads our answer.
        if http1 && !expects_continue(&parts.headers) {
            discard(&mut body, limits.timeout).await;
        }
        return close_if(http1, too_large(max));
    }
    let collected =
        tokio::time::timeout(limits.timeout, collect(&mut body, max, announced, &limits.budget)).await;
    let (bytes, _permits) = match collected {
        Ok(Ok(b)) => b,
        Ok(Err(resp)) => {
            if let Some(reason) = resp.extensions().get::<Rejected>() {
                limits.metrics().reject(reason.0);
            }
            if http1 {
                discard(&mut body, limits.timeout).await;
            }
            return close_if(http1, resp);
        }
        Err(_) => {
            limits.metrics().reject("body-timeout");
            return close_if(
                http1,
                status(
                    StatusCode::REQUEST_TIMEOUT,
                    "Timeout",
                    format!("the request body did not arrive within {:?}", limits.timeout),
                ),
            );
        }
    };
    // the permits are held until the answer is ready
    let resp = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    if http1 && limits.state.health.draining() {
        return close(resp);
    }
    resp
}

/// A request as [`receive`] let it through, for a handler: its headers and its body, read
/// into memory (one frame, taken without a copy). Extracting it neither clones the header
/// map (as axum's `HeaderMap` extractor does) nor applies axum's own body limit: ours ran.
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for Received {
    type Rejection = Response;

    async fn from_request(req: Request, _: &S) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        match body.collect().await {
            Ok(collected) => Ok(Received {
                headers: parts.headers,
                body: collected.to_bytes(),
            }),
            Err(e) => Err(status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("cannot read the request body: {e}"),
            )),
        }
    }
}

/// An answer given before the body was read (the side listener refusing a caller): on
/// HTTP/1 with a body announced, reads and drops what the client goes on sending — until the
/// body ends, nothing arrives for [`LINGER_IDLE`], `timeout` passes or [`DISCARD_BYTES`]
/// were read — so closing does not reset the connection under a client still sending, and
/// a client that announced a body and sends nothing gets its answer at once. The answer says
/// `Connection: close` unless the whole body was read (or while `draining`). A client waiting
/// for `100 Continue` has sent nothing and is answered at once, with `Connection: close`.
pub async fn refuse_unread(req: Request, resp: Response, timeout: Duration, draining: bool) -> Response {
    if req.version() >= Version::HTTP_2 {
        return resp;
    }
    let announced = content_length(req.headers()).is_some_and(|n| n > 0)
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    if !announced {
        return if draining { close(resp) } else { resp };
    }
    if expects_continue(req.headers()) {
        return close(resp);
    }
    let ended = linger(&mut req.into_body(), timeout).await;
    if ended && !draining { resp } else { close(resp) }
}

/// How long [`refuse_unread`] waits for more of a body it drops.
pub const LINGER_IDLE: Duration = Duration::from_millis(200);

/// Reads and drops a body while it keeps arriving; whether it ended. Unlike [`discard`] (the
/// 413 and 400 paths, which read through pauses until the body timeout), it stops at the first
/// [`LINGER_IDLE`] pause: a caller refused for its credentials is not waited for.
async fn linger(body: &mut Body, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut total = 0usize;
    loop {
        let idle = LINGER_IDLE.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(idle, body.frame()).await {
            Ok(None) => return true,
            Ok(Some(Ok(frame))) => {
                total += frame.data_ref().map_or(0, Bytes::len);
                if total > DISCARD_BYTES {
                    return false;
                }
            }
            Ok(Some(Err(_))) | Err(_) => return false,
        }
    }
}

/// A metric label carried by an error response of [`collect`].
#[derive(Clone, Copy)]
struct Rejected(&'static str);

/// Reads and drops up to [`DISCARD_BYTES`] of a body we refused, within `timeout`.
async fn discard(body: &mut Body, timeout: Duration) {
    let drain = async {
        let mut total = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            total += frame.data_ref().map_or(0, Bytes::len);
            if total > DISCARD_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, drain).await;
}

/// How much of a refused body is read (and dropped) before the connection is closed.
const DISCARD_BYTES: usize = 16 * 1024 * 1024;

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

async fn collect(
    body: &mut Body,
    max: usize,
    announced: Option<u64>,
    budget: &Arc<Semaphore>,
) -> Result<(Bytes, Option<tokio::sync::OwnedSemaphorePermit>), Response> {
    let announced = announced.map_or(0, |n| {
        usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(max)
            .min(PREALLOCATE_BYTES)
    });
    // A body that arrives in one frame (often all of it: hyper hands over what one read
    // brought) is passed on as that frame, without a copy; a longer one is gathered into a
    // buffer sized from Content-Length (up to PREALLOCATE_BYTES: the length is the client's
    // claim, the bytes are counted against the budget as they arrive).
    let mut first: Option<Bytes> = None;
    let mut buf = Vec::new();
    let mut permits: Option<tokio::sync::OwnedSemaphorePermit> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            with_reason(
                status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("cannot read the request body: {e}"),
                ),
                "body-error",
            )
        })?;
        let Ok(data) = frame.into_data() else { continue };
        let received = first.as_ref().map_or(buf.len(), Bytes::len);
        if received + data.len() > max {
            return Err(with_reason(too_large(max), "body-too-large"));
        }
        let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let permit = budget.clone().try_acquire_many_owned(n).map_err(|_| {
            with_reason(
                status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "server overloaded: too many request bytes being received; retry".into(),
                ),
                "overload",
            )
        })?;
        match &mut permits {
            Some(p) => p.merge(permit),
            None => permits = Some(permit),
        }
        if let Some(head) = first.take() {
            buf.reserve_exact(announced.max(head.len() + data.len()));
            buf.extend_from_slice(&head);
        }
        if buf.is_empty() {
            first = Some(data);
        } else {
            buf.extend_from_slice(&data);
        }
    }
    Ok((first.unwrap_or_else(|| Bytes::from(buf)), permits))
}

/// How much of an announced Content-Length [`collect`] reserves before the bytes arrive.
const PREALLOCATE_BYTES: usize = 256 * 1024;

fn with_reason(mut resp: Response, reason: &'static str) -> Response {
    resp.extensions_mut().insert(Rejected(reason));
    resp
}

fn too_large(max: usize) -> Response {
    status(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
        format!("request body over the length limit of {max} bytes (length limit exceeded)"),
    )
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// RFC 9112: an HTTP/1.1 request has exactly one `Host` (§3.2), and we decode no transfer
/// coding but `chunked` (§6.1: 501 for one we do not implement).
fn framing(version: Version, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let hosts = headers.get_all(header::HOST).iter().count();
    if version == Version::HTTP_11 && hosts != 1 {
        let what = if hosts == 0 {
            "no Host header"
        } else {
            "more than one Host header"
        };
        return Err(Box::new(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("HTTP/1.1 request with {what}; send exactly one"),
        )));
    }
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        let text = value.to_str().unwrap_or("?");
        if text.split(',').any(|c| !c.trim().eq_ignore_ascii_case("chunked")) {
            return Err(Box::new(status(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                format!("Transfer-Encoding `{text}` is not supported; send the body plain or chunked"),
            )));
        }
    }
    Ok(())
}

fn close(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn close_if(http1: bool, resp: Response) -> Response {
    if http1 { close(resp) } else { resp }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(parts: &[&'static [u8]]) -> Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Body::from_stream(futures::stream::iter(chunks))
    }

    async fn collected(
        parts: &[&'static [u8]],
        max: usize,
        announced: Option<u64>,
    ) -> Result<Bytes, StatusCode> {
        let budget = Arc::new(Semaphore::new(1 << 20));
        match collect(&mut frames(parts), max, announced, &budget).await {
            Ok((bytes, _permits)) => Ok(bytes),
            Err(resp) => Err(resp.status()),
        }
    }

    #[tokio::test]
    async fn one_frame_is_passed_on_without_a_copy() {
        static BODY: &[u8] = b"{\"kind\":\"AdmissionReview\"}";
        let bytes = collected(&[BODY], 1024, Some(BODY.len() as u64)).await.unwrap();
        assert_eq!(bytes, BODY);
        assert_eq!(bytes.as_ptr(), BODY.as_ptr(), "the frame itself, not a copy");
    }

    #[tokio::test]
    async fn frames_are_gathered_in_order_whatever_the_announced_length() {
        let parts: &[&'static [u8]] = &[b"{\"a\":", b"", b"[1,2,", b"3]}"];
        for announced in [None, Some(0), Some(5), Some(14), Some(1 << 40)] {
            let bytes = collected(parts, 1024, announced).await.unwrap();
            assert_eq!(bytes, &b"{\"a\":[1,2,3]}"[..], "announced {announced:?}");
        }
        assert_eq!(collected(&[], 1024, None).await.unwrap(), Bytes::new());
    }

    #[tokio::test]
    async fn the_limit_counts_every_frame() {
        let parts: &[&'static [u8]] = &[b"12345", b"67890", b"x"];
        assert_eq!(collected(parts, 11, None).await.unwrap().len(), 11);
        assert_eq!(
            collected(parts, 10, None).await,
            Err(StatusCode::PAYLOAD_TOO_LARGE)
        );
        assert_eq!(
            collected(&parts[..1], 4, None).await,
            Err(StatusCode::PAYLOAD_TOO_LARGE)
        );
    }
}
