//! HTTP handlers of the webhook listener: admission, the side endpoint and the report.
//! Thin: check the content type, take the snapshot, call the pure code, log and count.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::sync::Semaphore;
use tower::{BoxError, ServiceBuilder};

use crate::admission::{self, Context, Endpoint};
use crate::batch::{self, Skipped};
use crate::evaluate::{Report, Verdict};
use crate::facts::load::{self, Limits as YamlLimits};

use super::Limits;
use super::body::Received;
use super::metrics::{EndpointLabels, RequestLabels};
use super::state::AppState;

pub const NODEPOOLS_PATH: &str = "/validate/nodepools";
pub const HOSTEDCLUSTERS_PATH: &str = "/validate/hostedclusters";
pub const EVALUATE_PATH: &str = "/v1/evaluate";
pub const REPORT_PATH: &str = "/v1/report";

/// Which endpoints a TLS listener serves.
#[derive(Clone, Debug)]
pub enum Routes {
    /// Admission and the side endpoints on one listener (the default).
    All,
    /// Admission only: the side endpoints have their own listener.
    Admission,
    /// The side endpoints only, behind `auth` (see [`super::auth`]).
    Side { auth: super::auth::SideAuth },
}

/// A listener's routes, with the body limit, the in-flight bound (fast 503 instead of a
/// queue) and the per-request deadline.
pub fn router(state: AppState, limits: &Limits, routes: Routes) -> Router {
    let metrics = state.metrics.clone();
    let overload = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(move |err: BoxError| {
            let metrics = metrics.clone();
            async move {
                if err.is::<tower::timeout::error::Elapsed>() {
                    metrics.reject("timeout");
                    status(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Timeout",
                        "request took longer than the server's request timeout".into(),
                    )
                } else {
                    metrics.reject("overload");
                    status(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "ServiceUnavailable",
                        format!("server overloaded: {err}"),
                    )
                }
            }
        }))
        .load_shed()
        .concurrency_limit(limits.max_in_flight)
        .timeout(limits.request_timeout);
    let evaluation = Evaluation {
        slots: Arc::new(Semaphore::new(limits.evaluate_in_flight)),
        timeout: limits.request_timeout,
        max_objects: limits.evaluate_max_objects,
    };
    let admission = Router::new()
        .route(NODEPOOLS_PATH, post(nodepools))
        .route(HOSTEDCLUSTERS_PATH, post(hostedclusters));
    let side = Router::new()
        .route(EVALUATE_PATH, post(evaluate).layer(axum::Extension(evaluation)))
        .route(REPORT_PATH, get(report));
    let (routes, gate) = match routes {
        Routes::All => (admission.merge(side), None),
        Routes::Admission => (admission, None),
        Routes::Side { auth } => {
            let gate = super::auth::SideGate {
                auth,
                metrics: state.metrics.clone(),
                health: state.health.clone(),
                checks: Arc::new(Semaphore::new(limits.max_in_flight)),
                timeout: limits.request_timeout,
                body_timeout: limits.body_timeout,
            };
            (side, Some(gate))
        }
    };
    let receive = super::body::BodyLimits {
        admission_bytes: limits.body_bytes,
        evaluate_bytes: limits.evaluate_body_bytes,
        timeout: limits.body_timeout,
        budget: Arc::new(Semaphore::new(limits.body_budget_bytes)),
        state: state.clone(),
    };
    // One layer stack, outermost first: the side listener's caller check (before any byte of
    // the body is read), body reception (before any slot is taken; it also marks HTTP/1
    // answers `Connection: close` while draining), then the in-flight bound and the deadline
    // around the handler. Applied with a single `Router::layer`: every
    // `Router::layer` call boxes each route once more, and each box is cloned per request
    // (README, Performance: with five such calls, 30 allocations per request were these boxes).
    let stack = ServiceBuilder::new()
        .option_layer(gate.map(|gate| axum::middleware::from_fn_with_state(gate, super::auth::side)))
        .layer(axum::middleware::from_fn_with_state(
            receive,
            super::body::receive,
        ))
        .layer(overload);
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(stack)
        .with_state(state)
}

/// How `/v1/evaluate` work is bounded: a few at once, on the blocking pool (so the async
/// workers keep serving admission and the drain), each under the request deadline.
#[derive(Clone)]
struct Evaluation {
    slots: Arc<Semaphore>,
    timeout: std::time::Duration,
    max_objects: usize,
}

async fn nodepools(State(s): State<AppState>, req: Received) -> Response {
    admit(&s, Endpoint::NodePools, &req.headers, &req.body)
}

