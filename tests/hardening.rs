//! Hardening (issue: "one request must never crash, stall or bloat the server") and the
//! keep-alive contract after errors. Each test is a regression test for a reproduced defect;
//! the memory-heavy ones run the real binary under an address-space limit, so a regression
//! fails the test instead of taking the machine down.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::*;
use common::*;
use live_migration_guard::admission::{Mode, Policy};
use live_migration_guard::facts::{Facts, Snapshot};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NP: &str = "/validate/nodepools";
const EVAL: &str = "/v1/evaluate";

fn good_review() -> String {
    review(
        "NodePool",
        "CREATE",
        Some(&fixture_value("nodepool-kubevirt-rwo-root-volume.yaml")),
        None,
    )
    .to_string()
}

fn nodepool_with_patch(patch: &Value) -> Value {
    with(
        fixture_value("nodepool-kubevirt-rwo-root-volume.yaml"),
        &[(
            "/metadata/annotations",
            json!({"hypershift.openshift.io/kubevirt-vm-jsonpatch": patch.to_string()}),
        )],
    )
}

/// Reads one HTTP/1.1 response (head and Content-Length body) from a raw connection;
/// `None` on a clean EOF before any byte.
async fn read_response<S: tokio::io::AsyncRead + Unpin>(conn: &mut S) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut byte)).await {
            Ok(Ok(0)) if buf.is_empty() => return None,
            Ok(Err(e)) if buf.is_empty() => {
                eprintln!("read error before a response: {e}");
                return None;
            }
            Ok(Ok(0)) | Ok(Err(_)) => panic!(
                "connection ended inside a response head: {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(Ok(_)) => buf.push(byte[0]),
            Err(_) => panic!("no response within 5 s"),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).await.unwrap();
    Some((head, String::from_utf8_lossy(&body).into_owned()))
}

fn request(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {SERVICE_HOST}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------------------
// Keep-alive after errors (issue: serving path, item 4)

/// The first request on a connection is over the body limit, the second is good: the 413
/// says `Connection: close`, and the second is either served on the same connection or
/// refused cleanly (EOF before any byte), never cut off — then a fresh connection serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_closes_its_connection_cleanly() {
    let s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.limits.body_bytes = 64 * 1024;
    })
    .await;
    let good = good_review();
    let mut big = good.clone();
    big.push_str(&" ".repeat(200 * 1024));
    for round in 0..20 {
        let mut conn = raw_tls(&s, b"http/1.1").await;
        conn.write_all(&request(NP, &big)).await.unwrap();
        let (head, body) = read_response(&mut conn).await.expect("413 answered");
        assert!(head.starts_with("http/1.1 413"), "round {round}: {head}");
        assert!(head.contains("connection: close"), "round {round}: {head}");
        assert!(
            body.contains("\"kind\":\"Status\"") && body.contains("65536"),
            "{body}"
        );
        // the server said close: whatever happens to a second request, it is not a
        // half-written answer
        let _ = conn.write_all(&request(NP, &good)).await;
        if let Some((head, _)) = read_response(&mut conn).await {
            assert!(head.starts_with("http/1.1 200"), "round {round}: {head}");
        }
    }
    // a pooling client (reqwest, like Go's) never reuses the closed connection
    let client = s.client(false);
    for _ in 0..20 {
        let r = client
            .post(s.url(NP))
            .header("Content-Type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        let r = client
            .post(s.url(NP))
            .header("Content-Type", "application/json")
            .body(good.clone())
            .send()
            .await
            .expect("the request after a 413 is served");
        assert_eq!(r.status(), 200);
    }
    s.stop().await;
}

