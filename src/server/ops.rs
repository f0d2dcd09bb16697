//! The plain-HTTP ops listener: `/healthz` (process up), `/readyz` (certificate loaded,
//! facts ready, not draining), `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::auth::KubeAuth;
use super::state::AppState;
use super::tls::CertStore;

#[derive(Clone)]
struct OpsState {
    app: AppState,
    certs: Arc<CertStore>,
}

/// The ops routes; with `metrics_auth` (and its deadline), `/metrics` needs a token allowed to
/// `get` the non-resource URL `/metrics` (probes stay open: the kubelet sends no token).
pub fn router(
    app: AppState,
    certs: Arc<CertStore>,
    metrics_auth: Option<(Arc<KubeAuth>, Duration)>,
) -> Router {
    let mut metrics_route = get(metrics);
    if let Some(auth) = metrics_auth {
        metrics_route =
            metrics_route.route_layer(axum::middleware::from_fn_with_state(auth, super::auth::metrics));
    }
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", metrics_route)
        .with_state(OpsState { app, certs })
}

async fn readyz(State(s): State<OpsState>) -> Response {
    let snapshot = s.app.snapshot();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let problem = if s.app.health.draining() {
        Some("shutting down".to_owned())
    } else if s.certs.not_after() <= now {
        Some("the serving certificate has expired".to_owned())
    } else if !snapshot.ready {
        Some(
            snapshot
                .not_ready_reason
                .clone()
                .unwrap_or_else(|| "facts not synced yet".into()),
        )
    } else {
        None
    };
    match problem {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(p) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {p}\n")).into_response(),
    }
}

async fn metrics(State(s): State<OpsState>) -> Response {
    s.app.metrics.cert_expiry.set(s.certs.not_after() as f64);
    s.app.metrics.facts_stale.set(s.app.snapshot().stale_seconds);
    s.app.metrics.sample();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.app.metrics.encode(),
    )
        .into_response()
}