async fn hostedclusters(State(s): State<AppState>, req: Received) -> Response {
    admit(&s, Endpoint::HostedClusters, &req.headers, &req.body)
}

fn admit(s: &AppState, endpoint: Endpoint, headers: &HeaderMap, body: &[u8]) -> Response {
    let start = Instant::now();
    let path = match endpoint {
        Endpoint::NodePools => NODEPOOLS_PATH,
        Endpoint::HostedClusters => HOSTEDCLUSTERS_PATH,
    };
    s.metrics.in_flight.inc();
    let response = admit_inner(s, endpoint, path, headers, body, start);
    s.metrics.in_flight.dec();
    s.metrics
        .duration
        .get_or_create(&EndpointLabels { endpoint: path })
        .observe(start.elapsed().as_secs_f64());
    response
}

fn admit_inner(
    s: &AppState,
    endpoint: Endpoint,
    path: &'static str,
    headers: &HeaderMap,
    body: &[u8],
    start: Instant,
) -> Response {
    let error = |code: StatusCode, reason: &'static str, message: String| {
        s.metrics
            .requests
            .get_or_create(&RequestLabels {
                endpoint: path,
                kind: endpoint.kind(),
                operation: "",
                verdict: "",
                decision: "error",
                dry_run: false,
            })
            .inc();
        // Debug formatting escapes newlines and control characters from the request
        tracing::warn!(endpoint = path, ?message, "rejected admission request");
        status(code, reason, message)
    };
    if !content_type_is(headers, &["application/json"]) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "Content-Type must be application/json (an admission.k8s.io/v1 AdmissionReview)".into(),
        );
    }
    let snapshot = s.snapshot();
    let ctx = Context {
        facts: &snapshot.facts,
        namespace_modes: snapshot.namespace_modes.as_deref(),
        policy: &s.policy,
    };
    let outcome = match admission::review(body, endpoint, &ctx) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
    };
    let verdict = outcome.verdict.map(Verdict::as_str).unwrap_or("");
    s.metrics
        .requests
        .get_or_create(&RequestLabels {
            endpoint: path,
            kind: endpoint.kind(),
            operation: outcome.operation,
            verdict,
            decision: outcome.decision.as_str(),
            dry_run: outcome.dry_run,
        })
        .inc();
    // One line per admission: at info when the user was told something (warnings or a
    // denial), at debug for a plain allow — as Gatekeeper and Kyverno log decisions.
    macro_rules! admission_line {
        ($level:ident) => {
            tracing::$level!(
                uid = &*outcome.uid,
                kind = &*outcome.kind,
                namespace = outcome.namespace.as_deref().unwrap_or(""),
                name = outcome.name.as_deref().unwrap_or(""),
                operation = outcome.operation,
                verdict,
                decision = outcome.decision.as_str(),
                mode = outcome.mode.as_str(),
                dry_run = outcome.dry_run,
                override_reason = outcome.override_reason.as_deref(),
                duration_us = start.elapsed().as_micros() as u64,
                "admission"
            )
        };
    }
    if outcome.decision == admission::DecisionKind::Allow {
        admission_line!(debug);
    } else {
        admission_line!(info);
    }
    json_response(StatusCode::OK, &outcome.review)
}

#[derive(Serialize)]
struct EvaluateResponse<'a> {
    reports: &'a [Report],
    #[serde(skip_serializing_if = "<[Skipped]>::is_empty")]
    skipped: &'a [Skipped],
}

/// `POST /v1/evaluate`: NodePools/HostedClusters (single, `List`, multi-document YAML, or an
/// AdmissionReview) judged against the server's facts; answers the report contract.
async fn evaluate(
    State(s): State<AppState>,
    axum::Extension(evaluation): axum::Extension<Evaluation>,
    Received { headers, body }: Received,
) -> Response {
    let start = Instant::now();
    let count = |decision: &'static str| {
        s.metrics
            .requests
            .get_or_create(&RequestLabels {
                endpoint: EVALUATE_PATH,
                kind: "",
                operation: "",
                verdict: "",
                decision,
                dry_run: false,
            })
            .inc();
    };
    const TYPES: [&str; 5] = [
        "application/json",
        "application/yaml",
        "application/x-yaml",
        "text/yaml",
        "text/x-yaml",
    ];
    if !content_type_is(&headers, &TYPES) {
        count("error");
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "Content-Type must be application/json or application/yaml".into(),
        );
    }
    let Ok(slot) = evaluation.slots.clone().try_acquire_owned() else {
        count("error");
        s.metrics.reject("overload");
        return status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "server busy: too many /v1/evaluate requests at once; retry".into(),
        );
    };
    let deadline = start + evaluation.timeout;
    let facts = s.snapshot();
    let max_objects = evaluation.max_objects;
    let work = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        evaluate_body(&body, &facts.facts, max_objects, deadline)
    });
    let answer = match work.await {
        Ok(Ok(answer)) => answer,
        Ok(Err(resp)) => {
            count("error");
            return *resp;
        }
        Err(e) => {
            count("error");
            tracing::error!(error = %e, "evaluation task failed");
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "the evaluation failed; this is a bug, please report it".into(),
            );
        }
    };
    count("allow");
    s.metrics
        .duration
        .get_or_create(&EndpointLabels {
            endpoint: EVALUATE_PATH,
        })
        .observe(start.elapsed().as_secs_f64());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        answer,
    )
        .into_response()
}

