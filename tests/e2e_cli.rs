//! End to end: `audit` and `evaluate --cluster` against the real kube-apiserver test cluster
//! (`tests/common/kube.rs`), as admin, as token users with only read permissions, with some
//! missing; and `evaluate --admission` compared with what the real kubectl prints through the
//! real API server and the running webhook. They skip with one line when the cluster is not
//! built (a failure with `LMG_REQUIRE_KUBE=1`).

mod common;

use std::io::Write as _;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::kube::{self, Cluster, Token};
use common::{fixture_value, with};
use serde_json::{Value, json};

const RELEASE_IMAGE: &str = "quay.io/openshift-release-dev/ocp-release:4.17.0-x86_64";
/// The namespace of the README's audit example.
const NS: &str = "clusters";
/// A second namespace, with one migratable NodePool.
const NS_B: &str = "e2e-cli-b";
/// A namespace without NodePools.
const NS_EMPTY: &str = "e2e-cli-empty";
/// A HostedCluster whose VMs run on an "external" infrastructure cluster: this one, through a
/// kubeconfig Secret.
const NS_INFRA: &str = "e2e-cli-infra";
/// Namespaces whose NodePools the webhook of the admission comparison sees (no mode label:
/// the server's deny; labelled warn).
const NS_HOOK_DENY: &str = "e2e-cli-hook-deny";
const NS_HOOK_WARN: &str = "e2e-cli-hook-warn";

/// `list` on every resource `audit` reads, cluster-wide.
fn reader() -> Token {
    Token::user("cli-reader-token", "cli-reader", &["cli-readers"])
}

/// The same, without `list storageclasses`.
fn no_classes() -> Token {
    Token::user("cli-nosc-token", "cli-nosc", &[])
}

/// The cluster-scoped facts, and NodePools and HostedClusters only in namespace `clusters`.
fn namespace_reader() -> Token {
    Token::user("cli-ns-reader-token", "cli-ns-reader", &[])
}

