//! Reliability and security (issue: reliability): certificate rotation under load, graceful
//! drain, limits, client certificates and TLS versions.

mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::server::*;
use common::*;
use live_migration_guard::admission::Policy;
use live_migration_guard::facts::{Facts, Snapshot};
use live_migration_guard::server::TlsSource;
use live_migration_guard::server::tls::{ClientAuth, MinTls};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn body() -> String {
    review(
        "NodePool",
        "CREATE",
        Some(&fixture_value("nodepool-kubevirt-rwo-root-volume.yaml")),
        None,
    )
    .to_string()
}

async fn admit(client: &reqwest::Client, url: &str, body: &str) -> Result<u16, String> {
    let resp = client
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let code = resp.status().as_u16();
    let v: Value = resp.json().await.map_err(|e| e.to_string())?;
    if code == 200 && v["response"]["allowed"] != true {
        return Err(format!("unexpected response {v}"));
    }
    Ok(code)
}

/// Writes a Secret volume the way kubelet does: files behind a `..data` symlink that is
/// swapped atomically to a new timestamped directory.
struct SecretVolume {
    dir: PathBuf,
    generation: usize,
}

impl SecretVolume {
    fn new(dir: &Path, cert: &str, key: &str) -> Self {
        let mut v = Self {
            dir: dir.to_owned(),
            generation: 0,
        };
        v.update(cert, key);
        std::os::unix::fs::symlink("..data/tls.crt", dir.join("tls.crt")).unwrap();
        std::os::unix::fs::symlink("..data/tls.key", dir.join("tls.key")).unwrap();
        v
    }

    fn update(&mut self, cert: &str, key: &str) {
        self.generation += 1;
        let ts = format!("..2026_11_25_00_00_{:02}.{}", self.generation, std::process::id());
        let target = self.dir.join(&ts);
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("tls.crt"), cert).unwrap();
        std::fs::write(target.join("tls.key"), key).unwrap();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&ts, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }
    fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }
}

fn names() -> Vec<String> {
    vec!["localhost".into(), SERVICE_HOST.into()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_by_symlink_swap_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let one = live_migration_guard::certs::generate(&names(), 365).unwrap();
    let two = live_migration_guard::certs::generate(&names(), 30).unwrap();
    let mut volume = SecretVolume::new(dir.path(), &one.tls_crt, &one.tls_key);
    let (cert, key) = (volume.cert(), volume.key());
    let s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.tls = TlsSource::Files {
            cert,
            key,
            reload_interval: Duration::from_millis(100),
        };
    })
    .await;
    let both_cas = format!("{}{}", one.ca_crt, two.ca_crt);
    let url = s.url("/validate/nodepools");
    let body = body();
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut tasks = Vec::new();
    for i in 0..8 {
        // half reuse connections, half open a new one (new handshake) per request
        let client = if i % 2 == 0 {
            client_for(&both_cas, s.addr, false, None)
        } else {
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls_config(&both_cas, None))
                .resolve(SERVICE_HOST, s.addr)
                .pool_max_idle_per_host(0)
                .http1_only()
                .build()
                .unwrap()
        };
        let (url, body, failures, done) = (url.clone(), body.clone(), failures.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match admit(&client, &url, &body).await {
                    Ok(200) => done.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("failed during rotation: {other:?}");
                        failures.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    volume.update(&two.tls_crt, &two.tls_key);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during rotation"
    );
    assert!(
        done.load(Ordering::Relaxed) > 50,
        "load ran: {}",
        done.load(Ordering::Relaxed)
    );

    // new handshakes present the new certificate: a client trusting only the new CA succeeds,
    // one trusting only the old CA fails
    assert_eq!(
        admit(&client_for(&two.ca_crt, s.addr, false, None), &url, &body).await,
        Ok(200)
    );
    assert!(
        admit(&client_for(&one.ca_crt, s.addr, false, None), &url, &body)
            .await
            .is_err()
    );
    let (_, m) = s.ops_get("/metrics").await;
    assert!(
        m.contains("live_migration_guard_certificate_reloads_total{result=\"reloaded\"} 1"),
        "{m}"
    );
    let expiry: f64 = metric_value(&m, "live_migration_guard_certificate_expiry_timestamp_seconds");
    let in_30_days = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 30 * 86400) as f64;
    assert!(
        (expiry - in_30_days).abs() < 86400.0,
        "expiry metric follows the new certificate: {expiry}"
    );

    // a broken update keeps the old certificate, counts a failure, stays ready
    volume.update(
        "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
        &two.tls_key,
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        admit(&client_for(&two.ca_crt, s.addr, false, None), &url, &body).await,
        Ok(200)
    );
    let (_, m) = s.ops_get("/metrics").await;
    assert!(
        m.contains("live_migration_guard_certificate_reloads_total{result=\"failed\"}"),
        "{m}"
    );
    assert_eq!(s.ops_get("/readyz").await.0, 200);
    // a key that does not match the certificate is refused too
    volume.update(&one.tls_crt, &two.tls_key);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        admit(&client_for(&two.ca_crt, s.addr, false, None), &url, &body).await,
        Ok(200)
    );
    s.stop().await;
}

