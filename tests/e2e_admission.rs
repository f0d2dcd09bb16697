//! End to end: the chart's RBAC, ServiceAccount and ValidatingWebhookConfiguration applied to the
//! real kube-apiserver test cluster (only `clientConfig` rewritten to a loopback URL), the real
//! `live-migration-guard serve --cluster on` running as the chart's ServiceAccount, and what a
//! user sees through the real kubectl. They skip with one line when the cluster is not built.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use common::kube::{self, Cluster, Token};
use common::{fixture_path, fixture_value, with};
use live_migration_guard::facts::load;
use serde_json::{Value, json};

const RELEASE: &str = "live-migration-guard";
const RELEASE_NS: &str = "live-migration-guard";
const MODE_LABEL: &str = "live-migration-guard.io/mode";
const RELEASE_IMAGE: &str = "quay.io/openshift-release-dev/ocp-release:4.17.0-x86_64";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The chart rendered by the pinned helm, as JSON documents.
fn render_chart(set: &[&str]) -> Vec<Value> {
    let helm_home = root().join(".tools/helm");
    let mut cmd = Command::new(root().join(".tools/bin/helm"));
    cmd.args(["template", RELEASE])
        .arg(root().join("charts/live-migration-guard"))
        .args(["--namespace", RELEASE_NS, "--kube-version", "1.36.3"]);
    for s in set {
        cmd.args(["--set", s]);
    }
    let out = cmd
        .env("HELM_CACHE_HOME", helm_home.join("cache"))
        .env("HELM_CONFIG_HOME", helm_home.join("config"))
        .env("HELM_DATA_HOME", helm_home.join("data"))
        .output()
        .expect("helm runs (scripts/install-tools.sh installs it)");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    load::split_documents(&out.stdout, "helm template")
        .expect("rendered chart parses")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A plain HTTP/1.0 GET on loopback: (status, body).
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// The webhook server, run through `sh` so it is stopped (SIGTERM) when this process exits:
/// the shell waits for its standard input, a pipe this process holds, to close.
struct Webhook {
    listen: SocketAddr,
    ops: SocketAddr,
    ca_pem: String,
    log: PathBuf,
    shell: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
}

impl Webhook {
    fn start(k: &Cluster, token: &Token, extra: &[&str], name: &str) -> Webhook {
        let dir = k.dir().join(format!("webhook-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let ops: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let ca_out = dir.join("ca.crt");
        let log = dir.join("serve.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(r#""$@" </dev/null & child=$!; read -r _ || true; kill -TERM "$child" 2>/dev/null; wait "$child""#)
            .arg("sh")
            .arg(env!("CARGO_BIN_EXE_live-migration-guard"))
            .arg("serve")
            .args(["--cluster", "on", "--kubeconfig"])
            .arg(k.kubeconfig_for(token))
            .args(["--listen", &listen.to_string()])
            .args(["--ops-listen", &ops.to_string()])
            .arg("--ca-bundle-out")
            .arg(&ca_out)
            .args(["--shutdown-delay", "0s", "--shutdown-timeout", "2s"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("sh runs");
        let stdin = shell.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(30);
        let ca_pem = loop {
            if let Ok(pem) = std::fs::read_to_string(&ca_out)
                && pem.contains("END CERTIFICATE")
            {
                break pem;
            }
            if let Ok(Some(st)) = shell.try_wait() {
                panic!("serve exited ({st}):\n{}", kube::tail(&log, 40));
            }
            assert!(
                Instant::now() < deadline,
                "serve wrote no CA bundle within 30 s:\n{}",
                kube::tail(&log, 40)
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Webhook {
            listen,
            ops,
            ca_pem,
            log,
            shell: Mutex::new(shell),
            stdin: Mutex::new(stdin),
        }
    }

    fn readyz(&self) -> Option<u16> {
        http_get(self.ops, "/readyz").map(|(s, _)| s)
    }

    fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.readyz() != Some(200) {
            assert!(
                Instant::now() < deadline,
                "serve not ready within {timeout:?} (readyz {:?}):\n{}",
                self.readyz(),
                kube::tail(&self.log, 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn metrics(&self) -> String {
        http_get(self.ops, "/metrics").expect("metrics answer").1
    }

    /// The sum of the admission request counters whose labels contain all of `labels`.
    fn requests(&self, labels: &[&str]) -> u64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with("live_migration_guard_admission_requests_total{"))
            .filter(|l| labels.iter().all(|want| l.contains(want)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        drop(self.stdin.lock().unwrap().take());
        let mut shell = self.shell.lock().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = shell.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = shell.kill();
        let _ = shell.wait();
    }
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The chart's documents of `kinds`, the webhook configuration's `clientConfig` rewritten to
/// `url` + `caBundle` (everything else as rendered), as one List.
fn chart_objects(webhook: &Webhook, kinds: &[&str]) -> Value {
    let mut items = Vec::new();
    for mut doc in render_chart(&[]) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        if !kinds.contains(&kind.as_str()) {
            continue;
        }
        if kind == "ValidatingWebhookConfiguration" {
            for hook in doc["webhooks"].as_array_mut().expect("webhooks") {
                let path = hook["clientConfig"]["service"]["path"]
                    .as_str()
                    .expect("service path")
                    .to_owned();
                hook["clientConfig"] = json!({
                    "url": format!("https://{}{path}", webhook.listen),
                    "caBundle": b64(webhook.ca_pem.as_bytes()),
                });
            }
        }
        items.push(doc);
    }
    assert_eq!(items.len(), kinds.len(), "kinds {kinds:?} in the chart");
    json!({ "apiVersion": "v1", "kind": "List", "items": items })
}

struct Env {
    k: &'static Cluster,
    webhook: Webhook,
}

/// Tests that read the server's request counters take this for writing, every other test for
/// reading: the counters then move only with the writer's own requests.
static TRAFFIC: RwLock<()> = RwLock::new(());

fn traffic() -> RwLockReadGuard<'static, ()> {
    TRAFFIC.read().unwrap_or_else(|p| p.into_inner())
}

/// Set up once per test binary: CRDs, facts (StorageClasses), the chart's RBAC, ServiceAccount
/// and webhook configuration, the server; then waits until the API server calls it.
fn env() -> Option<&'static Env> {
    static ENV: OnceLock<Result<Env, String>> = OnceLock::new();
    let k = kube::shared()?;
    // A failed set-up fails every test with its message, and is not retried by each.
    let env = ENV.get_or_init(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| set_up(k))).map_err(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default()
        })
    });
    match env {
        Ok(e) => Some(e),
        Err(e) => panic!("set-up failed: {e}"),
    }
}

fn set_up(k: &'static Cluster) -> Env {
    k.install_crds();
    k.kubectl(&["create", "namespace", RELEASE_NS], None)
        .expect_ok("release namespace");
    // Facts: the fixtures' RWO-only AWS EBS class gp3-csi and an RWX-capable Ceph RBD class.
    let mut classes = Vec::new();
    for f in [
        "storageclass-gp3-csi-aws-ebs.yaml",
        "storageclass-rook-ceph-block-rbd.yaml",
    ] {
        let text = std::fs::read_to_string(fixture_path(f)).unwrap();
        classes.extend(
            load::split_documents(text.as_bytes(), f)
                .unwrap()
                .into_iter()
                .filter(|d| d["kind"] == "StorageClass"),
        );
    }
    let classes = json!({ "apiVersion": "v1", "kind": "List", "items": classes });
    k.kubectl(&["apply", "-f", "-"], Some(&classes.to_string()))
        .expect_ok("storage classes");
    let webhook = Webhook::start(
        k,
        &kube::chart_service_account(),
        &["--allow-object-override"],
        "main",
    );
    let objects = chart_objects(
        &webhook,
        &[
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ValidatingWebhookConfiguration",
        ],
    );
    k.kubectl(&["apply", "-f", "-"], Some(&objects.to_string()))
        .expect_ok("chart objects");
    webhook.wait_ready(Duration::from_secs(60));
    // The configuration reaches the admission chain through an informer: poll a dry run.
    namespace(k, "e2e-probe", None);
    let probe = rwo_nodepool("e2e-probe", "probe");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = apply(k, &probe, &["--dry-run=server"]);
        if out.stderr.contains("Warning: DisksNotLiveMigratable") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the webhook is not called after 30 s: {}\n{}",
            out.stderr,
            kube::tail(&webhook.log, 40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Env { k, webhook }
}

/// A namespace for one test, labelled with `mode` (None: the global mode, warn).
fn namespace(k: &Cluster, name: &str, mode: Option<&str>) {
    k.kubectl(&["create", "namespace", name], None)
        .expect_ok("create namespace");
    if let Some(mode) = mode {
        label_namespace(k, name, mode);
    }
}

fn label_namespace(k: &Cluster, name: &str, mode: &str) {
    k.kubectl(
        &[
            "label",
            "--overwrite",
            "namespace",
            name,
            &format!("{MODE_LABEL}={mode}"),
        ],
        None,
    )
    .expect_ok("label namespace");
}

fn in_ns(mut obj: Value, ns: &str, name: &str) -> Value {
    obj["metadata"]["namespace"] = json!(ns);
    obj["metadata"]["name"] = json!(name);
    if let Some(m) = obj.as_object_mut() {
        m.remove("status");
    }
    obj
}

fn rwo_nodepool(ns: &str, name: &str) -> Value {
    in_ns(fixture_value("nodepool-kubevirt-rwo-root-volume.yaml"), ns, name)
}

/// A NodePool whose root volume is on the RWX-capable class: migratable.
fn migratable_nodepool(ns: &str, name: &str) -> Value {
    in_ns(
        with(
            fixture_value("nodepool-kubevirt-minimal.yaml"),
            &[
                (
                    "/spec/platform/kubevirt/rootVolume/persistent/storageClass",
                    json!("rook-ceph-block"),
                ),
                // The fixture's empty image is refused by the CRD's validation.
                ("/spec/release/image", json!(RELEASE_IMAGE)),
            ],
        ),
        ns,
        name,
    )
}

fn exists(k: &Cluster, ns: &str, kind: &str, name: &str) -> bool {
    let out = k.kubectl(&["-n", ns, "get", kind, name, "-o", "name"], None);
    if out.ok() {
        return true;
    }
    assert!(out.stderr.contains("(NotFound)"), "{}", out.stderr);
    false
}

fn apply(k: &Cluster, obj: &Value, extra: &[&str]) -> kube::Out {
    let mut args = vec!["apply", "-f", "-"];
    args.extend_from_slice(extra);
    k.kubectl(&args, Some(&obj.to_string()))
}

/// Waits until the server applies `mode` to namespace `ns` (its namespace watch is
/// asynchronous): a dry-run create of an RWO NodePool is denied (deny) or warned (warn).
fn wait_mode(k: &Cluster, ns: &str, mode: &str) {
    let probe = rwo_nodepool(ns, "mode-probe");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = apply(k, &probe, &["--dry-run=server"]);
        let denied = !out.ok() && out.stderr.contains("is invalid: ");
        let warned = out.ok() && out.stderr.contains("Warning: DisksNotLiveMigratable");
        if (mode == "deny" && denied) || (mode == "warn" && warned) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "namespace {ns} not in {mode} mode after 30 s: {}",
            out.stderr
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (1) warn mode: exit 0, the warning on stderr, the object stored.
#[test]
fn warn_mode_apply_of_an_rwo_nodepool_warns_and_stores() {
    let Some(e) = env() else { return };
    let _t = traffic();
    let k = e.k;
    namespace(k, "e2e-warn", None);
    let out = apply(k, &rwo_nodepool("e2e-warn", "rwo"), &[]);
    out.expect_ok("apply");
    assert_eq!(out.stdout.trim(), "nodepool.hypershift.openshift.io/rwo created");
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("Warning: "))
        .collect();
    assert!(
        warnings.iter().any(|l| l.starts_with(
            "Warning: DisksNotLiveMigratable: spec.platform.kubevirt.rootVolume.persistent.accessModes: "
        ) && l.contains("ReadWriteMany")),
        "{}",
        out.stderr
    );
    assert!(exists(k, "e2e-warn", "nodepool", "rwo"));
    // The README's kubectl example is this output: its `Warning:` lines and its last line.
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let block = readme
        .split("<!-- kubectl-warning-example -->")
        .nth(1)
        .and_then(|rest| rest.split("```console\n").nth(1))
        .and_then(|rest| rest.split("\n```").next())
        .expect("README has the kubectl warning example");
    let shown: Vec<&str> = block.lines().filter(|l| !l.starts_with('$')).collect();
    let captured: Vec<&str> = warnings.iter().copied().chain([out.stdout.trim()]).collect();
    assert_eq!(
        shown, captured,
        "README example differs from what kubectl printed:\n{}\n{}",
        out.stderr, out.stdout
    );
}

/// (2) deny mode via the namespace label: the apply fails with reason, field and fix; nothing
/// is stored; `--dry-run=server` answers the same.
#[test]
fn deny_mode_rejects_an_rwo_nodepool_with_reason_field_and_fix() {
    let Some(e) = env() else { return };
    let _t = traffic();
    let k = e.k;
    namespace(k, "e2e-deny", Some("deny"));
    wait_mode(k, "e2e-deny", "deny");
    let np = rwo_nodepool("e2e-deny", "rwo");
    for extra in [&[][..], &["--dry-run=server"][..]] {
        let out = apply(k, &np, extra);
        assert!(!out.ok(), "{extra:?}: allowed:\n{}", out.stdout);
        let err = &out.stderr;
        // status.code 422 with causes: kubectl words it as an invalid object, naming the field,
        // the reason, why, and the fix.
        assert!(
            err.contains(
                "The NodePool \"rwo\" is invalid: spec.platform.kubevirt.rootVolume.persistent.accessModes: DisksNotLiveMigratable: the root volume requests access modes [ReadWriteOnce]"
            ),
            "{extra:?}: {err}"
        );
        assert!(
            err.contains(
                "Fix: set rootVolume.persistent.storageClass to an RWX-capable class such as rook-ceph-block"
            ),
            "{extra:?}: fix missing: {err}"
        );
        assert!(!exists(k, "e2e-deny", "nodepool", "rwo"));
    }
}

/// Deny mode, with an owner's override (`--allow-object-override`): the apply succeeds with
/// the warnings, and the override reaches the API server's audit log as
/// `<webhook name>/override` (a key with a `/` of its own would be dropped by the API
/// server, issue "Hardening, round 2" item 9).
#[test]
fn an_override_is_allowed_and_recorded_in_the_audit_log() {
    let Some(e) = env() else { return };
    let _t = traffic();
    let k = e.k;
    namespace(k, "e2e-override", Some("deny"));
    wait_mode(k, "e2e-override", "deny");
    let mut np = rwo_nodepool("e2e-override", "rwo");
    np["metadata"]["annotations"] = json!({
        "live-migration-guard.io/mode": "warn",
        "live-migration-guard.io/reason": "maintenance window CHG-42",
    });
    let out = apply(k, &np, &[]);
    assert!(out.ok(), "override honoured: {}", out.stderr);
    assert!(
        out.stderr.contains("Warning: DisksNotLiveMigratable"),
        "{}",
        out.stderr
    );
    let audit = k.dir().join("audit.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&audit).unwrap_or_default();
        let recorded = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|ev| {
                ev["objectRef"]["namespace"] == "e2e-override"
                    && ev["verb"] == "create"
                    && ev["annotations"].as_object().is_some_and(|a| {
                        a.iter().any(|(key, v)| {
                            key.ends_with(".live-migration-guard.io/override")
                                && v == "warn: maintenance window CHG-42"
                        })
                    })
            });
        if recorded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no override audit annotation in {}:\n{}",
            audit.display(),
            log.lines()
                .filter(|l| l.contains("e2e-override"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (3) deny mode: scaling and relabelling an existing non-migratable NodePool succeed.
#[test]
fn deny_mode_lets_existing_non_migratable_nodepools_scale_and_relabel() {
    let Some(e) = env() else { return };
    let _t = traffic();
    let k = e.k;
    namespace(k, "e2e-existing", None);
    apply(k, &rwo_nodepool("e2e-existing", "old"), &[]).expect_ok("create in warn mode");
    label_namespace(k, "e2e-existing", "deny");
    wait_mode(k, "e2e-existing", "deny");

    let scaled = k.kubectl(
        &[
            "-n",
            "e2e-existing",
            "patch",
            "nodepool",
            "old",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":5}}"#,
        ],
        None,
    );
    scaled.expect_ok("patch spec.replicas");
    assert_eq!(
        scaled.stdout.trim(),
        "nodepool.hypershift.openshift.io/old patched"
    );
    // The change of spec reached the webhook, which warns but does not block.
    assert!(
        scaled.stderr.contains("Warning: DisksNotLiveMigratable"),
        "{}",
        scaled.stderr
    );
    let sub = k.kubectl(
        &["-n", "e2e-existing", "scale", "nodepool", "old", "--replicas=3"],
        None,
    );
    sub.expect_ok("kubectl scale");
    let labelled = k.kubectl(
        &["-n", "e2e-existing", "label", "nodepool", "old", "team=storage"],
        None,
    );
    labelled.expect_ok("label");
    let got = k.kubectl(
        &[
            "-n",
            "e2e-existing",
            "get",
            "nodepool",
            "old",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.labels.team}",
        ],
        None,
    );
    assert_eq!(got.expect_ok("get").stdout, "3 storage");
}

/// (6) a non-KubeVirt NodePool never reaches the webhook: the server's request counter does not
/// move (while a KubeVirt one moves it by one).
#[test]
fn non_kubevirt_nodepools_never_reach_the_webhook() {
    let Some(e) = env() else { return };
    let _t = TRAFFIC.write().unwrap_or_else(|p| p.into_inner());
    let k = e.k;
    namespace(k, "e2e-other-platform", None);
    let before = e.webhook.requests(&[]);
    let mut np = migratable_nodepool("e2e-other-platform", "none");
    np["spec"]["platform"] = json!({ "type": "None" });
    apply(k, &np, &[]).expect_ok("apply a None-platform NodePool");
    let mut agent = migratable_nodepool("e2e-other-platform", "agent");
    agent["spec"]["platform"] = json!({ "type": "Agent", "agent": {} });
    apply(k, &agent, &[]).expect_ok("apply an Agent NodePool");
    assert_eq!(e.webhook.requests(&[]), before, "{}", e.webhook.metrics());

    apply(k, &migratable_nodepool("e2e-other-platform", "kubevirt"), &[])
        .expect_ok("apply a KubeVirt NodePool");
    assert_eq!(e.webhook.requests(&[]), before + 1, "{}", e.webhook.metrics());
}

/// (8) the server is ready only once its watches synced: as a ServiceAccount without RBAC it
/// stays unready; once the chart's ClusterRole is bound to it, it turns ready.
#[test]
fn readiness_waits_for_synced_watches() {
    let Some(e) = env() else { return };
    let _t = traffic();
    let k = e.k;
    let sa = kube::unbound_service_account();
    let w = Webhook::start(k, &sa, &[], "unbound");
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let r = w.readyz();
        assert!(
            r != Some(200),
            "ready without being allowed to list anything:\n{}",
            kube::tail(&w.log, 20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    k.kubectl(
        &[
            "create",
            "clusterrolebinding",
            "e2e-unbound",
            &format!("--clusterrole={RELEASE}"),
            "--serviceaccount=live-migration-guard:unbound",
        ],
        None,
    )
    .expect_ok("bind");
    w.wait_ready(Duration::from_secs(90));
}

/// (12) a HostedCluster mapping guest storage to an RWO-first infra class is warned at CREATE.
#[test]
fn hostedcluster_manual_mapping_to_an_rwo_class_is_warned_at_create() {
    let Some(e) = env() else { return };
    let _t = traffic();
    let k = e.k;
    namespace(k, "e2e-hc", None);
    let hc = in_ns(
        fixture_value("hostedcluster-kubevirt-manual-storage-mapping.yaml"),
        "e2e-hc",
        "manual",
    );
    let out = apply(k, &hc, &["--server-side", "--field-manager=e2e"]);
    out.expect_ok("apply HostedCluster");
    assert!(
        out.stderr.lines().any(|l| l.starts_with(
            "Warning: DisksNotLiveMigratable: spec.platform.kubevirt.storageDriver.manual.storageClassMapping[0].infraStorageClassName: "
        )),
        "{}",
        out.stderr
    );
    assert!(exists(k, "e2e-hc", "hostedcluster", "manual"));
}

/// The chart's `spec-or-vm-jsonpatch-changed` condition: an annotation-only update that adds a
/// host device through `hypershift.openshift.io/kubevirt-vm-jsonpatch` reaches the webhook (and
/// is denied in deny mode), while label and other annotation updates never reach it.
#[test]
fn vm_jsonpatch_annotation_updates_reach_the_webhook_label_updates_do_not() {
    let Some(e) = env() else { return };
    let _t = TRAFFIC.write().unwrap_or_else(|p| p.into_inner());
    let k = e.k;
    let ns = "e2e-vm-patch";
    namespace(k, ns, Some("deny"));
    wait_mode(k, ns, "deny");
    let created = apply(k, &migratable_nodepool(ns, "np"), &[]);
    created.expect_ok("create a migratable NodePool");
    assert!(!created.stderr.contains("Warning:"), "{}", created.stderr);

    let before = e.webhook.requests(&[]);
    k.kubectl(&["-n", ns, "label", "nodepool", "np", "team=storage"], None)
        .expect_ok("label");
    k.kubectl(
        &["-n", ns, "annotate", "nodepool", "np", "example.com/note=hello"],
        None,
    )
    .expect_ok("unrelated annotation");
    assert_eq!(
        e.webhook.requests(&[]),
        before,
        "label/annotation-only updates reached the webhook:\n{}",
        e.webhook.metrics()
    );

    let patch = r#"hypershift.openshift.io/kubevirt-vm-jsonpatch=[{"op": "add", "path": "/spec/template/spec/domain/devices/hostDevices/-", "value": {"name": "gpu", "deviceName": "nvidia.com/A100"}}]"#;
    for extra in [&["--dry-run=server"][..], &[][..]] {
        let mut args = vec!["-n", ns, "annotate", "nodepool", "np", patch];
        args.extend_from_slice(extra);
        let out = k.kubectl(&args, None);
        assert!(
            !out.ok(),
            "{extra:?}: a host device was patched in:\n{}",
            out.stdout
        );
        assert!(
            out.stderr.contains("The NodePool \"np\" is invalid: ")
                && out.stderr.contains("HostDeviceNotLiveMigratable"),
            "{extra:?}: {}",
            out.stderr
        );
    }
    assert_eq!(e.webhook.requests(&[]), before + 2, "{}", e.webhook.metrics());
    let stored = k.kubectl(
        &[
            "-n",
            ns,
            "get",
            "nodepool",
            "np",
            "-o",
            "jsonpath={.metadata.annotations}",
        ],
        None,
    );
    let stored = stored.expect_ok("get");
    assert!(
        !stored.stdout.contains("kubevirt-vm-jsonpatch"),
        "{}",
        stored.stdout
    );
}