/// While the server drains (SIGTERM, before the listener closes), the answer to a request in
/// flight on a kept-alive HTTP/1.1 connection says `Connection: close`, and then the server
/// closes the connection: kube-apiserver moves to another replica instead of racing its next
/// request against the listener's close. Before the drain the same connection is kept open.
/// (The second request is in flight when the drain starts — headers sent, the body's last
/// bytes not yet — because a connection left idle while draining is closed without an
/// answer after 500 ms, which a test waiting for the drain could hit on a loaded machine.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_alive_connections_are_told_to_close_while_draining() {
    let mut s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.shutdown_delay = Duration::from_secs(3);
    })
    .await;
    let good = good_review();
    let mut conn = raw_tls(&s, b"http/1.1").await;
    conn.write_all(&request(NP, &good)).await.unwrap();
    let (head, _) = read_response(&mut conn).await.expect("answered");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        !head.contains("connection: close"),
        "kept open before the drain: {head}"
    );
    let second = request(NP, &good);
    let (started, rest) = second.split_at(second.len() - 16);
    conn.write_all(started).await.unwrap();
    conn.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.signal();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while !s.health.draining() {
        assert!(std::time::Instant::now() < deadline, "the server starts draining");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    conn.write_all(rest).await.unwrap();
    let (head, body) = read_response(&mut conn).await.expect("served while draining");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(body.contains("\"allowed\":true"), "{body}");
    let mut tail = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), conn.read_to_end(&mut tail)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the server closes the connection after that answer: {read:?}"
    );
    // a new connection is still served until the delay ends
    assert_eq!(
        s.client(false)
            .post(s.url(NP))
            .header("Content-Type", "application/json")
            .body(good)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// A chunked body that grows past the limit, and `Expect: 100-continue` with an oversized
/// Content-Length (answered at once, before the client sends the body).
#[tokio::test]
async fn oversized_chunked_and_expect_continue_bodies_get_413_and_close() {
    let s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.limits.body_bytes = 1024;
    })
    .await;
    let mut conn = raw_tls(&s, b"http/1.1").await;
    let chunk = "x".repeat(4096);
    let req = format!(
        "POST {NP} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let (head, _) = read_response(&mut conn).await.expect("answered");
    assert!(
        head.starts_with("http/1.1 413") && head.contains("connection: close"),
        "{head}"
    );

    let mut conn = raw_tls(&s, b"http/1.1").await;
    let started = Instant::now();
    conn.write_all(
        format!("POST {NP} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 999999\r\nExpect: 100-continue\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let (head, _) = read_response(&mut conn).await.expect("answered");
    assert!(head.starts_with("http/1.1 413"), "no 100 Continue first: {head}");
    assert!(started.elapsed() < Duration::from_secs(1));
    s.stop().await;
}

/// The side listener checks the caller before it reads a body: a client without the token
/// that announces 1 MiB and sends nothing is refused at once (not after the 10 s body
/// timeout, as when the body was read first), with `Connection: close`; one that sends its
/// whole body is refused once the body is read, and keeps its connection for the next
/// request; one waiting for `100 Continue` is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_side_listener_refuses_a_caller_before_reading_its_body() {
    let s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.limits.body_timeout = Duration::from_secs(10);
        c.side = Some(live_migration_guard::server::SideListener {
            listen: "127.0.0.1:0".parse().unwrap(),
            auth: live_migration_guard::server::auth::SideAuth::Token(Arc::new(
                live_migration_guard::server::auth::StaticToken::fixed("s3cret", Default::default()),
            )),
            client_auth: Default::default(),
        });
    })
    .await;
    let side = s.side.expect("side listener");
    let head = |len: usize, extra: &str| {
        format!(
            "POST {EVAL} HTTP/1.1\r\nHost: a\r\nContent-Type: application/yaml\r\nContent-Length: {len}\r\n{extra}\r\n"
        )
    };
    const MIB: usize = 1024 * 1024;

    // announced, never sent
    let mut conn = raw_tls_to(&s.ca_pem, side, b"http/1.1").await;
    let started = Instant::now();
    conn.write_all(head(MIB, "").as_bytes()).await.unwrap();
    let (answer, body) = read_response(&mut conn).await.expect("answered");
    assert!(answer.starts_with("http/1.1 401"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // sent whole with a wrong token: refused once read, and the connection serves the next
    let mut conn = raw_tls_to(&s.ca_pem, side, b"http/1.1").await;
    let padding = format!("# {}\n", "x".repeat(MIB - 3));
    conn.write_all(head(padding.len(), "Authorization: Bearer guess\r\n").as_bytes())
        .await
        .unwrap();
    conn.write_all(padding.as_bytes()).await.unwrap();
    let (answer, _) = read_response(&mut conn).await.expect("answered");
    assert!(answer.starts_with("http/1.1 401"), "{answer}");
    assert!(!answer.contains("connection: close"), "{answer}");
    let np = fixture_text("nodepool-kubevirt-rwo-root-volume.yaml");
    conn.write_all(head(np.len(), "Authorization: Bearer s3cret\r\n").as_bytes())
        .await
        .unwrap();
    conn.write_all(np.as_bytes()).await.unwrap();
    let (answer, body) = read_response(&mut conn)
        .await
        .expect("the next request is served");
    assert!(answer.starts_with("http/1.1 200"), "{answer}\n{body}");
    assert!(body.contains("rootVolume"), "{body}");

    // waiting for 100 Continue: nothing was sent, answered at once
    let mut conn = raw_tls_to(&s.ca_pem, side, b"http/1.1").await;
    let started = Instant::now();
    conn.write_all(head(MIB, "Expect: 100-continue\r\n").as_bytes())
        .await
        .unwrap();
    let (answer, _) = read_response(&mut conn).await.expect("answered");
    assert!(
        answer.starts_with("http/1.1 401") && answer.contains("connection: close"),
        "no 100 Continue first: {answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    s.stop().await;
}

/// RFC 9112 framing: exactly one Host on HTTP/1.1; no transfer coding but chunked.
#[tokio::test]
async fn framing_errors_get_status_bodies() {
    let s = TestServer::start(Policy::default(), Facts::none()).await;
    let body = good_review();
    let cases: [(&str, &str, &str); 3] = [
        ("", "400", "no Host header"),
        ("Host: a\r\nHost: b\r\n", "400", "more than one Host header"),
        (
            "Host: a\r\nTransfer-Encoding: gzip, chunked\r\n",
            "501",
            "Transfer-Encoding",
        ),
    ];
    for (headers, code, expect) in cases {
        let mut conn = raw_tls(&s, b"http/1.1").await;
        let framing = if headers.contains("chunked") {
            format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len())
        } else {
            body.clone()
        };
        let length = if headers.contains("chunked") {
            String::new()
        } else {
            format!("Content-Length: {}\r\n", body.len())
        };
        let req =
            format!("POST {NP} HTTP/1.1\r\n{headers}Content-Type: application/json\r\n{length}\r\n{framing}");
        conn.write_all(req.as_bytes()).await.unwrap();
        let (head, text) = read_response(&mut conn).await.expect("answered");
        assert!(head.starts_with(&format!("http/1.1 {code}")), "{expect}: {head}");
        assert!(head.contains("connection: close"), "{head}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["kind"], "Status");
        assert!(v["message"].as_str().unwrap().contains(expect), "{text}");
    }
    s.stop().await;
}

// ---------------------------------------------------------------------------------------
// Patches that used to crash or exhaust the process

/// A 14,000-segment `add` path overflowed the stack; now it is a finding naming the limit,
/// through the admission endpoint and through a HostedCluster in the facts.
#[tokio::test]
async fn a_deep_patch_path_is_a_finding_not_a_crash() {
    let path = "/a".repeat(14_000);
    let patch = json!([{"op": "add", "path": path, "value": 1}]);
    let mut hc = fixture_value("hostedcluster-kubevirt-minimal.yaml");
    hc["metadata"]["annotations"] =
        json!({"hypershift.openshift.io/kubevirt-vm-jsonpatch": patch.to_string()});
    let np = fixture_value("nodepool-kubevirt-rwo-root-volume.yaml");
    hc["metadata"]["namespace"] = np["metadata"]["namespace"].clone();
    hc["metadata"]["name"] = np["spec"]["clusterName"].clone();
    let facts = facts(&[&serde_json::to_string(&hc).unwrap()]);
    let s = TestServer::start(Policy::default(), facts).await;
    for object in [nodepool_with_patch(&patch), np] {
        let v = s
            .post_review(NP, &review("NodePool", "CREATE", Some(&object), None))
            .await;
        let warnings = v["response"]["warnings"].to_string();
        assert!(warnings.contains("InvalidKubevirtVMJSONPatch"), "{warnings}");
    }
    // the full message names the limit
    let r = s
        .client(false)
        .post(s.url(EVAL))
        .header("Content-Type", "application/json")
        .body(nodepool_with_patch(&patch).to_string())
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("path of 14000 segments"), "{text}");
    assert_eq!(s.ops_get("/healthz").await.0, 200);
    s.stop().await;
}

/// The real binary, under an address-space limit, with its peak RSS readable.
struct Served {
    child: Child,
    addr: SocketAddr,
    ops: SocketAddr,
    ca: String,
    /// Every stderr line after start-up.
    log: Arc<std::sync::Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Served {
    /// `serve` on loopback ports chosen by the kernel, limited to `vm_mib` of address space.
    fn start(vm_mib: u64, extra: &[&str]) -> Self {
        Self::start_logging(vm_mib, extra, "json")
    }

    /// With `--log-format=<format>` (text logs: the start-up line is found by its text).
    fn start_logging(vm_mib: u64, extra: &[&str], format: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        let bin = env!("CARGO_BIN_EXE_live-migration-guard");
        let mut args = vec![
            "serve".to_owned(),
            "--listen=127.0.0.1:0".into(),
            "--ops-listen=127.0.0.1:0".into(),
            format!("--ca-bundle-out={}", ca.display()),
            format!("--log-format={format}"),
            "--shutdown-delay=0s".into(),
            format!("--dns-name={SERVICE_HOST}"),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let script = format!("ulimit -v {}; exec \"$0\" \"$@\"", vm_mib * 1024);
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(bin)
            .args(&args)
            // glibc reserves 64 MiB of address space per malloc arena; keep that predictable
            .env("MALLOC_ARENA_MAX", "2")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let (addr, ops) = loop {
            assert!(Instant::now() < deadline, "server did not start");
            let line = lines.next().expect("server exited before listening").unwrap();
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if let (Some(l), Some(o)) = (v["listen"].as_str(), v["ops"].as_str()) {
                break (l.parse().unwrap(), o.parse().unwrap());
            }
            // text: `… listen=127.0.0.1:1 ops=127.0.0.1:2 …`
            let field = |k: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(&format!("{k}=")))
                    .and_then(|v| v.parse::<SocketAddr>().ok())
            };
            if let (Some(l), Some(o)) = (field("listen"), field("ops")) {
                break (l, o);
            }
        };
        // keep reading stderr so the server never blocks on a full pipe
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let ca = std::fs::read_to_string(&ca).unwrap();
        Self {
            child,
            addr,
            ops,
            ca,
            log,
            _dir: dir,
        }
    }

    fn client(&self) -> reqwest::Client {
        client_for(&self.ca, self.addr, false, None)
    }

    fn url(&self, path: &str) -> String {
        format!("https://{SERVICE_HOST}:{}{path}", self.addr.port())
    }

    /// Peak resident memory so far, in MiB.
    fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb / 1024
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// `GET /healthz` with blocking I/O, to run on a plain thread (not the test's busy
    /// runtime): (status line, time).
    fn healthz_at(ops: SocketAddr) -> impl Fn() -> (String, Duration) {
        move || Self::healthz_once(ops)
    }

    fn healthz_once(ops: SocketAddr) -> (String, Duration) {
        use std::io::{Read, Write};
        let started = Instant::now();
        let mut c = std::net::TcpStream::connect(ops).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        let _ = c.read_to_string(&mut text);
        (text.lines().next().unwrap_or("").to_owned(), started.elapsed())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `copy` of `/spec` into itself doubles the document: 22 such ops reached several GiB and
/// an allocation abort. Now the patch is refused at the size limit, quickly, in bounded
/// memory, with a message that names the limit.
#[tokio::test]
async fn doubling_copy_patches_are_bounded() {
    let mut s = Served::start(1024, &[]);
    let ops: Vec<Value> = (0..22)
        .map(|i| json!({"op": "copy", "from": "/spec", "path": format!("/spec/c{i}")}))
        .collect();
    let body = review(
        "NodePool",
        "CREATE",
        Some(&nodepool_with_patch(&Value::Array(ops.clone()))),
        None,
    );
    let started = Instant::now();
    let r = s
        .client()
        .post(s.url(NP))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["response"]["warnings"]
            .to_string()
            .contains("InvalidKubevirtVMJSONPatch"),
        "{v}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let r = s
        .client()
        .post(s.url(EVAL))
        .header("Content-Type", "application/json")
        .body(nodepool_with_patch(&Value::Array(ops)).to_string())
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(
        text.contains("grows the VirtualMachine past 1572864 bytes"),
        "{text}"
    );
    assert!(s.alive(), "server survived");
    assert!(s.peak_rss_mib() < 100, "peak RSS {} MiB", s.peak_rss_mib());
}

// ---------------------------------------------------------------------------------------
// /v1/evaluate: work, items and memory are bounded

fn tiny_nodepool(i: usize) -> Value {
    json!({"apiVersion": "hypershift.openshift.io/v1beta1", "kind": "NodePool",
           "metadata": {"namespace": "ns", "name": format!("np{i}")},
           "spec": {"clusterName": format!("nomatch{i}"), "replicas": 1,
                    "platform": {"type": "KubeVirt", "kubevirt": {}}}})
}

fn tiny_hostedcluster(i: usize) -> Value {
    json!({"apiVersion": "hypershift.openshift.io/v1beta1", "kind": "HostedCluster",
           "metadata": {"namespace": "ns", "name": format!("hc{i}")},
           "spec": {"platform": {"type": "KubeVirt", "kubevirt": {}}}})
}

/// NodePools and HostedClusters that never pair were matched by scanning (O(N²): 20,000 +
/// 20,000 took ~60 s); pairing is indexed now. Library level, so the size is not capped.
#[test]
fn pairing_is_linear() {
    use live_migration_guard::facts::load::{Loaded, Object, Source};
    let n = 20_000;
    let source = |i| Source {
        origin: "test".into(),
        document: i,
        item: None,
    };
    let mut inputs = Vec::new();
    for i in 0..n {
        inputs.push(Loaded {
            source: source(i),
            object: Object::NodePool(Box::new(serde_json::from_value(tiny_nodepool(i)).unwrap())),
        });
        inputs.push(Loaded {
            source: source(i),
            object: Object::HostedCluster(Box::new(serde_json::from_value(tiny_hostedcluster(i)).unwrap())),
        });
    }
    let started = Instant::now();
    let (reports, _) = live_migration_guard::batch::evaluate_all(&inputs, &Facts::none());
    assert_eq!(reports.reports.len(), 2 * n);
    // linear: a few µs per object even in a debug build; quadratic took minutes
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // and a deadline stops the work between objects
    let past = Instant::now();
    let stopped = live_migration_guard::batch::evaluate_all_until(&inputs, &Facts::none(), Some(past));
    assert_eq!(stopped.map(|_| ()), Err(0));
}

#[tokio::test]
async fn evaluate_caps_objects_body_and_answer() {
    let mut s = Served::start(1024, &[]);
    let client = s.client();
    let post = |body: String| {
        client
            .post(s.url(EVAL))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    // 1,001 objects: over the cap, refused before evaluation
    let items: Vec<Value> = (0..1_001).map(tiny_nodepool).collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let r = post(list).await.unwrap();
    assert_eq!(r.status(), 413);
    let text = r.text().await.unwrap();
    assert!(text.contains("holds 1001 objects; at most 1000"), "{text}");
    // 220k tiny objects (6.8 MB) used to peak at 274 MB: now over the body limit at once
    let tiny = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\"}".repeat(180_000);
    let r = post(tiny).await.unwrap();
    assert_eq!(r.status(), 413);
    // the largest body that is accepted, all tiny objects: refused by the object cap
    let tiny = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\"}\n".repeat(50_000);
    let r = post(tiny).await.unwrap();
    assert_eq!(r.status(), 413);
    // 500 + 500 unmatched objects are evaluated
    let mut items: Vec<Value> = (0..500).map(tiny_nodepool).collect();
    items.extend((0..500).map(tiny_hostedcluster));
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let r = post(list).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["reports"].as_array().unwrap().len(), 1_000);
    assert!(s.alive());
    assert!(s.peak_rss_mib() < 120, "peak RSS {} MiB", s.peak_rss_mib());
}

/// Probes answer while /v1/evaluate keeps every evaluation slot busy: the ops listener has
/// its own thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_never_wait_behind_evaluation() {
    let s = Served::start(2048, &[]);
    let mut items: Vec<Value> = (0..500).map(tiny_nodepool).collect();
    items.extend((0..500).map(tiny_hostedcluster));
    let list = Arc::new(json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, url, list, stop) = (s.client(), s.url(EVAL), list.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut served = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(list.as_ref().clone())
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status() == 200) {
                    served += 1;
                }
            }
            served
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let probes = {
        let ops = s.ops;
        std::thread::spawn(move || {
            let probe = Served::healthz_at(ops);
            (0..20)
                .map(|_| {
                    std::thread::sleep(Duration::from_millis(50));
                    probe()
                })
                .collect::<Vec<_>>()
        })
    };
    let probes = tokio::task::spawn_blocking(move || probes.join().unwrap())
        .await
        .unwrap();
    let worst = probes.iter().map(|p| p.1).max().unwrap();
    assert!(probes.iter().all(|p| p.0 == "HTTP/1.1 200 OK"), "{probes:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut served = 0;
    for l in load {
        served += l.await.unwrap();
    }
    assert!(served > 0, "the load was served");
    assert!(worst < Duration::from_millis(500), "slowest probe {worst:?}");
}

// ---------------------------------------------------------------------------------------
// Connections that never speak, idle HTTP/2, per-peer limits, the ops port

#[tokio::test]
async fn connections_that_never_speak_are_closed() {
    let s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.limits.header_read_timeout = Duration::from_millis(300);
        c.limits.idle_timeout = Duration::from_millis(400);
    })
    .await;
    // TLS handshake done, nothing sent: closed from accept on, not only once bytes arrive
    let mut silent = raw_tls(&s, b"http/1.1").await;
    let started = Instant::now();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), silent.read_to_end(&mut buf))
        .await
        .expect("closed")
        .ok();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // HTTP/2 that only keeps the connection alive (the h2 client answers PINGs) and opens
    // no stream after its first: GOAWAY after the idle timeout
    let tls = raw_tls(&s, b"h2").await;
    let (mut h2, conn) = h2::client::handshake(tls).await.unwrap();
    let conn = tokio::spawn(conn);
    let req = axum::http::Request::post(format!("https://{SERVICE_HOST}{NP}"))
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (resp, mut body) = h2.send_request(req, false).unwrap();
    body.send_data(good_review().into(), true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), conn)
        .await
        .expect("the server ends the idle HTTP/2 connection")
        .unwrap()
        .ok();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let (_, m) = s.ops_get("/metrics").await;
    assert!(
        m.contains("live_migration_guard_rejected_total{result=\"first-request-timeout\"} 1"),
        "{m}"
    );
    s.stop().await;
}