fn metric_value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_without_failures() {
    let mut s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.shutdown_delay = Duration::from_millis(800);
        c.shutdown_timeout = Duration::from_secs(5);
    })
    .await;
    let url = s.url("/validate/nodepools");
    let body = body();
    let results = Arc::new(std::sync::Mutex::new(Vec::<(Instant, Result<u16, String>)>::new()));
    let stop_load = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let client = client_for(&s.ca_pem, s.addr, i % 4 == 3, None);
        let (url, body, results, stop_load) = (url.clone(), body.clone(), results.clone(), stop_load.clone());
        tasks.push(tokio::spawn(async move {
            while !stop_load.load(Ordering::Relaxed) {
                let started = Instant::now();
                let r = admit(&client, &url, &body).await;
                let failed = r.is_err();
                results.lock().unwrap().push((started, r));
                if failed {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    s.signal();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        s.ops_get("/readyz").await,
        (503, "not ready: shutting down\n".into()),
        "readiness turns false at once"
    );
    let task = s.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("server exits")
        .expect("cleanly");
    stop_load.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let closed = s.health.stopped_accepting_at().expect("listener closed");
    assert!(
        closed.duration_since(signalled) >= Duration::from_millis(800),
        "kept serving for the shutdown delay"
    );
    let results = results.lock().unwrap();
    // A request "started" when its connection reached the server: a refused connect hit the
    // closed port, so it started after the listener closed, whatever the client's clock said
    // when its task was scheduled. A connect reset by the kernel is the same race one step
    // earlier: its SYN completed in the kernel's queue after the server's last accept, just
    // before the listening socket closed; no byte of the request was sent (hyper reports it
    // as a `Connect` error), and no server can accept on a socket it has closed.
    let refused = |r: &Result<u16, String>| {
        r.as_ref().is_err_and(|e| {
            e.contains("ConnectionRefused") || (e.contains("Error(Connect,") && e.contains("ConnectionReset"))
        })
    };
    let before: Vec<_> = results
        .iter()
        .filter(|(t, r)| *t < closed && !refused(r))
        .collect();
    let failed: Vec<_> = before.iter().filter(|(_, r)| r.is_err()).collect();
    let during_delay = before.iter().filter(|(t, r)| *t > signalled && r.is_ok()).count();
    assert!(
        failed.is_empty(),
        "{} of {} requests started before the listener closed failed: {:?}",
        failed.len(),
        before.len(),
        failed.first()
    );
    assert!(
        during_delay > 20,
        "requests were served during the delay: {during_delay}"
    );
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.limits.header_read_timeout = Duration::from_millis(300);
    })
    .await;
    let mut conn = raw_tls(&s, b"http/1.1").await;
    conn.write_all(b"POST /validate/nodepools HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), conn.read_to_end(&mut buf))
        .await
        .expect("server closes the connection");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "closed after the header timeout: {:?}",
        started.elapsed()
    );
    s.stop().await;
}

#[tokio::test]
async fn stalled_bodies_hold_no_slot_and_time_out() {
    let s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.limits.body_timeout = Duration::from_millis(700);
        c.limits.max_in_flight = 1;
    })
    .await;
    // requests that announce a body and never send it…
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut c = raw_tls(&s, b"http/1.1").await;
        c.write_all(b"POST /validate/nodepools HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"apiVersion\"").await.unwrap();
        stalled.push(c);
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    // …take no evaluation slot: a real request is served at once, though only one may be
    // in flight
    assert_eq!(
        admit(&s.client(false), &s.url("/validate/nodepools"), &body()).await,
        Ok(200)
    );
    // each stalled one gets 408 with a Status body after the body deadline, and the
    // connection is closed (the server will not read the rest)
    for mut c in stalled {
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut buf))
            .await
            .expect("answered and closed")
            .unwrap();
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("connection: close"), "{text}");
        assert!(text.contains("\"kind\":\"Status\""), "{text}");
    }
    let (_, m) = s.ops_get("/metrics").await;
    assert!(
        m.contains("live_migration_guard_rejected_total{result=\"body-timeout\"} 20"),
        "{m}"
    );
    s.stop().await;
}

