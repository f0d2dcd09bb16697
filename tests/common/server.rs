//! A webhook server on loopback with real TLS, and a client that behaves like
//! kube-apiserver's webhook client: it verifies the CA bundle and the service name.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use live_migration_guard::admission::Policy;
use live_migration_guard::facts::{Facts, Snapshot};
use live_migration_guard::server::metrics::Metrics;
use live_migration_guard::server::tls::{ClientAuth, MinTls};
use live_migration_guard::server::{Config, Limits, Server, TlsSource};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

/// The Service name the client connects to (and verifies in the certificate).
pub const SERVICE_HOST: &str = "live-migration-guard.webhooks.svc";

pub struct TestServer {
    pub addr: SocketAddr,
    /// The separate /v1/evaluate listener, when configured.
    pub side: Option<SocketAddr>,
    pub ops: SocketAddr,
    pub ca_pem: String,
    /// Feeds the server's snapshot (fixed-facts servers only).
    pub snapshot: Option<watch::Sender<Arc<Snapshot>>>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<live_migration_guard::server::state::Health>,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

pub fn config(policy: Policy, dir: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        side: None,
        ops_listen: "127.0.0.1:0".parse().unwrap(),
        metrics_auth: None,
        tls: TlsSource::Generated {
            names: vec!["localhost".into(), "127.0.0.1".into(), SERVICE_HOST.into()],
            ca_out: Some(dir.join("ca.crt")),
        },
        min_tls: MinTls::Tls12,
        client_auth: ClientAuth::default(),
        policy,
        limits: Limits::default(),
        shutdown_delay: Duration::from_millis(0),
        shutdown_timeout: Duration::from_secs(5),
    }
}

impl TestServer {
    pub async fn start(policy: Policy, facts: Facts) -> Self {
        Self::start_with(policy, Snapshot::fixed(facts), |_| {}).await
    }

    pub async fn start_with(policy: Policy, snapshot: Snapshot, tweak: impl FnOnce(&mut Config)) -> Self {
        let (tx, rx) = watch::channel(Arc::new(snapshot));
        let (_audit_tx, audit_rx) = watch::channel(None);
        let mut s = Self::start_live(policy, rx, audit_rx, tweak).await;
        s.snapshot = Some(tx);
        s
    }

    /// A server reading a live snapshot (and audit) channel.
    pub async fn start_live(
        policy: Policy,
        rx: watch::Receiver<Arc<Snapshot>>,
        audit_rx: watch::Receiver<Option<Arc<live_migration_guard::evaluate::Reports>>>,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        // reqwest's plain-HTTP client (ops port) wants a process-wide rustls provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(policy, dir.path());
        tweak(&mut cfg);
        let metrics = Arc::new(Metrics::default());
        let server = Server::bind(cfg.clone(), rx, audit_rx, metrics.clone())
            .await
            .expect("server binds");
        let addr = server.local_addr().unwrap();
        let ops = server.ops_addr().unwrap();
        let health = server.health();
        let side = server.side_addr().map(Result::unwrap);
        let ca_pem = match &cfg.tls {
            TlsSource::Generated { ca_out, .. } => std::fs::read_to_string(ca_out.as_ref().unwrap()).unwrap(),
            // with certificate files the test owns the CA and builds its clients itself
            TlsSource::Files { .. } => String::new(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("server runs");
        });
        Self {
            addr,
            side,
            ops,
            ca_pem,
            snapshot: None,
            metrics,
            health,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// An HTTPS client that trusts only our CA and connects to `SERVICE_HOST`.
    pub fn client(&self, http2: bool) -> reqwest::Client {
        client_for(&self.ca_pem, self.addr, http2, None)
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{SERVICE_HOST}:{}{path}", self.addr.port())
    }

    pub async fn post_review(&self, path: &str, review: &Value) -> Value {
        let resp = self
            .client(false)
            .post(self.url(path))
            .header("Content-Type", "application/json")
            .body(review.to_string())
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "{}", path);
        resp.json().await.expect("json response")
    }

    pub async fn ops_get(&self, path: &str) -> (u16, String) {
        let resp = reqwest::Client::new()
            .get(format!("http://{}{path}", self.ops))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// Signals shutdown (like SIGTERM) without waiting.
    pub fn signal(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    pub async fn stop(mut self) {
        self.signal();
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

pub fn client_for(
    ca_pem: &str,
    addr: SocketAddr,
    http2: bool,
    identity: Option<(&str, &str)>,
) -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut tls = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .map(Result::unwrap)
                .collect();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    tls.alpn_protocols = if http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve(SERVICE_HOST, addr)
        .no_proxy();
    if http2 {
        b = b.http2_prior_knowledge();
    } else {
        b = b.http1_only();
    }
    b.build().unwrap()
}

/// An AdmissionReview shaped exactly as kube-apiserver sends it.
pub fn review(kind: &str, operation: &str, object: Option<&Value>, old: Option<&Value>) -> Value {
    let resource = if kind == "NodePool" {
        "nodepools"
    } else {
        "hostedclusters"
    };
    let gvk = json!({"group": "hypershift.openshift.io", "version": "v1beta1", "kind": kind});
    let gvr = json!({"group": "hypershift.openshift.io", "version": "v1beta1", "resource": resource});
    let meta = object.or(old).map(|o| o["metadata"].clone()).unwrap_or(json!({}));
    let options_kind = match operation {
        "CREATE" => "CreateOptions",
        "UPDATE" => "UpdateOptions",
        _ => "DeleteOptions",
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0df28fbd-5f5f-11e8-bc74-36e6bb280816",
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "operation": operation,
            "userInfo": {"username": "system:admin", "groups": ["system:masters", "system:authenticated"]},
            "object": object.cloned().unwrap_or(Value::Null),
            "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": options_kind},
        }
    })
}

pub fn namespace_modes(pairs: &[(&str, &str)]) -> Option<Arc<HashMap<String, String>>> {
    Some(Arc::new(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    ))
}

/// A rustls client config trusting `ca_pem`, with an optional client identity.
pub fn tls_config(ca_pem: &str, identity: Option<(&str, &str)>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut c = match identity {
        None => b.with_no_client_auth(),
        Some((cert, key)) => b
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    c
}

/// A raw TLS connection to the server.
pub async fn raw_tls(s: &TestServer, alpn: &[u8]) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    raw_tls_to(&s.ca_pem, s.addr, alpn).await
}

/// [`raw_tls`] to another listener of the server (`addr`), trusting `ca_pem`.
pub async fn raw_tls_to(
    ca_pem: &str,
    addr: std::net::SocketAddr,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut cfg = tls_config(ca_pem, None);
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(SERVICE_HOST).unwrap(), tcp)
        .await
        .unwrap()
}