async fn connect_from(src: &str, to: SocketAddr) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
    sock.connect(to).await.unwrap()
}

/// 1,024 silent connections from one peer locked out every real client; now one peer gets
/// at most its share, on the TLS port and on the ops port (which also cuts off half-sent
/// requests).
#[tokio::test]
async fn one_peer_cannot_take_every_connection() {
    let s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.limits.max_connections_per_peer = 4;
        c.limits.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    // ops port (64 connections, 32 per peer): 40 half-sent requests from 127.0.0.1
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut c = connect_from("127.0.0.1", s.ops).await;
        let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
        held.push(c);
    }
    // another peer (kubelet) still gets its probe answered
    let mut probe = connect_from("127.0.0.2", s.ops).await;
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(3), probe.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // the half-sent ones are cut off by the header timeout
    let started = Instant::now();
    for mut c in held {
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut buf))
            .await
            .expect("closed")
            .ok();
    }
    assert!(started.elapsed() < Duration::from_secs(2));

    // TLS port: the fifth connection from one peer is closed at once
    let mut mine = Vec::new();
    for _ in 0..4 {
        mine.push(raw_tls(&s, b"http/1.1").await);
    }
    let tcp = connect_from("127.0.0.1", s.addr).await;
    let cfg = tls_config(&s.ca_pem, None);
    let fifth = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from(SERVICE_HOST).unwrap(),
            tcp,
        )
        .await;
    assert!(fifth.is_err(), "fifth connection from the same peer refused");
    let (_, m) = s.ops_get("/metrics").await;
    assert!(m.contains("result=\"peer-connections\""), "{m}");
    s.stop().await;
}

