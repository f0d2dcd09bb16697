//! End to end: the chart installed with the project's pinned `helm` into the real kube-apiserver
//! test cluster, in each TLS mode. The API server validates every object (schemas, the
//! ValidatingWebhookConfiguration and its CEL matchConditions, the NetworkPolicies), Helm's
//! `lookup` sees the real cluster (the install-time checks, the reuse of a self-signed
//! certificate on upgrade), and `helm uninstall` must leave the cluster as it found it. There is
//! no kubelet, scheduler or controller manager: the Deployment never gets pods, which is expected.
//! They skip with one line when the cluster is not built.
//!
//! The tests share one cluster and take turns (`turn`): one of them registers an OpenShift API
//! group, which changes what every install sees.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::kube::{self, Cluster, Out};
use serde_json::{Value, json};

const CHART: &str = "charts/live-migration-guard";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One test at a time on the shared cluster.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the pinned helm against the cluster as its admin. Helm's caches (and the discovery
/// cache of its Kubernetes client, under `$HOME/.kube`) live in the cluster's folder, so a
/// discovery answer never outlives the cluster or a CRD change.
fn helm(k: &Cluster, args: &[&str]) -> Out {
    let home = k.dir().join("helm-home");
    let out = Command::new(root().join(".tools/bin/helm"))
        .args(args)
        .arg("--kubeconfig")
        .arg(k.kubeconfig())
        .env("HOME", &home)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .current_dir(root())
        .output()
        .expect("helm runs (scripts/install-tools.sh installs it)");
    Out {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn install(k: &Cluster, release: &str, ns: &str, set: &[&str]) -> Out {
    let mut args = vec!["install", release, CHART, "--namespace", ns];
    for s in set {
        args.extend(["--set", s]);
    }
    helm(k, &args)
}

fn json_of(out: &Out) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn get(k: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    json_of(k.kubectl(&all, None).expect_ok("kubectl get"))
}

/// Resource types that change on their own (events) or only through this test (namespaces, the
/// CRDs it registers), left out of the before/after comparison.
const UNTRACKED: &[&str] = &[
    "events",
    "events.events.k8s.io",
    "namespaces",
    "customresourcedefinitions.apiextensions.k8s.io",
    "apiservices.apiregistration.k8s.io",
];

/// Every object of every listable type: cluster-scoped ones, and the namespaced ones of `ns`,
/// as `type/name` (or `type/ns/name`).
fn inventory(k: &Cluster, ns: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (namespaced, scope) in [(false, "--namespaced=false"), (true, "--namespaced=true")] {
        let types = k
            .kubectl(&["api-resources", "--verbs=list", scope, "-o", "name"], None)
            .expect_ok("api-resources")
            .stdout
            .lines()
            .filter(|t| !UNTRACKED.contains(t))
            .collect::<Vec<_>>()
            .join(",");
        let mut args = vec!["get", types.as_str(), "-o", "name", "--ignore-not-found"];
        if namespaced {
            args.extend(["--namespace", ns]);
        }
        let out = k.kubectl(&args, None);
        out.expect_ok("list everything");
        for line in out.stdout.lines().filter(|l| !l.is_empty()) {
            if namespaced {
                seen.insert(format!("{ns}: {line}"));
            } else {
                seen.insert(line.to_owned());
            }
        }
    }
    seen
}

/// A namespace for one release, and what the cluster holds before the install.
fn before_install(k: &Cluster, ns: &str) -> BTreeSet<String> {
    k.kubectl(&["create", "namespace", ns], None)
        .expect_ok("create namespace");
    inventory(k, ns)
}

/// `helm uninstall`, then the cluster must hold exactly what it held before the install.
fn uninstall_leaves_nothing(k: &Cluster, release: &str, ns: &str, before: &BTreeSet<String>) {
    helm(
        k,
        &[
            "uninstall",
            release,
            "--namespace",
            ns,
            "--wait",
            "--timeout",
            "60s",
        ],
    )
    .expect_ok("helm uninstall");
    let after = inventory(k, ns);
    let left: Vec<_> = after.difference(before).collect();
    let gone: Vec<_> = before.difference(&after).collect();
    assert!(
        left.is_empty() && gone.is_empty(),
        "helm uninstall {release} left {left:#?} and removed {gone:#?}"
    );
    k.kubectl(&["delete", "namespace", ns, "--wait=false"], None)
        .expect_ok("delete namespace");
}

/// The objects of the release (label app.kubernetes.io/instance) that the API server stored, by
/// kind.
fn release_kinds(k: &Cluster, release: &str, ns: &str) -> BTreeSet<String> {
    let selector = format!("app.kubernetes.io/instance={release}");
    let mut kinds = BTreeSet::new();
    for args in [
        vec![
            "get",
            "deployment,service,serviceaccount,secret,networkpolicy,poddisruptionbudget,role,rolebinding,configmap",
            "--namespace",
            ns,
            "-l",
            &selector,
        ],
        vec![
            "get",
            "clusterrole,clusterrolebinding,validatingwebhookconfiguration",
            "-l",
            &selector,
        ],
    ] {
        for item in get(k, &args)["items"].as_array().cloned().unwrap_or_default() {
            kinds.insert(item["kind"].as_str().unwrap_or_default().to_owned());
        }
    }
    kinds
}

fn webhook_config(k: &Cluster, release: &str) -> Value {
    let items = get(
        k,
        &[
            "get",
            "validatingwebhookconfiguration",
            "-l",
            &format!("app.kubernetes.io/instance={release}"),
        ],
    )["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(items.len(), 1, "one webhook configuration for {release}");
    items[0].clone()
}

fn b64decode(s: &str) -> Vec<u8> {
    let out = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .expect("base64 runs");
    assert!(out.status.success(), "base64 -d of {s:.40}…");
    out.stdout
}

fn pem_certs(pem: &str) -> Vec<String> {
    pem.split("-----END CERTIFICATE-----")
        .filter(|c| c.contains("-----BEGIN CERTIFICATE-----"))
        .map(|c| format!("{}-----END CERTIFICATE-----", c.trim_start()))
        .collect()
}

/// Waits until the cluster's discovery (what Helm's `.Capabilities` sees) has, or no longer has,
/// `group_version`.
fn wait_discovery(k: &Cluster, group_version: &str, present: bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = k.kubectl(&["api-versions"], None);
        let has = out.stdout.lines().any(|l| l == group_version);
        if out.ok() && has == present {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "discovery still {} {group_version} after 60 s",
            if present { "lacks" } else { "has" }
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Scenario 13, self-signed: installs with the network policy (ingress and egress, preset
/// `none` — there is no OpenShift here) and the disruption budget; the API server validates
/// them and compiles the webhook's CEL matchConditions; the caBundle holds the CA that signed
/// the Secret's certificate; `helm upgrade` keeps the certificate (Helm's `lookup` of the real
/// Secret); uninstall leaves nothing.
#[test]
fn self_signed_install_upgrade_and_uninstall() {
    let Some(k) = kube::shared() else { return };
    let _turn = turn();
    let (release, ns) = ("guard-self", "guard-self");
    let before = before_install(k, ns);
    let values = [
        "tls.mode=self-signed",
        "networkPolicy.enabled=true",
        "networkPolicy.egress.enabled=true",
        "replicaCount=2",
        "podDisruptionBudget.enabled=true",
    ];
    let out = install(k, release, ns, &values);
    out.expect_ok("helm install self-signed");
    assert!(out.stdout.contains("STATUS: deployed"), "{}", out.stdout);

    let kinds = release_kinds(k, release, ns);
    for kind in [
        "Deployment",
        "Service",
        "ServiceAccount",
        "Secret",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingWebhookConfiguration",
    ] {
        assert!(kinds.contains(kind), "{kind} not stored: {kinds:?}");
    }
    // The comparison after uninstall sees the release's objects, cluster-scoped and namespaced.
    let during = inventory(k, ns);
    let config = webhook_config(k, release);
    let config_name = config["metadata"]["name"].as_str().expect("name");
    for object in [
        format!("validatingwebhookconfiguration.admissionregistration.k8s.io/{config_name}"),
        format!("{ns}: deployment.apps/{release}-live-migration-guard"),
        format!("{ns}: secret/sh.helm.release.v1.{release}.v1"),
    ] {
        assert!(during.contains(&object), "{object} not in {during:#?}");
    }
    assert!(
        before.contains("clusterrole.rbac.authorization.k8s.io/cluster-admin"),
        "{before:#?}"
    );
    let hooks = config["webhooks"].as_array().expect("webhooks");
    assert_eq!(hooks.len(), 2, "NodePool and HostedCluster webhooks");
    for hook in hooks {
        let conditions: Vec<&str> = hook["matchConditions"]
            .as_array()
            .expect("matchConditions stored")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(
            conditions,
            ["kubevirt-platform", "spec-or-vm-jsonpatch-changed"],
            "{hook}"
        );
    }
    let secret_name = format!("{release}-live-migration-guard-tls");
    let secret = get(k, &["get", "secret", &secret_name, "--namespace", ns]);
    let ca = String::from_utf8(b64decode(secret["data"]["ca.crt"].as_str().expect("ca.crt"))).unwrap();
    let bundle = String::from_utf8(b64decode(
        hooks[0]["clientConfig"]["caBundle"].as_str().expect("caBundle"),
    ))
    .unwrap();
    assert_eq!(pem_certs(&bundle), pem_certs(&ca), "caBundle is the Secret's CA");

    let mut args = vec!["upgrade", release, CHART, "--namespace", ns];
    for s in &values {
        args.extend(["--set", s]);
    }
    helm(k, &args).expect_ok("helm upgrade");
    let again = get(k, &["get", "secret", &secret_name, "--namespace", ns]);
    assert_eq!(
        again["data"]["tls.crt"], secret["data"]["tls.crt"],
        "helm upgrade generated a new certificate instead of reusing the stored one"
    );
    assert_eq!(
        webhook_config(k, release)["webhooks"][0]["clientConfig"]["caBundle"],
        hooks[0]["clientConfig"]["caBundle"]
    );

    // A certificate within renewBeforeDays (30) of its end: the next upgrade renews it and the
    // caBundle trusts the new CA and the old one, for pods still serving the old certificate
    // until the kubelet delivers the new Secret.
    let soon = Command::new("date")
        .args(["-u", "-d", "+10 days", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date runs");
    let soon = String::from_utf8(soon.stdout).unwrap();
    // Helm 4 applies server-side as field manager `helm`: the Secret is re-applied as that
    // manager with only the annotation changed, as if the time had passed (an edit by another
    // manager, e.g. `kubectl annotate`, would make the upgrade fail with a conflict).
    let mut aged = secret.clone();
    if let Some(meta) = aged["metadata"].as_object_mut() {
        for key in ["managedFields", "resourceVersion", "uid", "creationTimestamp"] {
            meta.remove(key);
        }
    }
    aged["metadata"]["annotations"]["live-migration-guard.io/not-after"] = json!(soon.trim());
    k.kubectl(
        &["apply", "--server-side", "--field-manager=helm", "-f", "-"],
        Some(&aged.to_string()),
    )
    .expect_ok("age the certificate");
    helm(k, &args).expect_ok("helm upgrade (renewal)");
    let renewed = get(k, &["get", "secret", &secret_name, "--namespace", ns]);
    let new_ca = String::from_utf8(b64decode(renewed["data"]["ca.crt"].as_str().expect("ca.crt"))).unwrap();
    assert_ne!(pem_certs(&new_ca), pem_certs(&ca), "renewed with a new CA");
    for hook in webhook_config(k, release)["webhooks"]
        .as_array()
        .expect("webhooks")
    {
        let bundle = String::from_utf8(b64decode(
            hook["clientConfig"]["caBundle"].as_str().expect("caBundle"),
        ))
        .unwrap();
        assert_eq!(
            pem_certs(&bundle),
            [pem_certs(&new_ca), pem_certs(&ca)].concat(),
            "the bundle is new CA + old CA"
        );
    }
    uninstall_leaves_nothing(k, release, ns, &before);
}

/// Scenario 13, provided: the user's Secret (from `live-migration-guard certs generate`) and its
/// CA as tls.caBundle. Uninstall removes the chart's objects and keeps the user's Secret.
#[test]
fn provided_install_and_uninstall() {
    let Some(k) = kube::shared() else { return };
    let _turn = turn();
    let (release, ns) = ("guard-provided", "guard-provided");
    let certs = k.dir().join("provided-certs");
    let fullname = format!("{release}-live-migration-guard");
    let generate = Command::new(env!("CARGO_BIN_EXE_live-migration-guard"))
        .args([
            "certs",
            "generate",
            "--service",
            &fullname,
            "--namespace",
            ns,
            "--out",
        ])
        .arg(&certs)
        .arg("--force")
        .output()
        .expect("certs generate runs");
    assert!(
        generate.status.success(),
        "{}",
        String::from_utf8_lossy(&generate.stderr)
    );
    k.kubectl(&["create", "namespace", ns], None)
        .expect_ok("create namespace");
    let path = |f: &str| certs.join(f).display().to_string();
    k.kubectl(
        &[
            "create",
            "secret",
            "tls",
            "my-webhook-tls",
            "--namespace",
            ns,
            "--cert",
            &path("tls.crt"),
            "--key",
            &path("tls.key"),
        ],
        None,
    )
    .expect_ok("create the user's Secret");
    let before = inventory(k, ns);
    let ca_pem = std::fs::read_to_string(certs.join("ca.crt")).unwrap();
    let ca_b64 = Command::new("base64")
        .args(["-w0", &path("ca.crt")])
        .output()
        .expect("base64 runs");
    let ca_b64 = String::from_utf8(ca_b64.stdout).unwrap();
    let out = install(
        k,
        release,
        ns,
        &[
            "tls.mode=provided",
            "tls.secretName=my-webhook-tls",
            &format!("tls.caBundle={ca_b64}"),
        ],
    );
    out.expect_ok("helm install provided");
    let config = webhook_config(k, release);
    for hook in config["webhooks"].as_array().expect("webhooks") {
        let bundle =
            String::from_utf8(b64decode(hook["clientConfig"]["caBundle"].as_str().unwrap())).unwrap();
        assert_eq!(pem_certs(&bundle), pem_certs(&ca_pem));
        assert_eq!(
            hook["clientConfig"]["service"],
            json!({"name": fullname, "namespace": ns, "path": hook["clientConfig"]["service"]["path"], "port": hook["clientConfig"]["service"]["port"]})
        );
    }
    let deployment = get(k, &["get", "deployment", &fullname, "--namespace", ns]);
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(
        volumes.contains("my-webhook-tls"),
        "the pods mount the user's Secret: {volumes}"
    );
    assert!(
        !release_kinds(k, release, ns).contains("Secret"),
        "the chart creates no Secret of its own in provided mode"
    );
    uninstall_leaves_nothing(k, release, ns, &before);
}

/// Scenario 13 and the install-time checks: on a cluster without OpenShift's service CA, the
/// default TLS mode (openshift-service-ca) fails `helm install` before anything is created, with
/// a message naming the other modes; on a cluster that serves config.openshift.io/v1 it installs
/// with the OpenShift conventions (service CA annotations, the `openshift` network policy
/// preset); a single-node cluster with the default disruption budget is refused.
#[test]
fn openshift_service_ca_install_is_checked_against_the_cluster() {
    let Some(k) = kube::shared() else { return };
    let _turn = turn();
    let (release, ns) = ("guard-osca", "guard-osca");
    let before = before_install(k, ns);

    let refused = install(k, release, ns, &[]);
    assert!(
        !refused.ok(),
        "installed without a service CA: {}",
        refused.stdout
    );
    assert!(
        refused
            .stderr
            .contains("tls.mode=openshift-service-ca, but this cluster is not OpenShift")
            && refused.stderr.contains("tls.mode=self-signed")
            && refused.stderr.contains("tls.mode=provided"),
        "{}",
        refused.stderr
    );
    assert_eq!(inventory(k, ns), before, "a refused install creates nothing");
    // The check can be skipped (a cluster whose service CA the chart cannot see).
    let skipped = helm(
        k,
        &[
            "install",
            release,
            CHART,
            "--namespace",
            ns,
            "--dry-run=server",
            "--set",
            "tls.serviceCACheck=false",
        ],
    );
    skipped.expect_ok("install --dry-run=server with tls.serviceCACheck=false");

    // Make the cluster look like OpenShift to discovery: the config.openshift.io/v1 group.
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "clusterversions.config.openshift.io" },
        "spec": {
            "group": "config.openshift.io",
            "scope": "Cluster",
            "names": { "plural": "clusterversions", "singular": "clusterversion", "kind": "ClusterVersion", "listKind": "ClusterVersionList" },
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } },
            }],
        },
    });
    struct RemoveCrd<'a>(&'a Cluster);
    impl Drop for RemoveCrd<'_> {
        fn drop(&mut self) {
            let _ = self.0.kubectl(
                &[
                    "delete",
                    "crd",
                    "clusterversions.config.openshift.io",
                    "--ignore-not-found",
                ],
                None,
            );
            wait_discovery(self.0, "config.openshift.io/v1", false);
        }
    }
    k.kubectl(&["apply", "-f", "-"], Some(&crd.to_string()))
        .expect_ok("register config.openshift.io");
    let _remove = RemoveCrd(k);
    wait_discovery(k, "config.openshift.io/v1", true);

    // One Node: the default two replicas with a disruption budget could never be drained.
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "only-node"}});
    k.kubectl(&["apply", "-f", "-"], Some(&node.to_string()))
        .expect_ok("create a Node");
    let single = install(k, release, ns, &["networkPolicy.enabled=true"]);
    k.kubectl(&["delete", "node", "only-node"], None)
        .expect_ok("delete the Node");
    assert!(!single.ok(), "installed on a single node: {}", single.stdout);
    assert!(
        single.stderr.contains("this cluster has a single node")
            && single.stderr.contains("podDisruptionBudget.maxUnavailable=100%"),
        "{}",
        single.stderr
    );

    install(k, release, ns, &["networkPolicy.enabled=true"]).expect_ok("helm install openshift-service-ca");
    let fullname = format!("{release}-live-migration-guard");
    let service = get(k, &["get", "service", &fullname, "--namespace", ns]);
    assert_eq!(
        service["metadata"]["annotations"]["service.beta.openshift.io/serving-cert-secret-name"],
        format!("{fullname}-tls")
    );
    let config = webhook_config(k, release);
    assert_eq!(
        config["metadata"]["annotations"]["service.beta.openshift.io/inject-cabundle"],
        "true"
    );
    let policies = get(k, &["get", "networkpolicy", "--namespace", ns]);
    let text = policies.to_string();
    assert!(
        text.contains("policy-group.network.openshift.io/host-network"),
        "the openshift preset admits the API server through the host-network policy group: {text}"
    );
    uninstall_leaves_nothing(k, release, ns, &before);
}

/// The API server, not the chart, compiles CEL: an extra matchCondition that does not compile
/// fails `helm install` with the API server's message, and nothing of the release stays.
#[test]
fn an_invalid_extra_match_condition_is_refused_by_the_api_server() {
    let Some(k) = kube::shared() else { return };
    let _turn = turn();
    let (release, ns) = ("guard-cel", "guard-cel");
    let before = before_install(k, ns);
    let out = install(
        k,
        release,
        ns,
        &[
            "tls.mode=self-signed",
            "webhook.extraMatchConditions[0].name=broken",
            "webhook.extraMatchConditions[0].expression=object.spec.(",
        ],
    );
    assert!(
        !out.ok(),
        "installed with a broken CEL expression: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("ValidatingWebhookConfiguration")
            && out.stderr.contains("matchConditions[2].expression")
            && out.stderr.contains("compilation failed"),
        "{}",
        out.stderr
    );
    // A failed install is recorded as a failed release; uninstall cleans up what it created.
    uninstall_leaves_nothing(k, release, ns, &before);
}