#[tokio::test]
async fn excess_requests_are_shed_at_once() {
    // no in-flight slot at all: every request is over the bound
    let s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.limits.max_in_flight = 0;
    })
    .await;
    let started = Instant::now();
    let code = admit(&s.client(false), &s.url("/validate/nodepools"), &body()).await;
    assert_eq!(code, Ok(503));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "shed immediately: {:?}",
        started.elapsed()
    );
    let (_, m) = s.ops_get("/metrics").await;
    assert!(
        m.contains("live_migration_guard_rejected_total{result=\"overload\"} 1"),
        "{m}"
    );
    s.stop().await;
}

#[tokio::test]
async fn connections_are_bounded() {
    let s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.limits.max_connections = 2
    })
    .await;
    let a = raw_tls(&s, b"http/1.1").await;
    let b = raw_tls(&s, b"http/1.1").await;
    // the third connection is closed at once (its handshake fails)
    let mut cfg = tls_config(&s.ca_pem, None);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let third = tokio::time::timeout(
        Duration::from_secs(3),
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from(SERVICE_HOST).unwrap(), tcp),
    )
    .await
    .expect("no hang");
    assert!(third.is_err(), "third connection refused");
    drop((a, b));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        admit(&s.client(false), &s.url("/validate/nodepools"), &body()).await,
        Ok(200)
    );
    let (_, m) = s.ops_get("/metrics").await;
    assert!(
        m.contains("live_migration_guard_rejected_total{result=\"connections\"} 1"),
        "{m}"
    );
    s.stop().await;
}

#[tokio::test]
async fn http2_advertises_the_stream_limit() {
    let s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.limits.h2_max_streams = 8
    })
    .await;
    let tls = raw_tls(&s, b"h2").await;
    let (mut send, conn) = h2::client::handshake(tls).await.unwrap();
    let conn = tokio::spawn(async move {
        let mut conn = conn;
        // drive the connection until the server's SETTINGS arrive
        std::future::poll_fn(|cx| {
            let _ = std::pin::Pin::new(&mut conn).poll(cx);
            if conn.max_concurrent_send_streams() == 8 {
                std::task::Poll::Ready(conn.max_concurrent_send_streams())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    });
    // a request makes the settings exchange happen
    let req = axum::http::Request::builder()
        .method("GET")
        .uri(format!("https://{SERVICE_HOST}/healthz"))
        .body(())
        .unwrap();
    let _ = send.send_request(req, true);
    let limit = tokio::time::timeout(Duration::from_secs(3), conn)
        .await
        .expect("settings received")
        .unwrap();
    assert_eq!(limit, 8);
    s.stop().await;
}

/// A client CA and a certificate it signs for `cn`.
fn client_identity(ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, cn: &str) -> (String, String) {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn client_ca() -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "apiserver client CA");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap()
}

#[tokio::test]
async fn client_certificates_and_allowed_names() {
    let dir = tempfile::tempdir().unwrap();
    let ca = client_ca();
    let other_ca = client_ca();
    let ca_path = dir.path().join("client-ca.crt");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.client_auth = ClientAuth {
            ca: Some(ca_path.clone()),
            names: vec!["kube-apiserver".into()],
        };
    })
    .await;
    let url = s.url("/validate/nodepools");
    let apiserver = client_identity(&ca, "kube-apiserver");
    let intruder = client_identity(&ca, "someone-else");
    let forged = client_identity(&other_ca, "kube-apiserver");
    let try_with = |id: Option<&(String, String)>| {
        let client = client_for(
            &s.ca_pem,
            s.addr,
            false,
            id.map(|(c, k)| (c.as_str(), k.as_str())),
        );
        let (url, body) = (url.clone(), body());
        async move { admit(&client, &url, &body).await }
    };
    assert_eq!(try_with(Some(&apiserver)).await, Ok(200));
    assert!(try_with(None).await.is_err(), "no client certificate");
    assert!(try_with(Some(&intruder)).await.is_err(), "name not allowed");
    assert!(try_with(Some(&forged)).await.is_err(), "signed by another CA");
    s.stop().await;
}