struct Env {
    k: Cluster,
    _webhook: Webhook,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cluster of this test binary, set up once; `None` (after the skip line) without the
/// binaries.
fn env() -> Option<&'static Env> {
    static ENV: OnceLock<Result<Env, String>> = OnceLock::new();
    if !kube::available() {
        return None;
    }
    let env = ENV.get_or_init(|| {
        std::panic::catch_unwind(set_up).map_err(|p| {
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

fn apply(k: &Cluster, obj: &Value) {
    k.kubectl(
        &["apply", "--server-side", "--field-manager=e2e-cli", "-f", "-"],
        Some(&obj.to_string()),
    )
    .expect_ok(&format!("apply {}", obj["metadata"]["name"]));
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

/// A NodePool on `class`, two replicas.
fn nodepool_on(ns: &str, name: &str, class: &str) -> Value {
    in_ns(
        with(
            fixture_value("nodepool-kubevirt-minimal.yaml"),
            &[
                (
                    "/spec/platform/kubevirt/rootVolume/persistent/storageClass",
                    json!(class),
                ),
                ("/spec/release/image", json!(RELEASE_IMAGE)),
                ("/spec/replicas", json!(2)),
            ],
        ),
        ns,
        name,
    )
}

fn set_up() -> Env {
    let k = Cluster::start(&[reader(), no_classes(), namespace_reader()]).expect("binaries present");
    k.install_crds();
    for ns in [NS, NS_B, NS_EMPTY, NS_INFRA, NS_HOOK_DENY, NS_HOOK_WARN] {
        k.kubectl(&["create", "namespace", ns], None)
            .expect_ok("create namespace");
    }
    // Facts: the RWO-only default class gp3-csi, the RWX Ceph RBD class (CDI's built-in table)
    // and nfs-x, whose provisioner only its StorageProfile describes (RWX): a NodePool on it is
    // Migratable only when the StorageProfiles were read.
    for f in [
        "storageclass-gp3-csi-aws-ebs.yaml",
        "storageclass-rook-ceph-block-rbd.yaml",
    ] {
        let text = std::fs::read_to_string(common::fixture_path(f)).unwrap();
        for doc in live_migration_guard::facts::load::split_documents(text.as_bytes(), f).unwrap() {
            if doc["kind"] == "StorageClass" {
                apply(&k, &doc);
            }
        }
    }
    apply(
        &k,
        &json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": "nfs-x"}, "provisioner": "example.com/nfs"}),
    );
    apply(
        &k,
        &json!({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "StorageProfile",
                "metadata": {"name": "nfs-x"}, "spec": {}}),
    );
    let status = json!({"status": {"provisioner": "example.com/nfs", "storageClass": "nfs-x",
        "claimPropertySets": [{"accessModes": ["ReadWriteMany"], "volumeMode": "Filesystem"}]}});
    k.kubectl(
        &[
            "patch",
            "storageprofile",
            "nfs-x",
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ],
        None,
    )
    .expect_ok("StorageProfile status");

    apply(&k, &rwo_nodepool(NS, "rwo"));
    apply(&k, &nodepool_on(NS, "on-profile", "nfs-x"));
    apply(
        &k,
        &in_ns(
            fixture_value("hostedcluster-kubevirt-manual-storage-mapping.yaml"),
            NS,
            "manual",
        ),
    );
    apply(
        &k,
        &json!({"apiVersion": "hypershift.openshift.io/v1beta1", "kind": "NodePool",
            "metadata": {"name": "not-kubevirt", "namespace": NS},
            "spec": {"clusterName": "other", "management": {"upgradeType": "Replace"},
                     "platform": {"type": "None"}, "release": {"image": RELEASE_IMAGE}, "replicas": 1}}),
    );
    apply(&k, &nodepool_on(NS_B, "fine", "rook-ceph-block"));
    // the external infrastructure is this cluster again, as its admin
    k.kubectl(
        &[
            "create",
            "secret",
            "generic",
            "infra-kubeconfig",
            "-n",
            NS_INFRA,
            &format!("--from-file=kubeconfig={}", k.kubeconfig().display()),
        ],
        None,
    )
    .expect_ok("infra kubeconfig Secret");
    apply(
        &k,
        &with(
            in_ns(
                fixture_value("hostedcluster-kubevirt-manual-storage-mapping.yaml"),
                NS_INFRA,
                "external",
            ),
            &[
                (
                    "/spec/platform/kubevirt/storageDriver/manual/storageClassMapping",
                    json!([{"guestStorageClassName": "ceph", "infraStorageClassName": "rook-ceph-block"}]),
                ),
                (
                    "/spec/platform/kubevirt/credentials",
                    json!({"infraKubeConfigSecret": {"name": "infra-kubeconfig", "key": "kubeconfig"},
                           "infraNamespace": "guests"}),
                ),
            ],
        ),
    );

    // RBAC: the three token users
    let rule = |resources: &str, group: &str| json!({"apiGroups": [group], "resources": resources.split(',').collect::<Vec<_>>(), "verbs": ["list"]});
    let facts_rules = vec![
        rule("storageclasses", "storage.k8s.io"),
        rule("storageprofiles", "cdi.kubevirt.io"),
        rule("kubevirts", "kubevirt.io"),
    ];
    let hypershift = rule("nodepools,hostedclusters", "hypershift.openshift.io");
    let mut all = facts_rules.clone();
    all.push(hypershift.clone());
    let mut no_sc = facts_rules[1..].to_vec();
    no_sc.push(hypershift.clone());
    let mut rbac = Vec::new();
    for (name, rules, user) in [
        ("cli-audit", all, "cli-reader"),
        ("cli-audit-no-storageclasses", no_sc, "cli-nosc"),
        ("cli-facts", facts_rules, "cli-ns-reader"),
    ] {
        rbac.push(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name}, "rules": rules}),
        );
        rbac.push(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}),
        );
    }
    rbac.push(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "cli-hypershift", "namespace": NS}, "rules": [hypershift]}),
    );
    rbac.push(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "cli-hypershift", "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cli-hypershift"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "cli-ns-reader"}]}),
    );
    let list = json!({"apiVersion": "v1", "kind": "List", "items": rbac});
    k.kubectl(&["apply", "-f", "-"], Some(&list.to_string()))
        .expect_ok("RBAC");
    // The RBAC authorizer reads bindings through an informer: wait until each one applies.
    for (token, args) in [
        (reader(), &["get", "nodepools", "-A"][..]),
        (no_classes(), &["get", "nodepools", "-A"]),
        (namespace_reader(), &["get", "nodepools", "-n", NS]),
        (namespace_reader(), &["get", "storageclasses"]),
    ] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !k.kubectl_as(&token, args, None).ok() {
            assert!(Instant::now() < deadline, "RBAC of {} not effective", token.user);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let webhook = Webhook::start(&k);
    Env { k, _webhook: webhook }
}