/// The largest `/v1/evaluate` answer (1,000 objects with long findings stay well below).
pub const MAX_EVALUATE_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Loads and evaluates a `/v1/evaluate` body (on the blocking pool), or the error answer.
fn evaluate_body(
    body: &[u8],
    facts: &crate::facts::Facts,
    max_objects: usize,
    deadline: Instant,
) -> Result<Vec<u8>, Box<Response>> {
    let bad = |message: String| Box::new(status(StatusCode::BAD_REQUEST, "BadRequest", message));
    let loaded = load::parse_bytes_limited(body, "request body", YamlLimits::Request { max_objects })
        .map_err(|e| match e {
            load::LoadError::TooMany { .. } => Box::new(status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                e.to_string(),
            )),
            e => bad(e.to_string()),
        })?;
    let (reports, skipped) = batch::evaluate_all_until(&loaded, facts, Some(deadline)).map_err(|done| {
        Box::new(status(
            StatusCode::SERVICE_UNAVAILABLE,
            "Timeout",
            format!("evaluation stopped at the request deadline after {done} of {} objects; send fewer objects per request", loaded.len()),
        ))
    })?;
    if reports.reports.is_empty() {
        let why = skipped
            .first()
            .map(|s| format!(": {} {}", s.source, s.reason))
            .unwrap_or_default();
        return Err(bad(format!("no NodePool or HostedCluster in the body{why}")));
    }
    let answer = serde_json::to_vec(&EvaluateResponse {
        reports: &reports.reports,
        skipped: &skipped,
    })
    .map_err(|e| {
        Box::new(status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("cannot encode the answer: {e}"),
        ))
    })?;
    if answer.len() > MAX_EVALUATE_RESPONSE_BYTES {
        return Err(Box::new(status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!(
                "the answer would be {} bytes, over the limit of {MAX_EVALUATE_RESPONSE_BYTES}; send fewer objects per request",
                answer.len()
            ),
        )));
    }
    Ok(answer)
}

/// `GET /v1/report`: the last audit of existing objects that are not migratable; with
/// `kubernetes` auth only the objects the caller may list.
async fn report(State(s): State<AppState>, caller: Option<axum::Extension<super::auth::Caller>>) -> Response {
    let audit = s.audit.borrow().clone();
    match audit {
        Some(reports) => match caller {
            None => json_response(StatusCode::OK, reports.as_ref()),
            Some(axum::Extension(c)) => match c.auth.visible_reports(&c.user, &reports).await {
                Ok(visible) => json_response(StatusCode::OK, &visible),
                Err(e) => e.into_response(),
            },
        },
        None => status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "no audit has run yet (the audit needs a connected cluster; see --audit-interval)".into(),
        ),
    }
}

async fn not_found() -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "no such endpoint; POST {NODEPOOLS_PATH}, {HOSTEDCLUSTERS_PATH}, {EVALUATE_PATH}; GET {REPORT_PATH}"
        ),
    )
}

async fn method_not_allowed() -> Response {
    status(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "method not allowed on this endpoint".into(),
    )
}

fn content_type_is(headers: &HeaderMap, accepted: &[&str]) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    accepted.iter().any(|a| essence.eq_ignore_ascii_case(a))
}

/// A `metav1.Status` error body, as Kubernetes clients expect.
pub fn status(code: StatusCode, reason: &'static str, message: String) -> Response {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct StatusBody {
        api_version: &'static str,
        kind: &'static str,
        status: &'static str,
        message: String,
        reason: &'static str,
        code: u16,
    }
    json_response(
        code,
        &StatusBody {
            api_version: "v1",
            kind: "Status",
            status: "Failure",
            message,
            reason,
            code: code.as_u16(),
        },
    )
}

fn json_response<T: Serialize + ?Sized>(code: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (code, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the response: {e}"),
        )
            .into_response(),
    }
}