#[tokio::test]
async fn tls_1_3_only() {
    let s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.min_tls = MinTls::Tls13
    })
    .await;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(s.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls12 =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let r = tokio_rustls::TlsConnector::from(Arc::new(tls12))
        .connect(ServerName::try_from(SERVICE_HOST).unwrap(), tcp)
        .await;
    assert!(r.is_err(), "TLS 1.2 refused");
    assert_eq!(
        admit(&s.client(false), &s.url("/validate/nodepools"), &body()).await,
        Ok(200),
        "TLS 1.3 works"
    );
    s.stop().await;
}

#[tokio::test]
async fn side_endpoint_on_its_own_listener_behind_a_token_and_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = client_ca();
    let ca_path = dir.path().join("client-ca.crt");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.side = Some(live_migration_guard::server::SideListener {
            listen: "127.0.0.1:0".parse().unwrap(),
            auth: live_migration_guard::server::auth::SideAuth::Token(std::sync::Arc::new(
                live_migration_guard::server::auth::StaticToken::fixed("s3cret", Default::default()),
            )),
            client_auth: ClientAuth {
                ca: Some(ca_path.clone()),
                names: vec!["ci-pipeline".into()],
            },
        });
    })
    .await;
    let side = s.side.expect("side listener");
    let yaml = fixture_text("nodepool-kubevirt-rwo-root-volume.yaml");
    let pipeline = client_identity(&ca, "ci-pipeline");
    let post = |client: reqwest::Client, addr: std::net::SocketAddr, path: &str, token: Option<&str>| {
        let mut req = client
            .post(format!("https://{SERVICE_HOST}:{}{path}", addr.port()))
            .header("Content-Type", "application/yaml")
            .body(yaml.clone());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            req.send()
                .await
                .map(|r| r.status().as_u16())
                .map_err(|e| e.to_string())
        }
    };
    let with_cert = || client_for(&s.ca_pem, side, false, Some((&pipeline.0, &pipeline.1)));
    assert_eq!(
        post(with_cert(), side, "/v1/evaluate", Some("s3cret")).await,
        Ok(200)
    );
    assert_eq!(
        post(with_cert(), side, "/v1/evaluate", None).await,
        Ok(401),
        "no token"
    );
    assert_eq!(
        post(with_cert(), side, "/v1/evaluate", Some("guess")).await,
        Ok(401),
        "wrong token"
    );
    assert!(
        post(
            client_for(&s.ca_pem, side, false, None),
            side,
            "/v1/evaluate",
            Some("s3cret")
        )
        .await
        .is_err(),
        "no client certificate"
    );
    assert_eq!(
        post(with_cert(), side, "/validate/nodepools", Some("s3cret")).await,
        Ok(404),
        "no admission on the side listener"
    );
    // the admission listener no longer serves the side endpoints, and needs no client certificate
    assert_eq!(post(s.client(false), s.addr, "/v1/evaluate", None).await, Ok(404));
    assert_eq!(
        admit(&s.client(false), &s.url("/validate/nodepools"), &body()).await,
        Ok(200)
    );
    s.stop().await;
}

#[tokio::test]
async fn certs_generate_writes_a_usable_service_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_live-migration-guard"))
        .args([
            "certs",
            "generate",
            "--service",
            "lmg",
            "--namespace",
            "guard",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("lmg, lmg.guard, lmg.guard.svc, lmg.guard.svc.cluster.local")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("tls.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the key is private");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.tls = TlsSource::Files {
            cert,
            key,
            reload_interval: Duration::from_secs(10),
        };
    })
    .await;
    let ca = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
    for name in ["lmg.guard.svc", "lmg.guard.svc.cluster.local"] {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(&ca, None))
            .resolve(name, s.addr)
            .build()
            .unwrap();
        let url = format!("https://{name}:{}/validate/nodepools", s.addr.port());
        assert_eq!(admit(&client, &url, &body()).await, Ok(200), "{name}");
    }
    s.stop().await;
}
