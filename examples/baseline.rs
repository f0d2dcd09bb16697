//! The load benchmark's baseline: the admission server a kube-rs user writes by hand —
//! axum's `Json` extractor deserializing `AdmissionReview<DynamicObject>`, answering
//! `allowed` (kube's `examples/admission_controller.rs` without the patch). It runs behind
//! the same rustls configuration and accept loop as live-migration-guard, so the benchmark
//! compares the request handling, not the TLS plumbing.
//!
//! `cargo run --release --example baseline -- 127.0.0.1:9443 /tmp/baseline-ca.crt`

use std::sync::Arc;

use axum::routing::post;
use axum::{Json, Router};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use live_migration_guard::server::metrics::Metrics;
use live_migration_guard::server::tls::{self, CertStore, ClientAuth, MinTls};
use live_migration_guard::server::{Limits, listener};
use tokio_util::sync::CancellationToken;

async fn validate(
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => return Json(AdmissionResponse::invalid(e.to_string()).into_review()),
    };
    Json(AdmissionResponse::from(&request).into_review())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:9443".into());
    let ca_out = args.next().unwrap_or_else(|| "/tmp/baseline-ca.crt".into());
    let generated = live_migration_guard::certs::generate(&["localhost".into(), "127.0.0.1".into()], 30)?;
    std::fs::write(&ca_out, &generated.ca_crt)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let store = Arc::new(CertStore::from_pem(
        generated.tls_crt.as_bytes(),
        generated.tls_key.as_bytes(),
        provider.clone(),
    )?);
    let config = tls::server_config(store, MinTls::Tls12, &ClientAuth::default(), provider)?;
    let app = Router::new()
        .route("/validate/nodepools", post(validate))
        .layer(axum::extract::DefaultBodyLimit::max(7 * 1024 * 1024));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("baseline listening on {listen}, CA bundle {ca_out}");
    let stop = CancellationToken::new();
    let stopper = stop.clone();
    tokio::spawn(async move {
        live_migration_guard::server::shutdown_signal().await;
        stopper.cancel();
    });
    let tls = listener::Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        allowed_clients: Arc::from(Vec::<String>::new()),
    };
    let drain = listener::serve(
        listener,
        Some(tls),
        app,
        &Limits::default(),
        Arc::new(Metrics::default()),
        CancellationToken::new(),
        stop,
    )
    .await;
    drain.shutdown().await;
    Ok(())
}