/// The built binary with `args`, `HOME` and `KUBECONFIG` out of the way.
fn lmg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_live-migration-guard"))
        .args(args)
        .current_dir(root())
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn admin(e: &Env) -> String {
    e.k.kubeconfig().display().to_string()
}

/// (namespace, kind, name) → verdict, of the reports in `namespaces`.
fn verdicts(v: &Value, namespaces: &[&str]) -> Vec<(String, String, String, String)> {
    let mut out: Vec<_> = v["reports"]
        .as_array()
        .unwrap_or_else(|| panic!("no reports: {v}"))
        .iter()
        .filter(|r| namespaces.iter().any(|ns| r["namespace"] == *ns))
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (s("namespace"), s("kind"), s("name"), s("verdict"))
        })
        .collect();
    out.sort();
    out
}

fn row(ns: &str, kind: &str, name: &str, verdict: &str) -> (String, String, String, String) {
    (ns.into(), kind.into(), name.into(), verdict.into())
}

/// `audit -A -o json` as admin: every KubeVirt object with its verdict (the non-KubeVirt one
/// counted on stderr), each report's source the cluster, exit 1 (something NotMigratable); the
/// StorageProfile was read (on-profile is Migratable only through it).
#[test]
fn audit_all_namespaces_as_json() {
    let Some(e) = env() else { return };
    let o = lmg(&["audit", "--kubeconfig", &admin(e), "-A", "-o", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        verdicts(&v, &[NS, NS_B]),
        [
            row(NS, "HostedCluster", "manual", "NotMigratable"),
            row(NS, "NodePool", "on-profile", "Migratable"),
            row(NS, "NodePool", "rwo", "NotMigratable"),
            row(NS_B, "NodePool", "fine", "Migratable"),
        ]
    );
    for r in v["reports"].as_array().unwrap() {
        assert_eq!(r["source"], json!({"cluster": e.k.server}), "{r}");
    }
    let err = text(&o.stderr);
    assert!(
        err.contains("note: 1 NodePool(s)/HostedCluster(s) of other platforms not listed"),
        "{err}"
    );
    assert!(
        err.contains("does not serve KubeVirts (kubevirt.io): the CRD is not installed"),
        "{err}"
    );
    // --fail-on unknown changes nothing here; -q keeps only the problems
    let o = lmg(&["audit", "--kubeconfig", &admin(e), "-A", "-o", "json", "-q"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        verdicts(&v, &[NS, NS_B]),
        [
            row(NS, "HostedCluster", "manual", "NotMigratable"),
            row(NS, "NodePool", "rwo", "NotMigratable"),
        ]
    );
    assert_eq!(text(&o.stderr), "", "no notes with -q");
}

/// The table (`-n`: no NAMESPACE column, as kubectl), wide, `-A`, an empty namespace, YAML,
/// JUnit and the progress lines of `-v`.
#[test]
fn audit_tables_namespaces_and_progress() {
    let Some(e) = env() else { return };
    let kc = admin(e);
    let o = lmg(&["audit", "--kubeconfig", &kc, "-n", NS_B]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "KIND       NAME   VERDICT      REASON   FIX\nNodePool   fine   Migratable   -        -\n"
    );
    assert_eq!(
        text(&o.stderr),
        format!(
            "note: {} does not serve KubeVirts (kubevirt.io): the CRD is not installed\n1 object(s): 0 not migratable, 0 unknown, 1 migratable, 0 not applicable\n",
            e.k.server
        )
    );

    let o = lmg(&["audit", "--kubeconfig", &kc, "-A", "-o", "wide"]);
    assert_eq!(o.status.code(), Some(1));
    let table = text(&o.stdout);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "KIND",
            "NAME",
            "VERDICT",
            "CONDITION",
            "REASON",
            "FIELD",
            "FIX"
        ]
    );
    let rwo = table
        .lines()
        .find(|l| l.starts_with(&format!("{NS} ")) && l.contains(" rwo "))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = rwo.split_whitespace().collect();
    assert_eq!(
        &cells[..7],
        [
            NS,
            "NodePool",
            "rwo",
            "NotMigratable",
            "False/DisksNotLiveMigratable",
            "DisksNotLiveMigratable",
            "spec.platform.kubevirt.rootVolume.persistent.accessModes"
        ],
        "{rwo}"
    );
    assert!(rwo.ends_with("(or set [ReadWriteMany])"), "{rwo}");

    // the context's namespace (default) holds nothing: said on stderr, exit 0
    let o = lmg(&["audit", "--kubeconfig", &kc]);
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout.is_empty());
    assert!(
        text(&o.stderr).contains(
            "No KubeVirt NodePools or HostedClusters found in namespace default (-A lists every namespace)."
        ),
        "{}",
        text(&o.stderr)
    );
    let o = lmg(&["audit", "--kubeconfig", &kc, "-n", NS_EMPTY, "-o", "json"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        serde_json::from_slice::<Value>(&o.stdout).unwrap(),
        json!({"reports": []})
    );

    // YAML is the JSON document; JUnit has one testcase per object
    let json_doc: Value =
        serde_json::from_slice(&lmg(&["audit", "--kubeconfig", &kc, "-n", NS, "-o", "json"]).stdout).unwrap();
    let yaml = lmg(&["audit", "--kubeconfig", &kc, "-n", NS, "-o", "yaml"]);
    let yaml_doc: Value = serde_saphyr::from_str(&text(&yaml.stdout)).unwrap();
    assert_eq!(yaml_doc, json_doc);
    let junit = text(&lmg(&["audit", "--kubeconfig", &kc, "-n", NS, "-o", "junit"]).stdout);
    assert!(
        junit.contains(&format!(
            "<testsuite name=\"live-migration-guard audit {}\" tests=\"3\" failures=\"2\" errors=\"0\" skipped=\"0\">",
            e.k.server
        )),
        "{junit}"
    );
    assert!(
        junit.contains(&format!(
            "<testcase classname=\"NodePool/{NS}\" name=\"on-profile\"/>"
        )),
        "{junit}"
    );

    // -v: one progress line per list (not a terminal here, so only with -v)
    let o = lmg(&["audit", "--kubeconfig", &kc, "-n", NS, "-v"]);
    let err = text(&o.stderr);
    let progress: Vec<&str> = err.lines().filter(|l| l.starts_with("listed ")).collect();
    assert_eq!(
        progress,
        [
            "listed 3 StorageClasses",
            "listed 1 StorageProfiles",
            "listed 1 HostedClusters",
            "listed 3 NodePools",
        ],
        "{err}"
    );
    let o = lmg(&["audit", "--kubeconfig", &kc, "-n", NS]);
    assert!(
        !text(&o.stderr).contains("listed "),
        "no progress without -v off a terminal"
    );
}

