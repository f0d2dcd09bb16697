//! End to end: the chart's RBAC, ServiceAccount and ValidatingWebhookConfiguration applied to the
//! real kube-apiserver test cluster (only `clientConfig` rewritten to a loopback URL), the real
//! `live-migration-guard serve --cluster on` running as the chart's ServiceAccount, and what a
//! user sees through the real kubectl. They skip with one line when the cluster is not built.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
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
        Self::spawn(k, token, extra, name, None)
    }

    /// A server whose certificate comes from files (`extra` has --tls-cert and --tls-key),
    /// signed by the CA in `ca_pem`.
    fn start_with_files(k: &Cluster, token: &Token, extra: &[&str], name: &str, ca_pem: &str) -> Webhook {
        Self::spawn(k, token, extra, name, Some(ca_pem))
    }

    fn spawn(k: &Cluster, token: &Token, extra: &[&str], name: &str, files_ca: Option<&str>) -> Webhook {
        let dir = k.dir().join(format!("webhook-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_out = dir.join("ca.crt");
        let log = dir.join("serve.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut shell = common::serve_log_env(&mut Command::new("sh"))
            .arg("-c")
            .arg(r#""$@" </dev/null & child=$!; read -r _ || true; kill -TERM "$child" 2>/dev/null; wait "$child""#)
            .arg("sh")
            .arg(env!("CARGO_BIN_EXE_live-migration-guard"))
            .arg("serve")
            .args(["--cluster", "on", "--kubeconfig"])
            .arg(k.kubeconfig_for(token))
            .args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"])
            .args(if files_ca.is_none() {
                vec!["--ca-bundle-out".to_owned(), ca_out.display().to_string()]
            } else {
                vec![]
            })
            .args(["--shutdown-delay", "0s", "--shutdown-timeout", "2s"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("sh runs");
        let stdin = shell.stdin.take();
        // Up once it logs the addresses it bound (the generated CA bundle is written before).
        let bound = common::wait_bound(&log, Duration::from_secs(30), || shell.try_wait().ok().flatten())
            .unwrap_or_else(|e| panic!("{e}:\n{}", kube::tail(&log, 40)));
        let (listen, ops) = (bound.listen, bound.ops);
        let ca_pem = match files_ca {
            Some(pem) => pem.to_owned(),
            None => std::fs::read_to_string(&ca_out).expect("the generated CA bundle"),
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

/// The chart's documents of `kinds`, the webhook configuration's `clientConfig` rewritten to
/// `url` + `caBundle` (everything else as rendered), as one List.
fn chart_objects(webhook: &Webhook, kinds: &[&str]) -> Value {
    let mut items = Vec::new();
    for mut doc in common::render_chart(RELEASE, RELEASE_NS, &[]) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        // The webhook's own objects (not the access roles, the auth-delegator binding of the
        // side endpoints' port, or the helm test hook: tests/e2e_auth.rs covers those).
        if !kinds.contains(&kind.as_str()) || doc["metadata"]["name"] != RELEASE {
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
                    "caBundle": common::b64(webhook.ca_pem.as_bytes()),
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
        &["--allow-object-override", "--audit-interval=2s"],
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
        let silent = out.ok() && !out.stderr.contains("Warning:");
        if (mode == "deny" && denied) || (mode == "warn" && warned) || (mode == "off" && silent) {
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

/// (8) The chart's ClusterRole without one verb (`watch` on StorageClasses): the first list
/// succeeds, so a server that only waited for its first sync would be ready and then never see a
/// class change. It stays not ready, and `/readyz` quotes the API server naming the user, verb
/// and resource; granting the verb makes it ready without a restart.
#[test]
fn a_cluster_role_missing_one_verb_keeps_the_server_unready_and_names_it() {
    let Some(e) = env() else { return };
    let _t = traffic();
    let k = e.k;
    let mut role = chart_objects(&e.webhook, &["ClusterRole"])["items"][0].clone();
    role["metadata"] = json!({ "name": "e2e-partial" });
    let mut removed = false;
    for rule in role["rules"].as_array_mut().expect("rules") {
        if rule["resources"] == json!(["storageclasses"]) {
            rule["verbs"] = json!(["list"]);
            removed = true;
        }
    }
    assert!(
        removed,
        "the chart's ClusterRole has a storageclasses rule: {role}"
    );
    k.kubectl(&["apply", "-f", "-"], Some(&role.to_string()))
        .expect_ok("partial ClusterRole");
    k.kubectl(
        &[
            "create",
            "clusterrolebinding",
            "e2e-partial",
            "--clusterrole=e2e-partial",
            "--serviceaccount=live-migration-guard:partial",
        ],
        None,
    )
    .expect_ok("bind");
    let w = Webhook::start(k, &kube::partial_service_account(), &[], "partial");
    let expected = "StorageClasses: forbidden by RBAC: storageclasses.storage.k8s.io is forbidden: User \"system:serviceaccount:live-migration-guard:partial\" cannot watch resource \"storageclasses\" in API group \"storage.k8s.io\" at the cluster scope";
    poll(
        Duration::from_secs(30),
        "readyz names the forbidden watch",
        || match http_get(w.ops, "/readyz") {
            Some((503, body)) if body.contains(expected) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    // It stays so (the list succeeded long ago; only the watch is refused).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(w.readyz(), Some(503), "{}", kube::tail(&w.log, 20));
    role["rules"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .filter(|r| r["resources"] == json!(["storageclasses"]))
        .for_each(|r| r["verbs"] = json!(["list", "watch"]));
    k.kubectl(&["apply", "-f", "-"], Some(&role.to_string()))
        .expect_ok("complete ClusterRole");
    w.wait_ready(Duration::from_secs(60));
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

const VIRT_DEFAULT: &str = "storageclass.kubevirt.io/is-default-virt-class";

/// Calls `probe` until it answers `Some`, for at most `timeout`; panics with `what` and the
/// last thing `probe` reported.
fn poll<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(last) => assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}; last: {last}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The `Warning: REASON: ...` lines kubectl printed, as reasons.
fn warning_reasons(stderr: &str) -> Vec<String> {
    let mut reasons: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("Warning: "))
        .filter_map(|l| l.split(':').next())
        .map(str::to_owned)
        .collect();
    reasons.sort();
    reasons
}

/// A NodePool without a storage class: it lands on the cluster's default class.
fn classless_nodepool(ns: &str, name: &str) -> Value {
    let mut np = migratable_nodepool(ns, name);
    np["spec"]["platform"]["kubevirt"]["rootVolume"]["persistent"]
        .as_object_mut()
        .unwrap()
        .remove("storageClass");
    np
}

/// The RWX-capable Ceph RBD fixture class under another name.
fn rwx_class(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture_path("storageclass-rook-ceph-block-rbd.yaml")).unwrap();
    let mut class = load::split_documents(text.as_bytes(), "rook-ceph-block")
        .unwrap()
        .into_iter()
        .find(|d| d["kind"] == "StorageClass")
        .unwrap();
    class["metadata"]["name"] = json!(name);
    class
}

/// Undoes the cluster-wide changes of the facts test, also when it fails.
struct RestoreClasses<'a>(&'a Cluster, &'a [&'a str]);

impl Drop for RestoreClasses<'_> {
    fn drop(&mut self) {
        let _ = self.0.kubectl(
            &["annotate", "storageclass", "gp3-csi", &format!("{VIRT_DEFAULT}-")],
            None,
        );
        for class in self.1 {
            let _ = self
                .0
                .kubectl(&["delete", "storageclass", class, "--ignore-not-found"], None);
        }
    }
}

/// (7) Facts follow the cluster: moving the default-virt-class annotation from the RWO class to
/// an RWX class with `kubectl annotate` turns a class-less NodePool from warned to clean; a
/// NodePool naming a class deleted with `kubectl delete storageclass` is warned
/// `StorageClassNotFound`.
#[test]
fn facts_follow_the_cluster_default_class_moves_and_deleted_classes() {
    let Some(e) = env() else { return };
    // Cluster-wide: no other test runs while the default class is set.
    let _t = TRAFFIC.write().unwrap_or_else(|p| p.into_inner());
    let k = e.k;
    let _restore = RestoreClasses(k, &["e2e-rwx-default", "e2e-doomed"]);
    let ns = "e2e-facts";
    namespace(k, ns, None);
    let np = classless_nodepool(ns, "classless");

    // No default class yet: the disk is never created.
    let out = apply(k, &np, &["--dry-run=server"]);
    out.expect_ok("dry run");
    assert!(
        out.stderr.contains(
            "Warning: NoDefaultStorageClass: spec.platform.kubevirt.rootVolume.persistent.storageClass: "
        ),
        "{}",
        out.stderr
    );

    k.kubectl(
        &[
            "annotate",
            "storageclass",
            "gp3-csi",
            &format!("{VIRT_DEFAULT}=true"),
        ],
        None,
    )
    .expect_ok("annotate gp3-csi");
    poll(Duration::from_secs(30), "gp3-csi becomes the default", || {
        let out = apply(k, &np, &["--dry-run=server"]);
        if out.ok()
            && out.stderr.contains(
                "Warning: DisksNotLiveMigratable: spec.platform.kubevirt.rootVolume.persistent.storageClass: ",
            )
        {
            Ok(())
        } else {
            Err(out.stderr)
        }
    });

    // Move the annotation to a new RWX class.
    k.kubectl(
        &["apply", "-f", "-"],
        Some(&rwx_class("e2e-rwx-default").to_string()),
    )
    .expect_ok("create e2e-rwx-default");
    k.kubectl(
        &["annotate", "storageclass", "gp3-csi", &format!("{VIRT_DEFAULT}-")],
        None,
    )
    .expect_ok("remove the annotation from gp3-csi");
    k.kubectl(
        &[
            "annotate",
            "storageclass",
            "e2e-rwx-default",
            &format!("{VIRT_DEFAULT}=true"),
        ],
        None,
    )
    .expect_ok("annotate e2e-rwx-default");
    poll(
        Duration::from_secs(30),
        "e2e-rwx-default becomes the default",
        || {
            let out = apply(k, &np, &["--dry-run=server"]);
            if out.ok() && !out.stderr.contains("Warning:") {
                Ok(())
            } else {
                Err(out.stderr)
            }
        },
    );
    let out = apply(k, &np, &[]);
    out.expect_ok("apply");
    assert_eq!(
        out.stdout.trim(),
        "nodepool.hypershift.openshift.io/classless created"
    );
    assert!(!out.stderr.contains("Warning:"), "{}", out.stderr);

    // A class that existed, then was deleted.
    k.kubectl(&["apply", "-f", "-"], Some(&rwx_class("e2e-doomed").to_string()))
        .expect_ok("create e2e-doomed");
    let mut doomed = migratable_nodepool(ns, "doomed");
    doomed["spec"]["platform"]["kubevirt"]["rootVolume"]["persistent"]["storageClass"] = json!("e2e-doomed");
    poll(Duration::from_secs(30), "e2e-doomed is known", || {
        let out = apply(k, &doomed, &["--dry-run=server"]);
        if out.ok() && !out.stderr.contains("Warning:") {
            Ok(())
        } else {
            Err(out.stderr)
        }
    });
    let deleted = k.kubectl(&["delete", "storageclass", "e2e-doomed"], None);
    deleted.expect_ok("delete e2e-doomed");
    assert_eq!(
        deleted.stdout.trim(),
        "storageclass.storage.k8s.io \"e2e-doomed\" deleted"
    );
    // Dry runs until the deletion reached the server: a stored object would make the next
    // apply a no-op that kubectl does not send.
    poll(Duration::from_secs(30), "e2e-doomed is gone", || {
        let out = apply(k, &doomed, &["--dry-run=server"]);
        if out.ok() && out.stderr.contains("Warning: StorageClassNotFound") {
            Ok(())
        } else {
            Err(out.stderr)
        }
    });
    let out = apply(k, &doomed, &[]);
    out.expect_ok("apply naming a deleted class");
    assert_eq!(
        out.stdout.trim(),
        "nodepool.hypershift.openshift.io/doomed created"
    );
    assert!(
        out.stderr.lines().any(|l| l.starts_with(
            "Warning: StorageClassNotFound: spec.platform.kubevirt.rootVolume.persistent.storageClass: "
        )),
        "{}",
        out.stderr
    );
}

/// (7) The namespace label switches warn → deny → off → warn live; `off`: no warning at all.
#[test]
fn namespace_labels_switch_warn_deny_off_live() {
    let Some(e) = env() else { return };
    let _t = traffic();
    let k = e.k;
    let ns = "e2e-modes";
    namespace(k, ns, None);
    wait_mode(k, ns, "warn");
    label_namespace(k, ns, "deny");
    wait_mode(k, ns, "deny");
    assert!(!apply(k, &rwo_nodepool(ns, "rwo"), &[]).ok());
    label_namespace(k, ns, "off");
    wait_mode(k, ns, "off");
    let out = apply(k, &rwo_nodepool(ns, "rwo"), &[]);
    out.expect_ok("apply in off mode");
    assert_eq!(out.stdout.trim(), "nodepool.hypershift.openshift.io/rwo created");
    assert_eq!(out.stderr, "", "off mode: nothing on stderr");
    // Removing the label: the global mode (warn) again.
    k.kubectl(&["label", "namespace", ns, &format!("{MODE_LABEL}-")], None)
        .expect_ok("remove the label");
    wait_mode(k, ns, "warn");
    let out = apply(k, &rwo_nodepool(ns, "rwo2"), &[]);
    out.expect_ok("apply in warn mode");
    assert!(
        out.stderr.contains("Warning: DisksNotLiveMigratable"),
        "{}",
        out.stderr
    );
}

/// The stored object as `kubectl get -o yaml` prints it.
fn stored_yaml(k: &Cluster, ns: &str, kind: &str, name: &str) -> String {
    k.kubectl(&["-n", ns, "get", kind, name, "-o", "yaml"], None)
        .expect_ok("get -o yaml")
        .stdout
        .clone()
}

/// `live-migration-guard evaluate --output json` of `yaml` with the fixtures' classes as facts:
/// the one report.
fn evaluate_offline(yaml: &str) -> Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_live-migration-guard"))
        .arg("evaluate")
        .arg("--facts")
        .arg(fixture_path("storageclass-gp3-csi-aws-ebs.yaml"))
        .arg("--facts")
        .arg(fixture_path("storageclass-rook-ceph-block-rbd.yaml"))
        .args(["--output", "json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "evaluate: {e}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["reports"][0].clone()
}

/// The reasons of a report's findings that kubectl shows (all but info), sorted.
fn shown_reasons(report: &Value) -> Vec<String> {
    let mut r: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] != "info")
        .map(|f| f["reason"].as_str().unwrap().to_owned())
        .collect();
    r.sort();
    r
}

/// Applies `np` (warn mode), and checks that what kubectl printed is what the offline evaluator
/// says of the object as stored (CRD defaults applied); returns the stored object and the
/// report.
fn apply_and_compare(k: &Cluster, np: &Value) -> (Value, Value, String) {
    let ns = np["metadata"]["namespace"].as_str().unwrap();
    let name = np["metadata"]["name"].as_str().unwrap();
    let out = apply(k, np, &[]);
    out.expect_ok("apply");
    let yaml = stored_yaml(k, ns, "nodepool", name);
    let stored = load::split_documents(yaml.as_bytes(), "stored").unwrap()[0].clone();
    let report = evaluate_offline(&yaml);
    assert_eq!(
        warning_reasons(&out.stderr),
        shown_reasons(&report),
        "kubectl printed:\n{}\nevaluate of the stored object:\n{report:#}",
        out.stderr
    );
    (stored, report, out.stderr.clone())
}

/// (5) CRD defaulting: the API server applies the NodePool CRD's defaults before the webhook
/// sees the object, and the verdict is the one those defaults give.
#[test]
fn crd_defaults_are_applied_before_the_webhook_judges() {
    let Some(e) = env() else { return };
    let _t = traffic();
    let k = e.k;
    let ns = "e2e-defaults";
    namespace(k, ns, None);

    // rootVolume, attachDefaultNetwork, compute and networkInterfaceMultiqueue omitted.
    let mut bare = migratable_nodepool(ns, "bare");
    let kv = bare["spec"]["platform"]["kubevirt"].as_object_mut().unwrap();
    for f in [
        "rootVolume",
        "attachDefaultNetwork",
        "compute",
        "networkInterfaceMultiqueue",
    ] {
        kv.remove(f);
    }
    let (stored, report, stderr) = apply_and_compare(k, &bare);
    let skv = &stored["spec"]["platform"]["kubevirt"];
    assert_eq!(
        skv["rootVolume"],
        json!({"type": "Persistent", "persistent": {"size": "32Gi"}})
    );
    assert_eq!(skv["attachDefaultNetwork"], json!(true));
    assert_eq!(
        skv["compute"],
        json!({"cores": 2, "memory": "8Gi", "qosClass": "Burstable"})
    );
    assert_eq!(skv["networkInterfaceMultiqueue"], json!("Enable"));
    // The defaulted root volume names no class, and the cluster has no default class.
    assert_eq!(report["verdict"], "NotMigratable");
    assert!(
        stderr.contains(
            "Warning: NoDefaultStorageClass: spec.platform.kubevirt.rootVolume.persistent.storageClass: "
        ),
        "{stderr}"
    );

    // `rootVolume: {}`: only `type` is defaulted (Persistent), `persistent` stays missing, which
    // HyperShift refuses.
    let mut empty = migratable_nodepool(ns, "empty-root");
    empty["spec"]["platform"]["kubevirt"]["rootVolume"] = json!({});
    let (stored, _, stderr) = apply_and_compare(k, &empty);
    assert_eq!(
        stored["spec"]["platform"]["kubevirt"]["rootVolume"],
        json!({"type": "Persistent"})
    );
    assert!(
        stderr
            .contains("Warning: RootVolumePersistentMissing: spec.platform.kubevirt.rootVolume.persistent: "),
        "{stderr}"
    );

    // A host device without `count` gets count 1 (not our InvalidHostDeviceCount) and is
    // judged not live migratable; `count: 0` never reaches the webhook: the CRD's minimum.
    let mut gpu = migratable_nodepool(ns, "gpu");
    gpu["spec"]["platform"]["kubevirt"]["hostDevices"] = json!([{ "deviceName": "nvidia.com/A100" }]);
    let (stored, _, stderr) = apply_and_compare(k, &gpu);
    assert_eq!(
        stored["spec"]["platform"]["kubevirt"]["hostDevices"],
        json!([{ "count": 1, "deviceName": "nvidia.com/A100" }])
    );
    assert!(
        stderr.contains("Warning: HostDeviceNotLiveMigratable: spec.platform.kubevirt.hostDevices"),
        "{stderr}"
    );
    let mut zero = migratable_nodepool(ns, "gpu-zero");
    zero["spec"]["platform"]["kubevirt"]["hostDevices"] =
        json!([{ "deviceName": "nvidia.com/A100", "count": 0 }]);
    let out = apply(k, &zero, &[]);
    assert!(!out.ok(), "count 0 stored:\n{}", out.stdout);
    assert!(
        out.stderr.contains("The NodePool \"gpu-zero\" is invalid: spec.platform.kubevirt.hostDevices[0].count: Invalid value: 0: spec.platform.kubevirt.hostDevices[0].count in body should be greater than or equal to 1"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("InvalidHostDeviceCount"), "{}", out.stderr);
}

/// A GET on the webhook's HTTPS listener, trusting its generated CA: (status, body).
fn https_get(webhook: &Webhook, path: &str) -> Result<(u16, String), String> {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(webhook.ca_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp =
        TcpStream::connect_timeout(&webhook.listen, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    // A server may close without close_notify: keep what arrived.
    let _ = tls.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line: {text}"))?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no body")?;
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// (11) The server's audit (`--audit-interval=2s`) lists a non-migratable NodePool in
/// `GET /v1/report` and in `live_migration_guard_objects`; a migratable one only in the metric.
#[test]
fn the_audit_reports_existing_nodepools_in_v1_report_and_the_objects_metric() {
    let Some(e) = env() else { return };
    let _t = traffic();
    let k = e.k;
    let ns = "e2e-report";
    namespace(k, ns, None);
    apply(k, &rwo_nodepool(ns, "at-risk"), &[]).expect_ok("apply rwo");
    apply(k, &migratable_nodepool(ns, "fine"), &[]).expect_ok("apply migratable");
    let hc = in_ns(
        fixture_value("hostedcluster-kubevirt-manual-storage-mapping.yaml"),
        ns,
        "rwo-mapping",
    );
    apply(k, &hc, &["--server-side", "--field-manager=e2e"]).expect_ok("apply HostedCluster");

    let report = poll(Duration::from_secs(30), "at-risk in /v1/report", || {
        let (status, body) = https_get(&e.webhook, "/v1/report")?;
        if status != 200 {
            return Err(format!("{status} {body}"));
        }
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        v["reports"]
            .as_array()
            .and_then(|rs| {
                rs.iter()
                    .find(|r| r["namespace"] == ns && r["name"] == "at-risk")
                    .cloned()
            })
            .ok_or(body)
    });
    assert_eq!(report["kind"], "NodePool");
    assert_eq!(report["verdict"], "NotMigratable");
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["reason"] == "DisksNotLiveMigratable"),
        "{report:#}"
    );
    let body = poll(Duration::from_secs(30), "the HostedCluster in /v1/report", || {
        let (_, body) = https_get(&e.webhook, "/v1/report")?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        let found = v["reports"].as_array().is_some_and(|rs| {
            rs.iter().any(|r| {
                r["kind"] == "HostedCluster"
                    && r["namespace"] == ns
                    && r["name"] == "rwo-mapping"
                    && r["verdict"] == "NotMigratable"
            })
        });
        if found { Ok(body) } else { Err(body) }
    });
    assert!(
        !body.contains("\"fine\""),
        "a migratable NodePool in the report: {body}"
    );

    let want = [
        format!(
            "live_migration_guard_objects{{kind=\"NodePool\",namespace=\"{ns}\",name=\"at-risk\",verdict=\"NotMigratable\"}} 1"
        ),
        format!(
            "live_migration_guard_objects{{kind=\"NodePool\",namespace=\"{ns}\",name=\"fine\",verdict=\"Migratable\"}} 1"
        ),
    ];
    poll(Duration::from_secs(30), "both NodePools in the metric", || {
        let metrics = e.webhook.metrics();
        let lines: Vec<&str> = metrics.lines().collect();
        if want.iter().all(|w| lines.contains(&w.as_str())) {
            Ok(())
        } else {
            Err(metrics
                .lines()
                .filter(|l| l.starts_with("live_migration_guard_objects"))
                .collect::<Vec<_>>()
                .join("\n"))
        }
    });
}

/// (9) A webhook that is down: with `failurePolicy: Ignore` the apply succeeds unchecked; with
/// `Fail` it fails with the API server's message. A configuration of its own, pointing at a
/// closed loopback port and selecting only this test's namespace.
#[test]
fn a_webhook_that_is_down_fails_open_with_ignore_and_closed_with_fail() {
    let Some(e) = env() else { return };
    let _t = traffic();
    let k = e.k;
    let ns = "e2e-down";
    namespace(k, ns, None);
    k.kubectl(&["label", "namespace", ns, "e2e-down=true"], None)
        .expect_ok("label");
    // Held (bound, not listening) for the whole test: refused, and no other process can take it.
    let (_closed, port) = common::closed_port();
    let config = |policy: &str| {
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": { "name": "e2e-down" },
            "webhooks": [{
                // The chart's webhook name (names are unique per configuration only).
                "name": "nodepools.live-migration-guard.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "timeoutSeconds": 5,
                "failurePolicy": policy,
                "clientConfig": {
                    "url": format!("https://127.0.0.1:{port}/validate/nodepools"),
                    "caBundle": common::b64(e.webhook.ca_pem.as_bytes()),
                },
                "namespaceSelector": { "matchLabels": { "e2e-down": "true" } },
                "rules": [{
                    "apiGroups": ["hypershift.openshift.io"],
                    "apiVersions": ["*"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["nodepools"],
                }],
            }],
        })
        .to_string()
    };
    struct DeleteConfig<'a>(&'a Cluster);
    impl Drop for DeleteConfig<'_> {
        fn drop(&mut self) {
            let _ = self.0.kubectl(
                &[
                    "delete",
                    "validatingwebhookconfiguration",
                    "e2e-down",
                    "--ignore-not-found",
                ],
                None,
            );
        }
    }
    let _delete = DeleteConfig(k);
    let np = migratable_nodepool(ns, "np");

    k.kubectl(&["apply", "-f", "-"], Some(&config("Fail")))
        .expect_ok("apply Fail configuration");
    // Dry runs (which call webhooks too) until the configuration is in the admission chain:
    // nothing is stored meanwhile.
    poll(Duration::from_secs(30), "Fail rejects", || {
        let out = apply(k, &np, &["--dry-run=server"]);
        if out.ok() { Err(out.stdout) } else { Ok(()) }
    });
    let failed = apply(k, &np, &[]);
    assert!(!failed.ok(), "admitted: {}", failed.stdout);
    let fail_message = format!(
        "Error from server (InternalError): error when creating \"STDIN\": Internal error occurred: failed calling webhook \"nodepools.live-migration-guard.io\": failed to call webhook: Post \"https://127.0.0.1:{port}/validate/nodepools?timeout=5s\": dial tcp 127.0.0.1:{port}: connect: connection refused\n"
    );
    assert_eq!(failed.stderr, fail_message);
    // The chart README shows this message, for a file and with the port left out.
    let readme = std::fs::read_to_string(root().join("charts/live-migration-guard/README.md")).unwrap();
    let shown = readme
        .split("<!-- webhook-down-fail -->")
        .nth(1)
        .and_then(|rest| rest.split("```console\n").nth(1))
        .and_then(|rest| rest.split("\n```").next())
        .expect("chart README has the webhook-down example");
    let shown: Vec<String> = shown
        .lines()
        .filter(|l| !l.starts_with('$'))
        .map(|l| {
            l.replace("\"nodepool.yaml\"", "\"STDIN\"")
                .replace("127.0.0.1:PORT", &format!("127.0.0.1:{port}"))
        })
        .collect();
    assert_eq!(shown, vec![fail_message.trim_end().to_owned()]);
    assert!(!exists(k, ns, "nodepool", "np"));

    k.kubectl(&["apply", "-f", "-"], Some(&config("Ignore")))
        .expect_ok("apply Ignore configuration");
    poll(Duration::from_secs(30), "Ignore admits", || {
        let out = apply(k, &np, &["--dry-run=server"]);
        if out.ok() { Ok(()) } else { Err(out.stderr) }
    });
    let ok = apply(k, &np, &[]);
    ok.expect_ok("apply under Ignore");
    assert_eq!(ok.stdout.trim(), "nodepool.hypershift.openshift.io/np created");
    assert_eq!(ok.stderr, "", "fail-open is silent for the user");
    // Only the API server's audit log records that the call failed open.
    let audit = k.dir().join("audit.log");
    poll(Duration::from_secs(10), "failed-open audit annotation", || {
        let log = std::fs::read_to_string(&audit).unwrap_or_default();
        log.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|ev| {
                ev["objectRef"]["namespace"] == ns
                    && ev["objectRef"]["name"] == "np"
                    && ev["verb"] == "create"
                    && ev["annotations"]["failed-open.validating.webhook.admission.k8s.io/round_0_index_0"]
                        == "nodepools.live-migration-guard.io"
            })
            .map(|_| ())
            .ok_or_else(|| {
                log.lines()
                    .filter(|l| l.contains(ns) && l.contains("failed-open"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
    });
}

/// A Secret volume as the kubelet lays it out: `DIR/..data` points at a timestamped folder with
/// the files, and `DIR/tls.crt`, `DIR/tls.key` point through `..data`. An update writes a new
/// folder and swaps `..data` with one rename, then removes the old folder.
struct SecretVolume {
    dir: PathBuf,
    version: u32,
}

impl SecretVolume {
    fn new(dir: PathBuf, pair: &live_migration_guard::certs::Generated) -> Self {
        use std::os::unix::fs::symlink;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut v = SecretVolume { dir, version: 0 };
        v.update(pair);
        for f in ["tls.crt", "tls.key"] {
            symlink(format!("..data/{f}"), v.dir.join(f)).unwrap();
        }
        v
    }

    fn update(&mut self, pair: &live_migration_guard::certs::Generated) {
        use std::os::unix::fs::symlink;
        self.version += 1;
        let name = format!("..2026_12_01_00_00_0{}.{}", self.version, std::process::id());
        let folder = self.dir.join(&name);
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("tls.crt"), &pair.tls_crt).unwrap();
        std::fs::write(folder.join("tls.key"), &pair.tls_key).unwrap();
        let old = std::fs::read_link(self.dir.join("..data")).ok();
        let tmp = self.dir.join("..data_tmp");
        symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }
}

/// (10) Certificate rotation while kubectl applies in a loop: a server reading its pair from a
/// kubelet-style Secret volume, a webhook configuration of its own (the chart's NodePool
/// webhook as rendered, `failurePolicy: Fail`, selecting only this test's namespace, which the
/// chart's configuration ignores). The rotation as the chart's modes do it: the caBundle first
/// holds old + new CA, then the pair is swapped through `..data`, then the bundle drops the old
/// CA. Every apply must succeed and be warned (so the webhook answered it), including those made
/// after the API server trusts only the new CA.
#[test]
fn certificate_rotation_while_applying_fails_no_apply() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(e) = env() else { return };
    let _t = traffic();
    let k = e.k;
    let ns = "e2e-rotation";
    namespace(k, ns, None);
    k.kubectl(
        &[
            "label",
            "namespace",
            ns,
            "live-migration-guard.io/ignore=true",
            "e2e-rotation=true",
        ],
        None,
    )
    .expect_ok("label");
    let names = ["127.0.0.1".to_owned()];
    let first = live_migration_guard::certs::generate(&names, 30).unwrap();
    let second = live_migration_guard::certs::generate(&names, 60).unwrap();
    let dir = k.dir().join("webhook-rotation-secret");
    let mut volume = SecretVolume::new(dir.clone(), &first);
    let webhook = Webhook::start_with_files(
        k,
        &kube::chart_service_account(),
        &[
            "--tls-cert",
            &dir.join("tls.crt").display().to_string(),
            "--tls-key",
            &dir.join("tls.key").display().to_string(),
            "--tls-reload-interval",
            "500ms",
        ],
        "rotation",
        &first.ca_crt,
    );
    webhook.wait_ready(Duration::from_secs(60));
    let expiry = || {
        webhook
            .metrics()
            .lines()
            .find(|l| l.starts_with("live_migration_guard_certificate_expiry_timestamp_seconds "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .expect("expiry metric")
    };
    let first_expiry = expiry();

    let mut config = chart_objects(&webhook, &["ValidatingWebhookConfiguration"])["items"][0].clone();
    config["metadata"] = json!({ "name": "e2e-rotation" });
    let hooks = config["webhooks"].as_array_mut().unwrap();
    hooks.retain(|h| h["name"] == "nodepools.live-migration-guard.io");
    hooks[0]["failurePolicy"] = json!("Fail");
    hooks[0]["namespaceSelector"] = json!({ "matchLabels": { "e2e-rotation": "true" } });
    let with_bundle = |pems: &[&str]| {
        let mut c = config.clone();
        c["webhooks"][0]["clientConfig"]["caBundle"] = json!(common::b64(pems.concat().as_bytes()));
        c.to_string()
    };
    struct DeleteConfig<'a>(&'a Cluster);
    impl Drop for DeleteConfig<'_> {
        fn drop(&mut self) {
            let _ = self.0.kubectl(
                &[
                    "delete",
                    "validatingwebhookconfiguration",
                    "e2e-rotation",
                    "--ignore-not-found",
                ],
                None,
            );
        }
    }
    let _delete = DeleteConfig(k);
    k.kubectl(&["apply", "-f", "-"], Some(&with_bundle(&[&first.ca_crt])))
        .expect_ok("webhook configuration, first CA");
    poll(Duration::from_secs(30), "the rotation webhook is called", || {
        let out = apply(k, &rwo_nodepool(ns, "probe"), &["--dry-run=server"]);
        if out.stderr.contains("Warning: DisksNotLiveMigratable") {
            Ok(())
        } else {
            Err(out.stderr)
        }
    });

    // The loop: a new NodePool per apply (a CREATE always reaches the webhook).
    let stop = AtomicBool::new(false);
    let phase = std::sync::atomic::AtomicU32::new(0);
    let results = std::thread::scope(|s| {
        let looper = s.spawn(|| {
            let mut results = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let at = phase.load(Ordering::SeqCst);
                let out = apply(k, &rwo_nodepool(ns, &format!("np-{i}")), &[]);
                results.push((at, out));
            }
            results
        });
        std::thread::sleep(Duration::from_secs(3));
        // 1: the API server trusts old and new CA.
        k.kubectl(
            &["apply", "-f", "-"],
            Some(&with_bundle(&[&first.ca_crt, &second.ca_crt])),
        )
        .expect_ok("bundle old + new");
        phase.store(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(3));
        // 2: the kubelet swaps the Secret's files; the server reloads them.
        volume.update(&second);
        poll(Duration::from_secs(10), "the server reloads the new pair", || {
            let now = expiry();
            if now > first_expiry {
                Ok(())
            } else {
                Err(format!("expiry {now}"))
            }
        });
        phase.store(2, Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(3));
        // 3: only the new CA is trusted.
        k.kubectl(&["apply", "-f", "-"], Some(&with_bundle(&[&second.ca_crt])))
            .expect_ok("bundle new only");
        // The API server picks the configuration up through an informer: give it a moment
        // before counting applies as made under the new CA only.
        std::thread::sleep(Duration::from_secs(2));
        phase.store(3, Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(4));
        stop.store(true, Ordering::SeqCst);
        looper.join().expect("apply loop")
    });
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, out)| !out.ok() || !out.stderr.contains("Warning: DisksNotLiveMigratable"))
        .map(|(at, out)| format!("phase {at}: {} {}", out.stdout, out.stderr))
        .collect();
    let per_phase: Vec<usize> = (0..4)
        .map(|p| results.iter().filter(|(at, _)| *at == p).count())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} applies failed or were not checked:\n{}",
        failed.len(),
        results.len(),
        failed.join("\n")
    );
    assert!(
        per_phase.iter().all(|&n| n >= 3),
        "too few applies in some phase of the rotation: {per_phase:?}"
    );
    let reloads = webhook
        .metrics()
        .lines()
        .filter(|l| l.starts_with("live_migration_guard_certificate_reloads_total{"))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    assert!(
        reloads
            .iter()
            .any(|l| l.contains("result=\"reloaded\"") && !l.ends_with(" 0")),
        "{reloads:?}"
    );
    eprintln!(
        "rotation: {} applies, per phase {per_phase:?}, 0 failed",
        results.len()
    );
}
