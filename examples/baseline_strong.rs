//! The load benchmark's strong baseline: the plainest fast admission server a kube-rs user
//! writes — axum-server with rustls (ring), `TCP_NODELAY` on every accepted socket, the
//! body read as `Bytes`, `serde_json::from_slice::<AdmissionReview<DynamicObject>>`,
//! `AdmissionResponse::from(&req)` (allowed), `serde_json::to_vec`. No limits, deadlines,
//! metrics or logging: what every extra µs of ours is measured against (issue 12).
//!
//! `cargo run --release --example baseline_strong -- 127.0.0.1:9444 /tmp/baseline-ca.crt`

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};

async fn validate(body: Bytes) -> Response {
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let request: Result<AdmissionRequest<DynamicObject>, _> = review.try_into();
    let response = match request {
        Ok(request) => AdmissionResponse::from(&request),
        Err(e) => AdmissionResponse::invalid(e.to_string()),
    };
    match serde_json::to_vec(&response.into_review()) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The floor: the same server reading the same body but neither parsing it nor building a
/// response — a constant allowed review (not a valid answer: its uid is fixed). What any
/// admission server on this stack (TLS, hyper, axum, the kernel's loopback TCP) spends per
/// request before it does anything with the request.
async fn floor(body: Bytes) -> Response {
    const ALLOWED: &[u8] = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"00000000-0000-0000-0000-000000000000","allowed":true}}"#;
    let status = if body.is_empty() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (status, [(header::CONTENT_TYPE, "application/json")], ALLOWED).into_response()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen: std::net::SocketAddr = args.next().unwrap_or_else(|| "127.0.0.1:9444".into()).parse()?;
    let ca_out = args
        .next()
        .unwrap_or_else(|| "/tmp/baseline-strong-ca.crt".into());
    let generated = live_migration_guard::certs::generate(&["localhost".into(), "127.0.0.1".into()], 30)?;
    let config =
        RustlsConfig::from_pem(generated.tls_crt.into_bytes(), generated.tls_key.into_bytes()).await?;
    let app = Router::new()
        .route("/validate/nodepools", post(validate))
        .route("/floor", post(floor))
        .layer(axum::extract::DefaultBodyLimit::max(7 * 1024 * 1024));
    let acceptor = RustlsAcceptor::new(config).acceptor(NoDelayAcceptor::new());
    let server = axum_server::bind(listen).acceptor(acceptor);
    // written once the socket is about to be bound; the benchmark waits for a 200 anyway
    std::fs::write(&ca_out, &generated.ca_crt)?;
    eprintln!("strong baseline listening on {listen}, CA bundle {ca_out}");
    server.serve(app.into_make_service()).await?;
    Ok(())
}