// ---------------------------------------------------------------------------------------
// Drain with pooled idle connections

/// A pool of `n` keep-alive connections, each used once.
async fn pooled(s: &TestServer, n: usize) -> Vec<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut pool = Vec::new();
    for _ in 0..n {
        let mut c = raw_tls(s, b"http/1.1").await;
        c.write_all(&request(NP, &good_review())).await.unwrap();
        assert!(read_response(&mut c).await.unwrap().0.starts_with("http/1.1 200"));
        pool.push(c);
    }
    pool
}

/// Sends one request on every pooled connection the server has not closed (as Go's
/// transport does, a closed idle connection is not reused), all at once like a busy
/// client; returns (skipped, answered). Panics if a written request is not answered.
async fn send_on_pool(pool: &mut [tokio_rustls::client::TlsStream<tokio::net::TcpStream>]) -> (usize, usize) {
    let mut written = Vec::new();
    for (i, c) in pool.iter_mut().enumerate() {
        // a close the server sent has arrived (loopback): one poll sees it
        let mut probe = [0u8; 1];
        let closed = matches!(
            futures::FutureExt::now_or_never(c.read(&mut probe)),
            Some(Ok(0)) | Some(Err(_))
        );
        if !closed && c.write_all(&request(NP, &good_review())).await.is_ok() {
            written.push(i);
        }
    }
    for &i in &written {
        let (head, _) = read_response(&mut pool[i]).await.unwrap_or_else(|| {
            panic!(
                "the request written on connection {i} of {} is answered",
                written.len()
            )
        });
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
    }
    (pool.len() - written.len(), written.len())
}