/// The README's audit example is what `audit -n clusters` prints for these objects.
#[test]
fn readme_audit_example() {
    let Some(e) = env() else { return };
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let marker = "<!-- audit-example -->\n```console\n$ ";
    let start = readme.find(marker).expect("audit example") + marker.len();
    let block = &readme[start..];
    let block = &block[..block.find("```").unwrap()];
    let (command, shown) = block.split_once('\n').unwrap();
    assert_eq!(command, "live-migration-guard audit -n clusters");
    let o = lmg(&["audit", "--kubeconfig", &admin(e), "-n", NS]);
    assert_eq!(text(&o.stdout), shown);
}

/// A user with exactly the documented read permissions sees the same verdicts as admin; one
/// lacking `list storageclasses` gets one line naming the resource and the permission; one
/// with the permissions in one namespace audits it, and `-A` names what is missing.
#[test]
fn audit_as_token_users_with_read_only_and_missing_permissions() {
    let Some(e) = env() else { return };
    let admin_view: Value =
        serde_json::from_slice(&lmg(&["audit", "--kubeconfig", &admin(e), "-A", "-o", "json"]).stdout)
            .unwrap();
    let as_user = |t: &Token, args: &[&str]| {
        let kc = e.k.kubeconfig_for(t).display().to_string();
        lmg(&[&["audit", "--kubeconfig", &kc][..], args].concat())
    };
    let o = as_user(&reader(), &["-A", "-o", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(verdicts(&v, &[NS, NS_B]), verdicts(&admin_view, &[NS, NS_B]));
    assert_eq!(
        v["reports"], admin_view["reports"],
        "the same reports, findings and all"
    );

    let o = as_user(&no_classes(), &["-A"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    assert_eq!(
        text(&o.stderr),
        "error: listing StorageClasses: storageclasses.storage.k8s.io is forbidden: User \"cli-nosc\" cannot list resource \"storageclasses\" in API group \"storage.k8s.io\" at the cluster scope; grant RBAC \"list\" on storageclasses.storage.k8s.io at the cluster scope (every permission needed: audit --help)\n"
    );

    let o = as_user(&namespace_reader(), &["-n", NS, "-o", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(verdicts(&v, &[NS]), verdicts(&admin_view, &[NS]));
    let o = as_user(&namespace_reader(), &["-A"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr),
        "error: listing HostedClusters: hostedclusters.hypershift.openshift.io is forbidden: User \"cli-ns-reader\" cannot list resource \"hostedclusters\" in API group \"hypershift.openshift.io\" at the cluster scope; grant RBAC \"list\" on hostedclusters.hypershift.openshift.io at the cluster scope (every permission needed: audit --help)\n"
    );
    // its own namespace of the context is default, where it may not list: named with the namespace
    let o = as_user(&namespace_reader(), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr)
            .contains("grant RBAC \"list\" on hostedclusters.hypershift.openshift.io in namespace default"),
        "{}",
        text(&o.stderr)
    );
}

/// `--infra-credentials=read` reads the HostedCluster's infra kubeconfig Secret and lists that
/// cluster's facts, as `serve` does: Migratable; without it (or without `get secrets`) the
/// verdict is Unknown with the reason, which fails only with `--fail-on unknown`.
#[test]
fn audit_reads_external_infrastructure_with_infra_credentials() {
    let Some(e) = env() else { return };
    let kc = admin(e);
    let verdict = |o: &Output| -> (String, Vec<String>) {
        let v: Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|err| panic!("{err}: {}", text(&o.stderr)));
        let r = &v["reports"][0];
        let messages = r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                format!(
                    "{}: {}",
                    f["reason"].as_str().unwrap(),
                    f["message"].as_str().unwrap()
                )
            })
            .collect();
        (r["verdict"].as_str().unwrap().to_owned(), messages)
    };
    let o = lmg(&[
        "audit",
        "--kubeconfig",
        &kc,
        "-n",
        NS_INFRA,
        "-o",
        "json",
        "--infra-credentials",
        "read",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let (v, findings) = verdict(&o);
    assert_eq!(v, "Migratable", "{findings:?}");

    let o = lmg(&["audit", "--kubeconfig", &kc, "-n", NS_INFRA, "-o", "json"]);
    assert_eq!(o.status.code(), Some(0), "Unknown does not fail by default");
    let (v, findings) = verdict(&o);
    assert_eq!(v, "Unknown");
    assert!(
        findings
            .iter()
            .any(|f| f.starts_with("ExternalInfraFactsUnavailable: ")),
        "{findings:?}"
    );
    let o = lmg(&[
        "audit",
        "--kubeconfig",
        &kc,
        "-n",
        NS_INFRA,
        "--fail-on",
        "unknown",
    ]);
    assert_eq!(o.status.code(), Some(1));

    // the read-only user may not get the Secret: Unknown, saying so
    let reader_kc = e.k.kubeconfig_for(&reader()).display().to_string();
    let o = lmg(&[
        "audit",
        "--kubeconfig",
        &reader_kc,
        "-n",
        NS_INFRA,
        "-o",
        "json",
        "--infra-credentials",
        "read",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let (v, findings) = verdict(&o);
    assert_eq!(v, "Unknown");
    assert!(
        findings.iter().any(|f| f.contains(&format!(
            "reading Secret {NS_INFRA}/infra-kubeconfig is forbidden (RBAC)"
        ))),
        "{findings:?}"
    );

    // evaluate --cluster reads the credentials of a HostedCluster in the files the same way
    let hc = lmg(&["audit", "--kubeconfig", &kc, "-n", NS_INFRA, "-o", "json"]);
    assert!(hc.status.success());
    let stored = e.k.kubectl(
        &["get", "hostedcluster", "external", "-n", NS_INFRA, "-o", "json"],
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hc.json");
    std::fs::write(&file, &stored.expect_ok("get HostedCluster").stdout).unwrap();
    let file = file.to_str().unwrap();
    let o = lmg(&[
        "evaluate",
        "--cluster",
        "--kubeconfig",
        &kc,
        "--infra-credentials",
        "read",
        "-o",
        "json",
        file,
    ]);
    assert_eq!(verdict(&o).0, "Migratable", "{}", text(&o.stderr));
    let o = lmg(&["evaluate", "--infra-credentials", "read", file]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr),
        "error: --infra-credentials=read reads Secrets of a live cluster: add --cluster\n"
    );
}

/// `evaluate --cluster` judges local files against the live facts: the StorageProfile decides
/// nfs-x, the stored HostedCluster is paired with the file's NodePool; offline the same file is
/// Unknown. A forbidden list is the same one line as `audit`'s.
#[test]
fn evaluate_cluster_uses_the_live_facts() {
    let Some(e) = env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut np = nodepool_on(NS, "from-git", "nfs-x");
    np["spec"]["clusterName"] = json!("manual");
    let file = dir.path().join("np.json");
    std::fs::write(&file, np.to_string()).unwrap();
    let file = file.to_str().unwrap();
    let o = lmg(&[
        "evaluate",
        "--cluster",
        "--kubeconfig",
        &admin(e),
        "-o",
        "json",
        file,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &v["reports"][0];
    assert_eq!(r["verdict"], "Migratable", "{r}");
    assert_eq!(r["source"], json!({"file": file, "document": 1, "item": null}));
    let reasons: Vec<&str> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["reason"].as_str())
        .collect();
    assert!(
        !reasons.contains(&"HostedClusterNotFound"),
        "paired with the stored HostedCluster: {reasons:?}"
    );

    let o = lmg(&["evaluate", "-o", "json", file]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["reports"][0]["verdict"], "Unknown",
        "offline, nothing is known of nfs-x"
    );

    let kc = e.k.kubeconfig_for(&no_classes()).display().to_string();
    let o = lmg(&["evaluate", "--cluster", "--kubeconfig", &kc, file]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    assert!(
        text(&o.stderr).starts_with(
            "error: listing StorageClasses: storageclasses.storage.k8s.io is forbidden: User \"cli-nosc\""
        ),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(text(&o.stderr).lines().count(), 1);
}

/// `evaluate --admission` prints what the real kubectl prints through the real API server and
/// the running webhook (`serve --cluster on --mode deny`, this cluster's facts), byte for byte
/// on stderr: a denial with one cause, one with two causes (kubectl's `* ` list), and the
/// warning of a namespace labelled warn; the exit codes agree.
#[test]
fn admission_simulation_prints_what_kubectl_prints() {
    let Some(e) = env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let two_causes = with(
        rwo_nodepool(NS_HOOK_DENY, "two-causes"),
        &[(
            "/spec/platform/kubevirt/hostDevices",
            json!([{"deviceName": "nvidia-a100"}]),
        )],
    );
    let cases = [
        ("one-cause", rwo_nodepool(NS_HOOK_DENY, "rwo"), 1),
        ("two-causes", two_causes, 1),
        ("warned", rwo_nodepool(NS_HOOK_WARN, "rwo"), 0),
        ("allowed", nodepool_on(NS_HOOK_DENY, "fine", "rook-ceph-block"), 0),
    ];
    for (name, obj, code) in cases {
        let file = dir.path().join(format!("{name}.json"));
        std::fs::write(&file, obj.to_string()).unwrap();
        let file = file.to_str().unwrap();
        let real = e.k.kubectl(&["apply", "--dry-run=server", "-f", file], None);
        let ours = lmg(&[
            "evaluate",
            "--cluster",
            "--kubeconfig",
            &admin(e),
            "--admission",
            "--mode",
            "deny",
            "-q",
            file,
        ]);
        assert_eq!(
            text(&ours.stderr),
            real.stderr,
            "{name}: kubectl printed\n{}\nwe printed\n{}",
            real.stderr,
            text(&ours.stderr)
        );
        assert_eq!(real.status.code(), Some(code), "{name}: {}", real.stderr);
        assert_eq!(ours.status.code(), Some(code), "{name}");
        if name == "two-causes" {
            assert!(real.stderr.contains("is invalid: \n* "), "{}", real.stderr);
        }
        if code == 0 {
            // kubectl's success line, ours marked as a simulation
            let ours = lmg(&[
                "evaluate",
                "--cluster",
                "--kubeconfig",
                &admin(e),
                "--admission",
                "--mode",
                "deny",
                file,
            ]);
            let real_line = real.stdout.trim_end().trim_end_matches(" (server dry run)");
            assert_eq!(
                text(&ours.stdout),
                format!("{real_line} (admission simulated: nothing was sent)\n"),
                "{name}"
            );
        }
    }
}

/// The README's audit block and plugin block run as written: `HOME` a scratch folder,
/// `KUBECONFIG` the test cluster's admin, the built binary standing in for `cargo install`.
#[test]
fn readme_audit_and_plugin_blocks_run_as_written() {
    let Some(e) = env() else { return };
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let block = |first: &str| -> String {
        let start = readme
            .find(&format!("```sh\n{first}"))
            .unwrap_or_else(|| panic!("README has no sh block starting with {first:?}"))
            + "```sh\n".len();
        let rest = &readme[start..];
        rest[..rest.find("```").unwrap()].to_owned()
    };
    let home = tempfile::tempdir().unwrap();
    let cargo_bin = home.path().join(".cargo/bin");
    std::fs::create_dir_all(&cargo_bin).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_live-migration-guard"),
        cargo_bin.join("live-migration-guard"),
    )
    .unwrap();
    let run = |script: &str| {
        let path = format!(
            "{}:{}:{}:/usr/bin:/bin",
            home.path().join(".local/bin").display(),
            cargo_bin.display(),
            root().join(".tools/bin").display()
        );
        Command::new("timeout")
            .args(["60", "bash", "-c", script])
            .current_dir(home.path())
            .env("HOME", home.path())
            .env("PATH", path)
            .env("KUBECONFIG", e.k.kubeconfig())
            .output()
            .unwrap()
    };

    let audit = block("live-migration-guard audit -A ");
    let o = run(&audit);
    let out = text(&o.stdout);
    let starts = |out: &str, cells: &[&str]| {
        out.lines()
            .any(|l| l.split_whitespace().take(cells.len()).eq(cells.iter().copied()))
    };
    assert!(
        out.lines()
            .next()
            .is_some_and(|l| l.split_whitespace().take(2).eq(["NAMESPACE", "KIND"])),
        "{out}\n{}",
        text(&o.stderr)
    );
    assert!(starts(&out, &[NS, "NodePool", "rwo", "NotMigratable"]), "{out}");
    assert!(out.contains("CONDITION"), "the -o wide line ran: {out}");
    let xml = std::fs::read_to_string(home.path().join("audit.xml")).unwrap();
    assert!(
        xml.starts_with("<?xml") && xml.contains("classname=\"NodePool/clusters\" name=\"rwo\""),
        "{xml}"
    );

    let plugin = block("cargo install --path .\nmkdir -p ~/.local/bin");
    assert!(
        plugin.ends_with("kubectl live-migration-guard audit -A\n"),
        "{plugin}"
    );
    let script: String = plugin.lines().skip(1).map(|l| format!("{l}\n")).collect();
    let o = run(&script);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        starts(&out, &["NAMESPACE", "KIND"]) && starts(&out, &[NS, "NodePool", "rwo", "NotMigratable"]),
        "{out}"
    );
    assert!(
        home.path()
            .join(".local/bin/kubectl-live_migration_guard")
            .exists()
    );
}

/// `serve --cluster on --mode deny` as admin, registered for NodePools of the two hook
/// namespaces; run through `sh` so it stops when this process exits (the shell waits for its
/// standard input, a pipe this process holds, to close).
struct Webhook {
    shell: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
}

impl Webhook {
    fn start(k: &Cluster) -> Webhook {
        let dir = k.dir().join("webhook-cli");
        std::fs::create_dir_all(&dir).unwrap();
        let ca_out = dir.join("ca.crt");
        let log = dir.join("serve.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut shell = common::serve_log_env(&mut Command::new("sh"))
            .arg("-c")
            .arg(r#""$@" </dev/null & child=$!; read -r _ || true; kill -TERM "$child" 2>/dev/null; wait "$child""#)
            .arg("sh")
            .arg(env!("CARGO_BIN_EXE_live-migration-guard"))
            .args(["serve", "--cluster", "on", "--mode", "deny", "--kubeconfig"])
            .arg(k.kubeconfig())
            .args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"])
            .arg("--ca-bundle-out")
            .arg(&ca_out)
            .args(["--shutdown-delay", "0s", "--shutdown-timeout", "2s"])
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("sh runs");
        let stdin = shell.stdin.take();
        let webhook = Webhook {
            shell: Mutex::new(shell),
            stdin: Mutex::new(stdin),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        // The addresses it bound, from its log.
        let common::Bound { listen, ops, .. } = common::wait_bound(&log, Duration::from_secs(60), || {
            webhook.shell.lock().unwrap().try_wait().ok().flatten()
        })
        .unwrap_or_else(|e| panic!("{e}:\n{}", kube::tail(&log, 40)));
        let ready = || -> bool {
            let Ok(mut s) = TcpStream::connect_timeout(&ops, Duration::from_secs(1)) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            if write!(s, "GET /readyz HTTP/1.0\r\nHost: x\r\n\r\n").is_err() {
                return false;
            }
            let mut answer = String::new();
            let _ = std::io::Read::read_to_string(&mut s, &mut answer);
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
        };
        while !ready() {
            assert!(
                Instant::now() < deadline,
                "serve not ready within 60 s:\n{}",
                kube::tail(&log, 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let ca = std::fs::read(&ca_out).unwrap();
        // kube-apiserver names the webhook in a denial: the chart's name, in one configuration
        // per namespace
        let hook = |ns: &str| {
            json!({
                "name": "nodepools.live-migration-guard.io",
                "clientConfig": {"url": format!("https://{listen}/validate/nodepools"), "caBundle": common::b64(&ca)},
                "rules": [{"apiGroups": ["hypershift.openshift.io"], "apiVersions": ["v1beta1"],
                           "operations": ["CREATE", "UPDATE"], "resources": ["nodepools"], "scope": "Namespaced"}],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
            })
        };
        let configs: Vec<Value> = [NS_HOOK_DENY, NS_HOOK_WARN]
            .iter()
            .map(|ns| {
                json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                       "metadata": {"name": format!("live-migration-guard-{ns}")}, "webhooks": [hook(ns)]})
            })
            .collect();
        let list = json!({"apiVersion": "v1", "kind": "List", "items": configs});
        k.kubectl(&["apply", "-f", "-"], Some(&list.to_string()))
            .expect_ok("webhook configuration");
        k.kubectl(
            &[
                "label",
                "namespace",
                NS_HOOK_WARN,
                "live-migration-guard.io/mode=warn",
            ],
            None,
        )
        .expect_ok("label");
        // The configuration reaches the admission chain through an informer, the label the
        // server through its watch: poll dry runs until both apply.
        let probe = |ns: &str| {
            let obj = rwo_nodepool(ns, "probe");
            k.kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&obj.to_string()))
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let deny = probe(NS_HOOK_DENY);
            let warn = probe(NS_HOOK_WARN);
            if !deny.ok()
                && deny.stderr.contains("is invalid: ")
                && warn.ok()
                && warn.stderr.contains("Warning: DisksNotLiveMigratable")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the webhook is not called as configured after 30 s:\n{}\n{}\n{}",
                deny.stderr,
                warn.stderr,
                kube::tail(&log, 40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        webhook
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