/// kube-apiserver keeps idle keep-alive connections. Those that send right after the
/// listener closed got EOF without an answer (about half of 120); now an idle connection
/// gets the same grace as a new one: every written request is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_idle_connections_lose_no_request_after_the_delay() {
    let mut s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.shutdown_delay = Duration::ZERO;
    })
    .await;
    let mut pool = pooled(&s, 60).await;
    s.signal();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(send_on_pool(&mut pool).await, (0, 60));
    let task = s.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

/// With a shutdown delay, pooled connections left idle are closed while the listener still
/// accepts (clients dial anew and reach a replica that is ready); the rest get the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_during_the_delay() {
    let mut s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.shutdown_delay = Duration::from_millis(1500);
    })
    .await;
    let mut pool = pooled(&s, 20).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    s.signal();
    // all have been idle for over 500 ms: closed within a tick or two, well inside the delay
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(send_on_pool(&mut pool).await, (20, 0));
    // and a new connection is still served during the delay
    let mut c = raw_tls(&s, b"http/1.1").await;
    c.write_all(&request(NP, &good_review())).await.unwrap();
    let (head, _) = read_response(&mut c).await.unwrap();
    assert!(
        head.starts_with("http/1.1 200") && head.contains("connection: close"),
        "{head}"
    );
    let task = s.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Logging (issue: serving path, item 3)

/// Text logs to a pipe carry no ANSI colour codes; a plain allow is logged at debug, a
/// warned admission at info; untrusted fields are escaped (a newline in `request.uid` does
/// not forge a line).
#[tokio::test]
async fn admission_logs_are_plain_escaped_and_leveled() {
    let s = Served::start_logging(1024, &[], "text");
    let rwo = review(
        "NodePool",
        "CREATE",
        Some(&fixture_value("nodepool-kubevirt-rwo-root-volume.yaml")),
        None,
    );
    let mut forged = rwo.clone();
    forged["request"]["uid"] = json!("abc\nFORGED level=ERROR\u{1b}[31m");
    let not_kubevirt = review(
        "NodePool",
        "CREATE",
        Some(&with(
            fixture_value("nodepool-kubevirt-rwo-root-volume.yaml"),
            &[("/spec/platform", json!({"type": "AWS"}))],
        )),
        None,
    );
    for body in [&rwo, &forged, &not_kubevirt] {
        let r = s
            .client()
            .post(s.url(NP))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // the non-blocking writer flushes within moments
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let lines = s.log.lock().unwrap().clone();
        if lines.iter().filter(|l| l.contains(" admission ")).count() >= 2 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let admissions: Vec<&String> = lines.iter().filter(|l| l.contains(" admission ")).collect();
    assert_eq!(
        admissions.len(),
        2,
        "two warned admissions at info, the plain allow at debug: {lines:#?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains('\u{1b}')),
        "no ANSI codes on a pipe: {lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.starts_with("FORGED")), "{lines:#?}");
    assert!(
        admissions.iter().any(|l| l.contains(r#"abc\nFORGED"#)),
        "{admissions:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// Peers that stop reading, deny-mode UPDATE matching, denial size

fn big_evaluate_body() -> String {
    let items: Vec<Value> = (0..1_000).map(tiny_nodepool).collect();
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

/// A client that sends a request with a large answer and never reads it pinned the answer
/// forever; now the connection is dropped once writing makes no progress for the write
/// timeout (HTTP/1: the socket buffers fill up).
#[tokio::test]
async fn a_peer_that_never_reads_is_dropped() {
    let s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.limits.write_timeout = Duration::from_millis(300);
    })
    .await;
    let mut conn = raw_tls(&s, b"http/1.1").await;
    let body = big_evaluate_body();
    let req = format!(
        "POST {EVAL} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    // several requests' worth, pipelined, and never a byte read back
    for _ in 0..8 {
        if conn.write_all(req.as_bytes()).await.is_err() {
            break;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, m) = s.ops_get("/metrics").await;
        if m.contains("live_migration_guard_rejected_total{result=\"write-timeout\"} 1") {
            break;
        }
        assert!(Instant::now() < deadline, "not dropped: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
}

/// HTTP/2 with a zero flow-control window: the answer can never be sent. The connection is
/// dropped once the response has been unfinished for the request and write timeouts.
#[tokio::test]
async fn an_http2_zero_window_is_dropped() {
    let s = TestServer::start_with(Policy::default(), Snapshot::fixed(Facts::none()), |c| {
        c.limits.write_timeout = Duration::from_millis(300);
        c.limits.request_timeout = Duration::from_secs(2);
    })
    .await;
    let tls = raw_tls(&s, b"h2").await;
    let (mut h2, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, axum::body::Bytes>(tls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let req = axum::http::Request::post(format!("https://{SERVICE_HOST}{NP}"))
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (resp, mut body) = h2.send_request(req, false).unwrap();
    // any answer at all is stuck behind a zero window
    body.send_data(good_review().into(), true).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .expect("headers arrive")
        .unwrap();
    assert_eq!(resp.status(), 200);
    // the body never flows (window 0); the server gives up on the connection
    tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the server drops the stuck connection")
        .unwrap()
        .ok();
    let (_, m) = s.ops_get("/metrics").await;
    assert!(m.contains("result=\"response-timeout\""), "{m}");
    s.stop().await;
}

fn deny() -> Policy {
    Policy {
        mode: Mode::Deny,
        ..Policy::default()
    }
}

/// RWO DataVolumes added by the JSON patch: all their findings point at the annotation.
fn with_patched_rwo_disks(names: &[&str]) -> Value {
    let mut ops = Vec::new();
    for n in names {
        ops.push(json!({"op": "add", "path": "/spec/dataVolumeTemplates/-", "value": {"metadata": {"name": n}, "spec": {"storage": {"accessModes": ["ReadWriteOnce"]}}}}));
        ops.push(json!({"op": "add", "path": "/spec/template/spec/volumes/-", "value": {"name": n, "dataVolume": {"name": n}}}));
    }
    nodepool_with_patch(&Value::Array(ops))
}

/// An UPDATE whose patch adds three RWO disks where the old object had one patch-added
/// disk was allowed (matched by reason and field only); now each old error accounts for one
/// new error, so the two new disks are denied, and re-applying the same object is not.
#[tokio::test]
async fn deny_mode_update_matches_per_volume() {
    let s = TestServer::start(deny(), Facts::none()).await;
    let old = with_patched_rwo_disks(&["d1"]);
    let new = with_patched_rwo_disks(&["d1", "d2", "d3"]);
    let v = s
        .post_review(NP, &review("NodePool", "UPDATE", Some(&new), Some(&old)))
        .await;
    assert_eq!(v["response"]["allowed"], false, "{v}");
    let causes = v["response"]["status"]["details"]["causes"].as_array().unwrap();
    let named: Vec<String> = causes
        .iter()
        .map(|c| c["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(named.len(), 2, "{named:#?}");
    assert!(
        named.iter().any(|m| m.contains("d2")) && named.iter().any(|m| m.contains("d3")),
        "{named:#?}"
    );
    // the same disks again (a relabel, a scale): allowed
    let scaled = with(new.clone(), &[("/spec/replicas", json!(7))]);
    let v = s
        .post_review(NP, &review("NodePool", "UPDATE", Some(&scaled), Some(&new)))
        .await;
    assert_eq!(v["response"]["allowed"], true, "{v}");
    s.stop().await;
}

/// A denial is sanitised and capped like warnings: 2,000 bad devices gave a 565 KB body and
/// a 100 KB class name a 100 KB message.
#[tokio::test]
async fn denials_are_capped_and_sanitised() {
    let s = TestServer::start(deny(), Facts::none()).await;
    let devices: Vec<Value> = (0..2_000)
        .map(|i| json!({"deviceName": format!("nvidia.com/GPU{i}\u{1b}[31m")}))
        .collect();
    let np = with(
        fixture_value("nodepool-kubevirt-rwo-root-volume.yaml"),
        &[
            ("/spec/platform/kubevirt/hostDevices", Value::Array(devices)),
            (
                "/spec/platform/kubevirt/rootVolume/persistent/storageClass",
                json!("c".repeat(100_000)),
            ),
        ],
    );
    let r = s
        .client(false)
        .post(s.url(NP))
        .header("Content-Type", "application/json")
        .body(review("NodePool", "CREATE", Some(&np), None).to_string())
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.len() < 40_000, "answer of {} bytes", text.len());
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["response"]["allowed"], false);
    let status = &v["response"]["status"];
    assert!(
        status["message"].as_str().unwrap().len() <= 2_300,
        "{}",
        status["message"]
    );
    let causes = status["details"]["causes"].as_array().unwrap();
    assert!(causes.len() <= 32);
    assert!(!text.contains('\u{1b}'), "control characters are replaced");
    s.stop().await;
}
